//! A group of transactional migrations (one, or all of a grouped run) applied in one transaction
//! and one round trip, and what its outcome or error means.

use std::time::Duration;

use tokio_postgres::error::SqlState;

use crate::batch::{self, Batch};
use crate::failure::{
    error_byte, error_line, failure, is_history_conflict, is_history_tampered, retry_pause,
    rollback,
};
use crate::history::write::{self, Since};
use crate::runner::Runner;
use crate::session::{may_change_session, Setup};
use crate::table::Table;
use crate::{Applied, Error, Migration, Migrator};

/// The parts of a transactional batch; a migration's parts carry its index in the group.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Part {
    /// `BEGIN` and the transaction's settings.
    Setup,
    /// Behind a pooler: the migration's history row, inserted first with the lock-wait timeout,
    /// then the migration's own timeouts.
    Insert(usize),
    /// The migration's SQL.
    Sql(usize),
    /// Undoing the session settings the migration may have changed, before its record.
    Restore(usize),
    /// Its history record and log entry.
    Record(usize),
    /// The commit, with the durability this batch needs.
    Commit,
    /// After the commit, the session reset.
    Reset,
}

/// What one transactional batch came to.
pub(crate) enum Group {
    /// Every migration of the group was applied (with its duration).
    Applied(Vec<Applied>),
    /// Another starter recorded one of them first: the batch was rolled back, nothing of it
    /// was kept.
    Conflict,
}

/// `SET LOCAL` of the configured timeouts, each back to the session's default when unset.
pub(crate) fn timeouts_sql(config: &Migrator<'_>) -> String {
    let setting = |name: &str, value: Option<Duration>| match value {
        Some(value) => format!("SET LOCAL {name} = {};\n", value.as_millis()),
        None => format!("SET LOCAL {name} TO DEFAULT;\n"),
    };
    setting("lock_timeout", config.lock_timeout)
        + &setting("statement_timeout", config.statement_timeout)
}

/// The batch of a group: `BEGIN`, then per migration its SQL, its history row with the execution
/// time and its log entry (behind a pooler the row goes before the SQL and is checked after it),
/// then `COMMIT`, durable or not.
pub(crate) fn batch(
    config: &Migrator<'_>,
    table: &Table,
    setup: &Setup,
    host: &str,
    group: &[&Migration],
    durable: bool,
) -> Batch<Part> {
    let pooler = config.transaction_pooler;
    let grouped = group.len() > 1;
    let mut batch = Batch::new();
    batch.push(Part::Setup, "BEGIN;\n");
    if !durable {
        batch.push(Part::Setup, "SET LOCAL synchronous_commit = off;\n");
    }
    if let (true, Some(ms)) = (pooler, setup.check_interval_ms) {
        // Behind a pooler there is no session to set the check interval on, but the transaction
        // has one: without it, a starter killed mid-migration leaves its backend running the
        // statement to its end (PgBouncer closes the server connection, the backend does not
        // notice), keeping the history row locked and every other starter waiting.
        batch.push(
            Part::Setup,
            &format!("SET LOCAL client_connection_check_interval = {ms};\n"),
        );
    }
    if !pooler && (config.lock_timeout.is_some() || config.statement_timeout.is_some()) {
        batch.push(Part::Setup, &timeouts_sql(config));
    }
    // In a grouped run now() is the start of the whole group, so each migration notes its own.
    let since = if grouped {
        Since::Noted
    } else {
        Since::TransactionStart
    };
    let mut resets_session = false;
    for (index, migration) in group.iter().enumerate() {
        if grouped {
            batch.push(Part::Setup, Since::NOTE);
        }
        // Behind a transaction pooler the history row goes first: a second applier blocks on
        // its key (for up to the lock-wait timeout, and no statement timeout, since the first
        // one may take long), then fails with a unique violation instead of applying it again.
        // Under the session lock nobody else applies, so it goes last, like any runner's.
        if pooler {
            batch.push(
                Part::Insert(index),
                &format!(
                    "SET LOCAL lock_timeout = {};\nSET LOCAL statement_timeout = 0;\n{}{}",
                    config.lock_wait.as_millis().max(1),
                    write::insert(table, migration, write::Written::Applied),
                    timeouts_sql(config)
                ),
            );
        }
        batch.push_script(Part::Sql(index), migration.up_sql());
        if may_change_session(migration.up_sql()) {
            resets_session = true;
            batch.push(
                Part::Restore(index),
                &setup.restore_in_transaction_sql(&timeouts_sql(config)),
            );
        }
        let record = if pooler {
            write::record_inserted(table, migration.version(), host, since)
        } else {
            write::record(table, migration, host, since)
        };
        batch.push(Part::Record(index), &record);
    }
    // Set again right before the commit, so that a migration's own `synchronous_commit` cannot
    // make the run's durable commit asynchronous.
    batch.push(
        Part::Commit,
        if durable {
            "SET LOCAL synchronous_commit = on;\nCOMMIT;\n"
        } else {
            "SET LOCAL synchronous_commit = off;\nCOMMIT;\n"
        },
    );
    // A migration that cannot have changed session settings needs no reset after it.
    if resets_session {
        batch.push(Part::Reset, &setup.reset_sql());
    }
    batch
}

