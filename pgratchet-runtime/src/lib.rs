//! The engine of `pgratchet`: applies a set of migrations to PostgreSQL at startup, safely when
//! many replicas start at once, directly or through PgBouncer. Use it through the `pgratchet` crate;
//! its README explains the protocol and ARCHITECTURE.md the invariants.
#![warn(missing_docs, unreachable_pub)]

mod apply;
mod batch;
mod connect;
mod connection;
mod error;
mod events;
mod fingerprint;
mod history;
mod hooks;
mod ident;
mod lock;
mod migrations;
mod migrator;
mod operate;
mod redo;
mod report;
mod script;
mod session;
mod status;
mod validate;

pub use connect::connect;
pub use deadpool_postgres;
pub use error::{Error, MigrationFailure};
pub use events::Event;
pub use hooks::{HookContext, HookError, HookPoint};
pub use lock::LockHolder;
pub use migrations::Migrations;
pub use migrator::{BoxFuture, Migrator};
pub use operate::{Repair, Repaired, Rollback};
pub use pgratchet_core::{Migration, Problem, Script};
pub use redo::{Redo, RedoMismatch};
pub use report::{Applied, Planned, Report};
pub use status::{State, Status};
pub use tokio_postgres;
pub use validate::{Issue, IssueKind, Validation};
