//! What a run did ([`Report`]) and would do ([`Planned`]).

use serde::Serialize;

/// The outcome of a successful run.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Report {
    /// Migrations this run applied, in order.
    pub applied: Vec<Applied>,
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

/// One migration applied by a run.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
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
