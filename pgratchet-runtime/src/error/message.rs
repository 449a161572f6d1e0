//! What each [`Error`] says: the context and the next step, naming the operation to run
//! (`Migrator::repair`), never a command line. The PostgreSQL error is the `source`, not
//! repeated here.

use std::fmt;

use super::Error;

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
