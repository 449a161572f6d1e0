//! Integration tests of the runtime against a real PostgreSQL (one throwaway cluster per test
//! process from `pgratchet-harness`, one fresh database per test, tests in parallel).
//!
//! Every test checks the database itself (history rows, log rows, tables, indexes), not only
//! what the runner returned.

mod apply;
mod checker;
mod concurrency;
mod connect;
mod durability;
mod edges;
mod failures;
mod lock;
mod operate;
mod policies;
mod pooler;
mod reliability;
mod roles;
mod support;
mod tables;
mod truth;