/// Applies `group` in one transaction and one round trip (see [`batch`]).
///
/// Unless `durable`, the commit does not wait for its WAL to reach disk. A run makes only its
/// last commit `durable`, and that flush covers the WAL of every commit before it; a run that
/// ends before its last commit flushes on its way out ([`Runner::flush`]). A server crash before
/// that flush loses the latest migrations together with their history rows (each is still one
/// transaction), and the next run applies them again. Other starters cannot act on them early:
/// they see the whole set applied only once the last commit, flushed before it becomes visible,
/// is.
pub(crate) async fn apply(
    runner: &Runner<'_>,
    group: &[&Migration],
    durable: bool,
) -> Result<Group, Error> {
    let config = runner.config;
    let batch = batch(
        config,
        &runner.table,
        &runner.setup,
        runner.host,
        group,
        durable,
    );
    let mut attempt = 0;
    loop {
        let outcome = batch::run(runner.client, batch.sql()).await;
        let completed = outcome.completed();
        let Some(error) = outcome.error else {
            runner.committed(durable);
            return applied(&batch, group, &outcome.messages).map(Group::Applied);
        };
        rollback(runner.client).await;
        let (index, error) = match meaning(runner, &batch, group, completed, error)? {
            Meaning::Conflict => return Ok(Group::Conflict),
            Meaning::Failed { migration, error } => (migration, error),
        };
        if !may_retry(config, &error, attempt) {
            return Err(failed(&batch, group, index, completed, error));
        }
        attempt += 1;
        let pause = retry_pause(config.lock_retry_delay, attempt);
        let migration = group[index];
        tracing::warn!(
            version = migration.version(),
            name = %migration.name(),
            attempt,
            retries = config.lock_retries,
            pause_ms = pause.as_millis() as u64,
            code = error.code().map(SqlState::code),
            "migration hit a lock timeout or a deadlock; rolled back, retrying"
        );
        tokio::time::sleep(pause).await;
    }
}

/// What a failed batch means.
enum Meaning {
    /// Another starter recorded a migration of the group first.
    Conflict,
    /// The group's migration `migration` failed, in its SQL or its record: another try may
    /// succeed if the server ended it for a lock timeout or a deadlock.
    Failed {
        migration: usize,
        error: tokio_postgres::Error,
    },
}

