//! [`Error`]: everything a run can refuse or fail with, each saying what to do next (the
//! messages are in `error/message.rs`).

mod message;

use std::time::Duration;

use serde::Serialize;
use tokio_postgres::error::SqlState;

use crate::holder::LockHolder;

/// Why a run, plan or status call did not succeed.
///
/// Display gives the context and the next step; the PostgreSQL error, when there is one, is the
/// [`source`](std::error::Error::source) (print the chain, e.g. with `{:#}` in anyhow, to see it).
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// No connection could be had from the pool.
    Pool(deadpool_postgres::PoolError),
    /// A statement of the runner itself (not of a migration) failed.
    Database {
        /// What the runner was doing.
        context: String,
        /// The driver's error.
        source: tokio_postgres::Error,
    },
    /// A migration's SQL failed. For a transactional migration, nothing of it was kept.
    Migration(Box<MigrationFailure>),
    /// A migration was rolled back because it removed or dropped the history table's row.
    HistoryTampered {
        /// The migration's version.
        version: i64,
        /// The migration's name.
        name: String,
    },
    /// An applied migration's file was edited since (its checksum differs).
    Modified {
        /// The migration's version.
        version: i64,
        /// The migration's name.
        name: String,
        /// The checksum recorded when it was applied.
        applied: String,
        /// The checksum of the file now.
        current: String,
    },
    /// A no-transaction migration failed earlier and is recorded as `failed`.
    Failed {
        /// The migration's version.
        version: i64,
        /// The migration's name.
        name: String,
        /// The error recorded with it.
        error: Option<String>,
    },
    /// A no-transaction migration was started and never finished (its process died).
    Running {
        /// The migration's version.
        version: i64,
        /// The migration's name.
        name: String,
    },
    /// An applied version below the newest known one is missing from this set: a file was removed
    /// or renumbered.
    Removed {
        /// The version recorded in the database.
        version: i64,
        /// Its recorded name.
        name: String,
    },
    /// An applied version above the newest known one, with strict unknown checking on.
    Unknown {
        /// The version recorded in the database.
        version: i64,
        /// Its recorded name.
        name: String,
    },
    /// A pending migration is older than the newest applied one.
    OutOfOrder {
        /// The pending migration's version.
        version: i64,
        /// Its name.
        name: String,
        /// The newest applied version.
        newest_applied: i64,
    },
    /// The migration lock was not obtained in time.
    LockTimeout {
        /// How long the runner waited.
        waited: Duration,
        /// Who held the lock when the runner gave up, if it could be seen.
        holder: Option<Box<LockHolder>>,
    },
    /// A table of the history table's name exists with a shape this runner does not own.
    ForeignTable {
        /// The qualified table name.
        table: String,
        /// Its columns, as found.
        found: String,
    },
    /// A version does not fit the adopted (pybmpmon) history table's INTEGER column.
    VersionTooLarge {
        /// The version.
        version: i64,
        /// The qualified table name.
        table: String,
    },
    /// A schema or table name from configuration cannot be used.
    InvalidIdentifier {
        /// `"schema"` or `"table"`.
        what: &'static str,
        /// The name given.
        value: String,
        /// Why it was refused.
        reason: &'static str,
    },
    /// A setting cannot be used.
    InvalidSetting {
        /// The setting, e.g. `max_size`.
        name: &'static str,
        /// The value given.
        value: String,
        /// Why it was refused.
        reason: &'static str,
    },
    /// A run-time migrations directory has problems (the same ones the macro reports).
    Load(Vec<pgratchet_core::Problem>),
    /// The connection string requires TLS, which [`connect`](crate::connect) does not make.
    TlsRequired,
    /// No schema was configured and the connection has none (its `search_path` names no
    /// existing schema).
    NoCurrentSchema,
    /// A hook failed; for a `before` hook, the step it guards did not run.
    Hook {
        /// Where the hook was called.
        point: crate::HookPoint,
        /// The hook's error.
        source: crate::HookError,
    },
    /// A rollback reached a migration that has no down SQL; nothing was rolled back.
    Irreversible {
        /// The migration's version.
        version: i64,
        /// Its name.
        name: String,
    },
    /// Baseline needs a history with no migrations recorded.
    BaselineOnHistory {
        /// How many are recorded.
        recorded: usize,
    },
    /// A grouped run (one transaction for all) cannot hold a no-transaction migration.
    GroupedNoTransaction {
        /// The migration's version.
        version: i64,
        /// Its name.
        name: String,
    },
    /// A target version that is not in this set of migrations.
    UnknownTarget {
        /// The version asked for.
        version: i64,
    },
    /// Behind a transaction pooler, a no-transaction migration recorded as `running` did not
    /// finish within the lock-wait timeout. Without a session lock a live applier cannot be told
    /// from a dead one: it may still be in progress.
    StillRunning {
        /// The migration's version.
        version: i64,
        /// Its name.
        name: String,
        /// How long the runner waited for it.
        waited: Duration,
    },
    /// Behind a transaction pooler, another starter's transaction held a migration's history row
    /// for longer than the lock-wait timeout (that row is the pooler's stand-in for the lock).
    RowLockTimeout {
        /// The migration's version.
        version: i64,
        /// Its name.
        name: String,
        /// How long the runner waited.
        waited: Duration,
    },
    /// A no-transaction migration ran to its end, but its `running` history row was removed
    /// while it ran (a repair meanwhile?). It is now recorded as `failed`, not as applied.
    RecordRemoved {
        /// The migration's version.
        version: i64,
        /// Its name.
        name: String,
    },
    /// Behind a transaction pooler, a pending no-transaction migration changes session state,
    /// which would leak to the pooler's other clients. Nothing was applied.
    SessionStateBehindPooler {
        /// The migration's version.
        version: i64,
        /// Its name.
        name: String,
        /// Its file, relative to the migrations directory.
        file: String,
        /// The line of the statement in the file.
        line: u32,
        /// The statement's shape: `SET`, `RESET`, `SET ROLE`, `SET SESSION AUTHORIZATION`, ...
        statement: &'static str,
    },
    /// A migration released the migration lock (so another starter may have run at the same
    /// time). It is recorded as `failed`.
    LockReleased {
        /// The migration's version.
        version: i64,
        /// Its name.
        name: String,
    },
    /// The history table has no primary key or unique index on `version`, the key that keeps a
    /// migration from being recorded (and applied) twice. It was left untouched.
    HistoryWithoutKey {
        /// The qualified table name.
        table: String,
    },
    /// The history table is partitioned. It was left untouched.
    PartitionedHistory {
        /// The qualified table name.
        table: String,
    },
    /// The connection was lost while migrations were applied in one transaction, before its
    /// commit was confirmed: it may or may not have been committed.
    OutcomeUnknown {
        /// The migrations of that transaction.
        versions: Vec<i64>,
        /// The qualified history table, where their rows tell.
        table: String,
        /// The driver's error.
        source: tokio_postgres::Error,
    },
    /// The server's answers did not line up with what the runner sent: a bug of the runner (or
    /// of something between it and the server). Say how it happened in a report.
    Internal {
        /// What did not line up.
        context: String,
    },
    /// The server's advisory locks do not exclude a second session (a stub that always
    /// succeeds), so the migration lock would not keep two starters apart. Nothing was applied.
    AdvisoryLocksIneffective {
        /// What the server says it is (`version()`).
        server: String,
    },
}

