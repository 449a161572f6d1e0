//! Integration tests of the `migrate` facade: one binary, one module per concern.

mod cli;
mod embed;
mod rebuild;
#[cfg(feature = "cli")]
mod reliability;
