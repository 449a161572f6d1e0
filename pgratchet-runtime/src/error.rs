//! [`Error`]: everything a run can refuse or fail with, each saying what to do next.

use std::fmt;
use std::time::Duration;

use serde::Serialize;

use crate::lock::LockHolder;

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

    /// A runner's statement answered with something it cannot read.
    pub(crate) fn db_message(context: &str) -> Self {
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
    pub fn code(&self) -> Option<&str> {
        let source = match self {
            Error::Database { source, .. } => source,
            Error::Pool(deadpool_postgres::PoolError::Backend(source)) => source,
            Error::Migration(failure) => &failure.source,
            _ => return None,
        };
        source.code().map(|code| code.code())
    }

    /// The process exit code the CLI uses for this error (see the CLI's documentation).
    pub fn exit_code(&self) -> i32 {
        match self {
            Error::LockTimeout { .. } => 5,
            Error::Migration(_) | Error::HistoryTampered { .. } => 6,
            Error::Modified { .. }
            | Error::Failed { .. }
            | Error::Running { .. }
            | Error::Removed { .. }
            | Error::Unknown { .. }
            | Error::OutOfOrder { .. }
            | Error::Load(_) => 4,
            Error::Irreversible { .. } | Error::GroupedNoTransaction { .. } => 4,
            Error::StillRunning { .. } | Error::SessionStateBehindPooler { .. } => 4,
            Error::RowLockTimeout { .. } => 5,
            Error::RecordRemoved { .. } | Error::LockReleased { .. } => 6,
            Error::OutcomeUnknown { .. } => 6,
            _ => 1,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Pool(_) => write!(f, "could not get a database connection from the pool"),
            Error::Database { context, .. } => write!(f, "{context}"),
            Error::TlsRequired => write!(
                f,
                "the connection string requires TLS (its sslmode), which `connect` does not make; build the pool with a TLS connector and pass it to `run`"
            ),
            Error::Migration(failure) => {
                write!(f, "migration {} `{}` failed", failure.version, failure.name)?;
                match failure.line {
                    Some(line) => write!(f, " at {} line {line}", failure.file)?,
                    None => write!(f, " in {}", failure.file)?,
                }
                if let Some(code) = &failure.code {
                    write!(f, " (SQLSTATE {code})")?;
                }
                if failure.no_transaction {
                    write!(
                        f,
                        "; it ran outside a transaction, so statements before the failing one are kept"
                    )?;
                    // Say what the history table really holds: when the connection was lost, the
                    // failure could not be recorded and the row still says `running`.
                    if failure.recorded_as_failed {
                        write!(f, " and it is recorded as failed")?;
                    } else {
                        write!(
                            f,
                            "; its failure could not be recorded either (was the connection lost?), so it is still recorded as running"
                        )?;
                    }
                    if !failure.invalid_indexes.is_empty() {
                        write!(
                            f,
                            "; INVALID indexes left behind: {} (drop them before retrying)",
                            failure.invalid_indexes.join(", ")
                        )?;
                    }
                    if !failure.indexes_in_progress.is_empty() {
                        write!(
                            f,
                            "; another session is building {} right now, which may still be in progress (leave it)",
                            failure.indexes_in_progress.join(", ")
                        )?;
                    }
                    write!(
                        f,
                        "; fix the file, undo what it did, then run repair for version {} (`Migrator::repair`)",
                        failure.version
                    )
                } else {
                    write!(f, "; it was rolled back and nothing of it was kept")
                }
            }
            Error::HistoryTampered { version, name } => write!(
                f,
                "migration {version} `{name}` dropped or changed the migration history table, so it was rolled back; a migration must not touch the history table"
            ),
            Error::Modified {
                version,
                name,
                applied,
                current,
            } => write!(
                f,
                "migration {version} `{name}` was edited after it was applied (checksum {applied} when applied, {current} now); restore the file, or if the change is deliberate and already reflected in the database, run repair for version {version} (`Migrator::repair`)"
            ),
            Error::Failed {
                version,
                name,
                error,
            } => {
                write!(f, "migration {version} `{name}` is recorded as failed")?;
                if let Some(error) = error {
                    write!(f, " ({error})")?;
                }
                write!(
                    f,
                    "; it ran outside a transaction, so check what it left behind (e.g. INVALID indexes), fix it by hand, then run repair for version {version} (`Migrator::repair`)"
                )
            }
            Error::Running { version, name } => write!(
                f,
                "migration {version} `{name}` is recorded as running: a process applying it outside a transaction stopped before it finished; check what it left behind (e.g. INVALID indexes), fix it by hand, then run repair for version {version} (`Migrator::repair`)"
            ),
            Error::Removed { version, name } => write!(
                f,
                "migration {version} `{name}` is applied in the database but missing from this set of migrations, below the newest known version: a file was removed or renumbered; restore it"
            ),
            Error::Unknown { version, name } => write!(
                f,
                "migration {version} `{name}` is applied in the database but unknown to this binary (a newer release ran first); deploy the newer release, or allow unknown newer versions"
            ),
            Error::OutOfOrder {
                version,
                name,
                newest_applied,
            } => write!(
                f,
                "migration {version} `{name}` is pending but older than the newest applied migration {newest_applied}; renumber it above {newest_applied}, or allow out-of-order migrations"
            ),
            Error::LockTimeout { waited, holder } => {
                write!(
                    f,
                    "gave up waiting for the migration lock after {:.1}s",
                    waited.as_secs_f64()
                )?;
                match holder {
                    Some(holder) => write!(f, "; it is held by {holder}"),
                    None => write!(f, "; its holder could not be seen (missing privileges to read pg_stat_activity?)"),
                }
            }
            Error::ForeignTable { table, found } => write!(
                f,
                "table {table} exists but is not a migration history table of this tool (columns: {found}); it was left untouched: choose another history table name (e.g. `.table(\"app_migrations\")`, `--table app_migrations`)"
            ),
            Error::VersionTooLarge { version, table } => write!(
                f,
                "version {version} does not fit the INTEGER version column of the adopted history table {table}; renumber the migration below 2147483648 or widen the column with `ALTER TABLE {table} ALTER COLUMN version TYPE bigint`"
            ),
            Error::InvalidIdentifier {
                what,
                value,
                reason,
            } => write!(f, "invalid {what} name {value:?}: {reason}"),
            Error::InvalidSetting {
                name,
                value,
                reason,
            } => write!(f, "invalid {name} {value}: {reason}"),
            Error::Load(problems) => {
                write!(f, "the migrations directory has {} problem(s):", problems.len())?;
                for problem in problems {
                    write!(f, "\n  {problem}")?;
                }
                Ok(())
            }
            Error::Hook { point, .. } => write!(f, "the {point:?} hook failed; the step it guards did not run"),
            Error::Irreversible { version, name } => write!(
                f,
                "migration {version} `{name}` has no down SQL, so the rollback stopped before reverting anything; add a down file, or roll back to a version above it"
            ),
            Error::BaselineOnHistory { recorded } => write!(
                f,
                "baseline refused: the history table already records {recorded} migration(s); baseline is for a database whose schema predates its history"
            ),
            Error::GroupedNoTransaction { version, name } => write!(
                f,
                "migration {version} `{name}` runs outside a transaction, so a grouped (all-or-nothing) run cannot include it; run without grouping, or up to the version before it"
            ),
            Error::NoCurrentSchema => write!(
                f,
                "the connection has no current schema (its search_path names no existing schema); set search_path or configure the history table's schema"
            ),
            Error::UnknownTarget { version } => write!(
                f,
                "target version {version} is not one of the known migrations"
            ),
            Error::StillRunning { version, name, waited } => write!(
                f,
                "migration {version} `{name}` is recorded as running and did not finish within {:.1}s; behind a transaction pooler no session lock tells a live applier from a dead one, so it may still be in progress: look for its statement in pg_stat_activity (`SELECT pid, state, query_start, query FROM pg_stat_activity WHERE state <> 'idle'`); only when it runs nowhere, check what it left behind (e.g. INVALID indexes), then run repair for version {version} (`Migrator::repair`)",
                waited.as_secs_f64()
            ),
            Error::RowLockTimeout { version, name, waited } => write!(
                f,
                "gave up after {:.1}s waiting for another starter's transaction applying migration {version} `{name}` (behind a transaction pooler its history row stands in for the lock); look for that transaction in pg_stat_activity, or wait longer (`lock_wait_timeout`)",
                waited.as_secs_f64()
            ),
            Error::RecordRemoved { version, name } => write!(
                f,
                "migration {version} `{name}` ran to its end outside a transaction, but its `running` history row was removed while it ran (a repair meanwhile?), so it is not recorded as applied; it is now recorded as failed: check what it did, undo it if the next run should apply it again, then run repair for version {version} (`Migrator::repair`)"
            ),
            Error::SessionStateBehindPooler { version, name, file, line, statement } => write!(
                f,
                "migration {version} `{name}` runs outside a transaction and changes session state (`{statement}` at {file} line {line}); behind a transaction pooler each of its statements may run on another server connection, so the change would leak to the pooler's other clients and could not be undone; nothing was applied: set it for the role instead (`ALTER ROLE ... SET ...`), or apply this migration over a direct connection (without `.transaction_pooler(true)`)"
            ),
            Error::LockReleased { version, name } => write!(
                f,
                "migration {version} `{name}` released the migration lock (`pg_advisory_unlock` of its key, `pg_advisory_unlock_all()` or `DISCARD ALL`), so another starter may have run at the same time; it is recorded as failed: remove that statement from the file, check the database, then run repair for version {version} (`Migrator::repair`)"
            ),
            Error::HistoryWithoutKey { table } => write!(
                f,
                "history table {table} has no primary key or unique index on `version`, which keeps a migration from being recorded (and applied) twice; it was left untouched: add one (`ALTER TABLE {table} ADD PRIMARY KEY (version)`)"
            ),
            Error::PartitionedHistory { table } => write!(
                f,
                "history table {table} is partitioned, which this runner does not support (the one-row check reads one table); it was left untouched: use a plain table, or choose another history table name"
            ),
            Error::OutcomeUnknown { versions, table, .. } => {
                let list: Vec<String> = versions.iter().map(i64::to_string).collect();
                let list = list.join(", ");
                write!(
                    f,
                    "the connection was lost while applying migration(s) {list}, before the commit was confirmed: they may or may not have been committed; their history rows tell (`SELECT version, state FROM {table} WHERE version IN ({list})`): if they are there, they were applied, otherwise nothing of them was kept; the next run sees which by itself"
                )
            }
            Error::Internal { context } => write!(
                f,
                "internal error: {context}; this is a bug of pgratchet (or of something between it and the server): please report it"
            ),
            Error::AdvisoryLocksIneffective { server } => write!(
                f,
                "the server's advisory locks do not exclude other sessions: a second session took the migration lock while this one held it ({server}); two starters could apply a migration twice here, so nothing was applied: use `.transaction_pooler(true)` (`--transaction-pooler`), where exactly-once rests on the history table's primary key instead of the lock"
            ),
        }
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
        state.serialize_field("code", &self.code())?;
        state.serialize_field("causes", &chain)?;
        state.end()
    }
}