/// Details of a migration whose SQL failed.
#[derive(Debug)]
#[non_exhaustive]
pub struct MigrationFailure {
    /// The migration's version.
    pub version: i64,
    /// The migration's name.
    pub name: String,
    /// The file, relative to the migrations directory.
    pub file: String,
    /// The line in the file the error points at, when PostgreSQL or the statement split says.
    pub line: Option<u32>,
    /// The SQLSTATE code, e.g. `42P01`.
    pub code: Option<String>,
    /// Whether the migration ran outside a transaction (and is now recorded as `failed`, unless
    /// [`recorded_as_failed`](Self::recorded_as_failed) says otherwise).
    pub no_transaction: bool,
    /// Whether the history table now records the migration as `failed`. Always `false` for a
    /// transactional migration (it was rolled back, nothing is recorded). `false` for a
    /// no-transaction one when recording the failure failed too, typically because the
    /// connection was lost (its backend terminated, the server restarted): the row then still
    /// says `running`.
    pub recorded_as_failed: bool,
    /// Indexes a failed no-transaction migration left INVALID (not those that were INVALID
    /// before it, nor those another session is building right now).
    pub invalid_indexes: Vec<String>,
    /// INVALID indexes that appeared meanwhile and that another session is building right now
    /// (`name (pid N)`): maybe in progress, not this migration's.
    pub indexes_in_progress: Vec<String>,
    /// The driver's error.
    pub source: tokio_postgres::Error,
}

impl Error {
    /// Marks a no-transaction [`Error::Migration`] whose failure could not be written to the
    /// history table (its row still says `running`).
    pub(crate) fn not_recorded(mut self) -> Self {
        if let Error::Migration(failure) = &mut self {
            failure.recorded_as_failed = false;
        }
        self
    }

    /// Something the runner cannot make sense of (see [`Error::Internal`]).
    pub(crate) fn internal(context: &str) -> Self {
        Error::Internal {
            context: context.to_owned(),
        }
    }

    pub(crate) fn db(context: impl Into<String>, source: tokio_postgres::Error) -> Self {
        Error::Database {
            context: context.into(),
            source,
        }
    }

    /// The SQLSTATE of the underlying PostgreSQL error, if any.
    pub fn code(&self) -> Option<&SqlState> {
        let source = match self {
            Error::Database { source, .. } => source,
            Error::Pool(deadpool_postgres::PoolError::Backend(source)) => source,
            Error::Migration(failure) => &failure.source,
            Error::OutcomeUnknown { source, .. } => source,
            _ => return None,
        };
        source.code()
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Pool(source) => Some(source),
            Error::Database { source, .. } => Some(source),
            Error::Migration(failure) => Some(&failure.source),
            Error::OutcomeUnknown { source, .. } => Some(source),
            Error::Hook { source, .. } => Some(source.as_ref()),
            _ => None,
        }
    }
}

impl From<deadpool_postgres::PoolError> for Error {
    fn from(error: deadpool_postgres::PoolError) -> Self {
        Error::Pool(error)
    }
}

/// The error as data, for health endpoints and `--json` output.
impl Serialize for Error {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let mut chain = Vec::new();
        let mut source = std::error::Error::source(self);
        while let Some(error) = source {
            let message = error.to_string();
            // tokio-postgres wraps the server's message in a bare "db error"; it says nothing.
            if message != "db error" {
                chain.push(message);
            }
            source = error.source();
        }
        let mut state = serializer.serialize_struct("Error", 3)?;
        state.serialize_field("message", &self.to_string())?;
        state.serialize_field("code", &self.code().map(SqlState::code))?;
        state.serialize_field("causes", &chain)?;
        state.end()
    }
}
