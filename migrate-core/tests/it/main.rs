//! Integration tests of migrate-core: one binary, one module per concern.

mod name_props;