/// Traces `error` to the piece of the batch it came from. What cannot be tried again comes back
/// as the error to report.
fn meaning(
    runner: &Runner<'_>,
    batch: &Batch<Part>,
    group: &[&Migration],
    completed: usize,
    error: tokio_postgres::Error,
) -> Result<Meaning, Error> {
    let table = &runner.table;
    let piece = batch.statement(completed).map(|(piece, _)| piece.tag);
    // No error from the server: the connection was lost. The server may have run the COMMIT
    // before it went, whatever reached us: nothing can be said but that.
    if error.as_db_error().is_none() && piece != Some(Part::Reset) {
        return Err(Error::OutcomeUnknown {
            versions: group.iter().map(|migration| migration.version()).collect(),
            table: table.display(),
            source: error,
        });
    }
    // PostgreSQL parses the whole batch before running any of it, so a syntax error completes
    // nothing: its position, not the count, says whose SQL it is in.
    let position = error_byte(&error, batch.sql()).and_then(|byte| batch.piece_at(byte));
    if let Some(Part::Sql(index)) = position.map(|piece| piece.tag) {
        let migration = group[index];
        let line = error_line(
            migration.up_sql(),
            &error,
            start_of(batch, Part::Sql(index)),
            batch.sql(),
            None,
        );
        return Err(failure(migration, line, false, error));
    }
    match piece {
        None | Some(Part::Setup) => Err(Error::db(
            "could not start the migration transaction",
            error,
        )),
        Some(Part::Reset) => Err(Error::db(
            "the migrations were committed, but resetting the session after them failed",
            error,
        )),
        Some(Part::Insert(index)) => {
            let migration = group[index];
            if is_history_conflict(&error, table) {
                return Ok(Meaning::Conflict);
            }
            if error.code() == Some(&SqlState::LOCK_NOT_AVAILABLE) {
                return Err(Error::RowLockTimeout {
                    version: migration.version(),
                    name: migration.name().to_owned(),
                    waited: runner.config.lock_wait,
                });
            }
            Err(Error::db(
                format!(
                    "could not record migration {} in the history table",
                    migration.version()
                ),
                error,
            ))
        }
        Some(Part::Record(index)) => {
            let migration = group[index];
            if !runner.config.transaction_pooler && is_history_conflict(&error, table) {
                return Ok(Meaning::Conflict);
            }
            if is_history_tampered(&error) {
                return Err(Error::HistoryTampered {
                    version: migration.version(),
                    name: migration.name().to_owned(),
                });
            }
            Ok(Meaning::Failed {
                migration: index,
                error,
            })
        }
        Some(Part::Sql(index) | Part::Restore(index)) => Ok(Meaning::Failed {
            migration: index,
            error,
        }),
        Some(Part::Commit) => Err(failed(batch, group, group.len() - 1, completed, error)),
    }
}

/// The error for migration `index` of the group, whose SQL (or record) failed.
fn failed(
    batch: &Batch<Part>,
    group: &[&Migration],
    index: usize,
    completed: usize,
    error: tokio_postgres::Error,
) -> Error {
    let migration = group[index];
    let (piece, within) = match batch.statement(completed) {
        Some((piece, within)) => (Some(piece.tag), within),
        None => (None, 0),
    };
    if piece == Some(Part::Record(index)) {
        return Error::db(
            format!("migration {} ran, but recording it in the history table failed, so it was rolled back and nothing of it was kept", migration.version()),
            error,
        );
    }
    let statement = (piece == Some(Part::Sql(index))).then_some(within);
    let line = error_line(
        migration.up_sql(),
        &error,
        start_of(batch, Part::Sql(index)),
        batch.sql(),
        statement,
    );
    failure(migration, line, false, error)
}

/// The applied migrations of a batch that committed: each record's row carries its migration's
/// duration. A migration without one means the count of statements went wrong: said loudly,
/// never dropped.
fn applied(
    batch: &Batch<Part>,
    group: &[&Migration],
    messages: &[tokio_postgres::SimpleQueryMessage],
) -> Result<Vec<Applied>, Error> {
    let mut durations: Vec<Option<u64>> = vec![None; group.len()];
    for (part, row) in batch.rows(messages) {
        if let Part::Record(index) = part {
            durations[index] = row.get(0).and_then(|ms| ms.parse().ok());
        }
    }
    group
        .iter()
        .zip(durations)
        .map(|(migration, duration_ms)| {
            let duration_ms = duration_ms.ok_or_else(|| {
                Error::internal(&format!(
                    "the server's replies to the batch of migration {} did not line up with its statements (no history record row); the batch was committed, so it is applied",
                    migration.version()
                ))
            })?;
            Ok(Applied {
                version: migration.version(),
                name: migration.name().to_owned(),
                duration_ms,
                no_transaction: false,
            })
        })
        .collect()
}

/// Whether a transactional batch that failed with `error` may run again: a lock timeout (with
/// `lock_timeout` configured) or a deadlock rolled all of it back, and the next try may find the
/// lock free.
fn may_retry(config: &Migrator<'_>, error: &tokio_postgres::Error, attempt: u32) -> bool {
    let lock_timeout =
        error.code() == Some(&SqlState::LOCK_NOT_AVAILABLE) && config.lock_timeout.is_some();
    let deadlock = error.code() == Some(&SqlState::T_R_DEADLOCK_DETECTED);
    (lock_timeout || deadlock) && attempt < config.lock_retries
}

/// Where a piece's text starts in its batch.
fn start_of(batch: &Batch<Part>, tag: Part) -> usize {
    batch
        .pieces()
        .iter()
        .find(|piece| piece.tag == tag)
        .map_or(0, |piece| piece.bytes.start)
}
