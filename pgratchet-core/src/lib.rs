//! The dependency-free heart of `pgratchet`: the migration filename grammar, the SQL lexer,
//! checksums, per-file directives, the transaction checks and the directory loader.
//!
//! Both the `embed_migrations!` macro (at build time) and the runtime's directory loader and CLI
//! (at run time) use this crate, so a file is accepted or refused, and checksummed, identically in
//! both places. It depends on `sha2` only: never on `syn` (build-time only) nor `tokio`. The
//! feature `lint` adds the module `lint`, the review of migrations with squawk's rules, and its
//! dependencies (squawk, toml, serde).
#![warn(missing_docs, unreachable_pub)]

pub mod checksum;
pub mod directive;
pub mod lexer;
#[cfg(feature = "lint")]
pub mod lint;
pub mod loader;
mod migration;
pub mod name;
pub mod problem;
pub mod transaction;

pub use migration::{Migration, Script};
pub use problem::Problem;
