//! What a run or a rollback did ([`Report`]) and what a run would do ([`Planned`]).

use std::time::Instant;

use serde::Serialize;

/// The outcome of a successful run, rollback or `to`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct Report {
    /// Migrations this run applied, in order.
    pub applied: Vec<Applied>,
    /// Migrations a rollback reverted, newest first (each with how long its down took).
    pub rolled_back: Vec<Applied>,
    /// Pending migrations another starter applied while this one waited (behind a transaction
    /// pooler, where there is no session lock).
    pub applied_by_others: Vec<i64>,
    /// Things worth a look that did not stop the run (e.g. versions from a newer release).
    pub warnings: Vec<String>,
    /// Whether the run needed the lock (false: nothing was pending, one query).
    pub took_lock: bool,
    /// Wall time of the whole run in milliseconds.
    pub elapsed_ms: u64,
}

/// One migration a run applied (or a rollback reverted).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct Applied {
    /// The version.
    pub version: i64,
    /// The name.
    pub name: String,
    /// How long it took, in milliseconds.
    pub duration_ms: u64,
    /// Whether it ran outside a transaction.
    pub no_transaction: bool,
}

/// A migration a run would apply.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct Planned {
    /// The version.
    pub version: i64,
    /// The name.
    pub name: String,
    /// The checksum that would be recorded.
    pub checksum: String,
    /// Whether it would run outside a transaction.
    pub no_transaction: bool,
    /// The SQL that would run.
    pub sql: String,
}

/// Milliseconds since `started`.
pub(crate) fn elapsed_ms(started: Instant) -> u64 {
    u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX)
}
