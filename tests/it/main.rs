//! Integration tests of the `migrate` facade: one binary, one module per concern.

mod embed;
mod rebuild;
mod ui;
