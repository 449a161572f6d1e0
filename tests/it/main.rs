//! Integration tests of the `pgratchet` facade: one binary, one module per concern.

mod cli;
mod embed;
#[cfg(feature = "cli")]
mod lint;
mod readme;
mod rebuild;
#[cfg(feature = "cli")]
mod reliability;
