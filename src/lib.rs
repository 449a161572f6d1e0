#![doc = include_str!("../README.md")]
#![warn(missing_docs, unreachable_pub)]

pub use pgratchet_runtime::{
    connect, Applied, BoxFuture, Error, Event, HookContext, HookError, HookPoint, Issue, IssueKind,
    LockHolder, Migration, MigrationFailure, Migrations, Migrator, Planned, Problem, Redo,
    RedoMismatch, Repair, Repaired, Report, Rollback, Script, State, Status, Validation,
};

/// The driver and pool `pgratchet` is built on, so a service uses the same versions.
pub use pgratchet_runtime::{deadpool_postgres, tokio_postgres};

#[cfg(feature = "cli")]
pub mod cli;

/// The review of migrations behind `embed_migrations!`'s build-time check and the CLI's `lint`
/// (feature `lint`): squawk's rules, `.migrate.toml`, `-- migrate:allow` and the risk score.
#[cfg(feature = "lint")]
pub use pgratchet_core::lint;

/// Embeds a migrations directory into the binary at build time.
///
/// `embed_migrations!("migrations")` reads the directory (relative to the crate's `Cargo.toml`),
/// checks every file against the grammar, computes each file's SHA-256 checksum, and expands to
/// a [`Migrations`] value made of static data: no file is read at run time. Every problem (a bad
/// name, a duplicate version, a statement that cannot run in a transaction, ...) is a compile
/// error pointing at the literal, all of them in one build.
///
/// ```
/// static MIGRATIONS: pgratchet::Migrations = pgratchet::embed_migrations!("migrations");
///
/// assert!(MIGRATIONS.iter().all(|m| m.checksum().len() == 64));
/// ```
///
/// Editing a migration rebuilds the crate by itself. So that *adding* or removing a file does
/// too, put this line in the crate's `build.rs`:
///
/// ```text
/// println!("cargo:rerun-if-changed=migrations");
/// ```
pub use pgratchet_macros::embed_migrations;

/// Not public API: what `embed_migrations!` expands to refers to these.
#[doc(hidden)]
pub mod __private {
    pub use pgratchet_runtime::{Migration, Migrations, Script};
}
