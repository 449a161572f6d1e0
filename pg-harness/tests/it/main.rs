//! Integration tests of pg-harness: one binary, one module per concern.

mod bouncer;
mod harness;
