//! The engine of `pgratchet`: applies a set of migrations to PostgreSQL at startup, safely when
//! many replicas start at once, directly or through PgBouncer. Use it through the `pgratchet` crate;
//! its README explains the protocol and ARCHITECTURE.md the invariants.
#![warn(missing_docs, unreachable_pub)]

mod apply;
mod baseline;
mod batch;
mod connect;
mod connection;
mod error;
mod events;
mod failure;
mod fingerprint;
mod history;
mod holder;
mod hooks;
mod ident;
mod lock;
mod migrations;
mod migrator;
mod no_transaction;
mod operations;
mod read;
mod redo;
mod repair;
mod report;
mod rollback;
mod runner;
mod script;
mod session;
mod state;
mod status;
mod table;
mod transactional;
mod validate;

pub use connect::connect;
pub use deadpool_postgres;
pub use error::{Error, MigrationFailure};
pub use events::{Action, Event};
pub use holder::LockHolder;
pub use hooks::{HookContext, HookError, HookPoint};
pub use migrations::Migrations;
pub use migrator::{BoxFuture, Migrator};
pub use pgratchet_core::{Migration, Problem, Script};
pub use redo::{Redo, RedoMismatch};
pub use repair::{Repair, Repaired};
pub use report::{Applied, Planned, Report};
pub use rollback::Rollback;
pub use state::State;
pub use status::Status;
pub use tokio_postgres;
pub use validate::{Issue, IssueKind, Validation};
