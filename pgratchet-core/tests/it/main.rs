//! Integration tests of pgratchet-core: one binary, one module per concern.

mod name_props;
