//! A migration that runs outside a transaction (`-- migrate:no-transaction`): its `running`
//! row is committed first, each statement runs on its own, and one transaction records how it
//! ended.

use std::time::{Duration, Instant};

use pgratchet_core::{lexer, transaction};
use tokio_postgres::error::{ErrorPosition, SqlState};
use tokio_postgres::Client;

use crate::batch::{self, Batch};
use crate::failure::{
    describe, failure, invalid_indexes, is_history_conflict, left_behind, rollback, InvalidIndex,
};
use crate::history::read as history;
use crate::history::write::{self, Written};
use crate::lock;
use crate::report::elapsed_ms;
use crate::runner::Runner;
use crate::{Applied, Error, Migration, State};

/// The parts of the batch that records a no-transaction migration that ran.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Closing {
    /// The session reset after the migration's statements.
    Reset,
    Begin,
    /// `running` becomes `applied` (only if the row is still `running`), and the log entry.
    Record,
    /// The migration lock is still this session's.
    LockCheck,
    Commit,
}

/// Applies a no-transaction migration; `None` when another starter (behind a pooler) applied it.
pub(crate) async fn apply(
    runner: &Runner<'_>,
    migration: &Migration,
    durable: bool,
) -> Result<Option<Applied>, Error> {
    let (client, table, config) = (runner.client, &runner.table, runner.config);
    let version = migration.version();
    // Committed first: a process that dies mid-way leaves `running`, which the next run refuses,
    // and a second applier behind a pooler sees it instead of running it again.
    if let Err(error) = client
        .batch_execute(&write::insert(table, migration, Written::Running))
        .await
    {
        if is_history_conflict(&error, table) {
            return wait_for_other(runner, migration).await;
        }
        return Err(Error::db(
            format!("could not record migration {version} as running"),
            error,
        ));
    }
    let pooler = config.transaction_pooler;
    if !pooler {
        let mut settings = String::new();
        if let Some(timeout) = config.lock_timeout {
            settings.push_str(&format!("SET lock_timeout = {};\n", timeout.as_millis()));
        }
        if let Some(timeout) = config.statement_timeout {
            settings.push_str(&format!(
                "SET statement_timeout = {};\n",
                timeout.as_millis()
            ));
        }
        if !settings.is_empty() {
            client
                .batch_execute(&settings)
                .await
                .map_err(|e| Error::db("could not set the migration's timeouts", e))?;
        }
    }
    // To tell the INVALID indexes this migration leaves from those already there.
    let invalid_before = invalid_indexes(client).await;
    let started = Instant::now();
    let lock_timeout = config.lock_timeout.filter(|_| !pooler);
    let failed = run_statements(client, migration.up_sql(), lock_timeout)
        .await
        .err();
    let duration_ms = elapsed_ms(started);
    let reset = if pooler {
        String::new()
    } else {
        runner.setup.reset_sql()
    };
    if let Some(failed) = failed {
        let failed = Failed {
            reset: &reset,
            failure: failed,
            invalid_before: &invalid_before,
            duration_ms,
            record_duration: true,
            note: "",
        };
        return Err(record_failure(runner, migration, failed).await);
    }
    let batch = closing_batch(runner, migration, &reset, duration_ms, durable);
    let outcome = batch::run(client, batch.sql()).await;
    let completed = outcome.completed();
    let Some(error) = outcome.error else {
        runner.committed(durable);
        return Ok(Some(Applied {
            version,
            name: migration.name().to_owned(),
            duration_ms,
            no_transaction: true,
        }));
    };
    rollback(client).await;
    let division_by_zero = error.code() == Some(&SqlState::DIVISION_BY_ZERO);
    match batch.statement(completed).map(|(piece, _)| piece.tag) {
        // The row is gone, or no longer `running`: a repair ran meanwhile (behind a pooler, it
        // takes no lock). Reporting the migration applied would leave no row, and the next start
        // would apply it again.
        Some(Closing::Record) if division_by_zero => {
            let message = "ran to its end, but its `running` history row was removed while it ran";
            let sql = format!(
                "BEGIN READ WRITE;\n{}COMMIT;",
                write::failed_row(table, migration, runner.host, message, duration_ms)
            );
            if let Err(error) = client.batch_execute(&sql).await {
                tracing::error!(version, %error, "could not record the migration as failed");
            }
            runner.committed_maybe_async();
            Err(Error::RecordRemoved {
                version,
                name: migration.name().to_owned(),
            })
        }
        Some(Closing::LockCheck) if division_by_zero => {
            let message = "released the migration lock";
            if let Err(error) = mark_failed(runner, "", version, (message, message), duration_ms, true).await {
                tracing::error!(version, %error, "could not record the migration as failed");
            }
            runner.committed_maybe_async();
            Err(Error::LockReleased {
                version,
                name: migration.name().to_owned(),
            })
        }
        _ if error.as_db_error().is_none() => Err(Error::db(
            format!("migration {version} ran, but the connection was lost while recording it: its history row may say applied or still running; if running, check what it did, then run repair for version {version} (`Migrator::repair`)"),
            error,
        )),
        _ => Err(Error::db(
            format!("migration {version} ran, but could not be recorded as applied (it is recorded as running; check, then run repair for version {version} (`Migrator::repair`))"),
            error,
        )),
    }
}

/// The batch that records a no-transaction migration that ran: the session reset first, so the
/// migration's own settings (e.g. `default_transaction_read_only`, a tiny `statement_timeout`)
/// cannot stop its recording (READ WRITE for the same reason behind a pooler, where there is no
/// reset); then `running` becomes `applied` only if the row is still `running`, and, under the
/// session lock, a check that the migration did not release it (`1 / count(*)` fails for each).
fn closing_batch(
    runner: &Runner<'_>,
    migration: &Migration,
    reset: &str,
    duration_ms: u64,
    durable: bool,
) -> Batch<Closing> {
    let table = &runner.table;
    let mut batch = Batch::new();
    batch.push(Closing::Reset, reset);
    batch.push(Closing::Begin, "BEGIN READ WRITE;\n");
    batch.push(
        Closing::Record,
        &write::applied_if_running(table, migration.version(), runner.host, duration_ms),
    );
    if runner.holds_lock {
        batch.push(Closing::LockCheck, &lock::held_check_sql(table));
    }
    batch.push(
        Closing::Commit,
        if durable {
            "SET LOCAL synchronous_commit = on;\nCOMMIT;"
        } else {
            "SET LOCAL synchronous_commit = off;\nCOMMIT;"
        },
    );
    batch
}

/// How a no-transaction script (an up, or a down) failed, for [`record_failure`].
pub(crate) struct Failed<'f> {
    /// The session reset that goes first, so the script's session settings cannot break the
    /// record.
    pub(crate) reset: &'f str,
    /// The file's line of the error, and the error.
    pub(crate) failure: (u32, tokio_postgres::Error),
    /// The INVALID indexes before the script ran.
    pub(crate) invalid_before: &'f [InvalidIndex],
    pub(crate) duration_ms: u64,
    /// Whether the history row takes the duration (a down keeps the up's).
    pub(crate) record_duration: bool,
    /// What the stored error starts with.
    pub(crate) note: &'f str,
}

/// After a no-transaction script failed: ends any failed transaction, marks the migration
/// `failed` with the error, logs it, and returns the error to report, naming the INVALID indexes
/// the script left behind.
pub(crate) async fn record_failure(
    runner: &Runner<'_>,
    migration: &Migration,
    failed: Failed<'_>,
) -> Error {
    let client = runner.client;
    let version = migration.version();
    let (line, error) = failed.failure;
    rollback(client).await;
    let (invalid_indexes, indexes_in_progress) =
        left_behind(failed.invalid_before, invalid_indexes(client).await);
    let message = describe(&error);
    let mut reported = failure(migration, Some(line), true, error);
    if let Error::Migration(failure) = &mut reported {
        failure.invalid_indexes = invalid_indexes;
        failure.indexes_in_progress = indexes_in_progress;
    }
    let stored = format!("{}{message}", failed.note);
    if let Err(record_error) = mark_failed(
        runner,
        failed.reset,
        version,
        (&stored, &message),
        failed.duration_ms,
        failed.record_duration,
    )
    .await
    {
        tracing::error!(version, error = %record_error, "could not record the failure; the migration stays recorded as running");
        return reported.not_recorded();
    }
    runner.committed_maybe_async();
    reported
}

/// Marks a `running` migration `failed` (see [`write::mark_failed`]), after `reset`.
async fn mark_failed(
    runner: &Runner<'_>,
    reset: &str,
    version: i64,
    errors: (&str, &str),
    duration_ms: u64,
    record_duration: bool,
) -> Result<(), tokio_postgres::Error> {
    let sql = format!(
        "{reset}BEGIN READ WRITE;\n{}COMMIT;",
        write::mark_failed(
            &runner.table,
            version,
            runner.host,
            errors,
            duration_ms,
            record_duration
        )
    );
    runner.client.batch_execute(&sql).await
}

/// Behind a transaction pooler another starter may be running this no-transaction migration:
/// wait for it to finish rather than running it twice or skipping ahead of it. `None` when it
/// was applied.
async fn wait_for_other(
    runner: &Runner<'_>,
    migration: &Migration,
) -> Result<Option<Applied>, Error> {
    let version = migration.version();
    let started = Instant::now();
    loop {
        match history::state(runner.client, &runner.table, version).await? {
            Some((State::Applied, _)) => return Ok(None),
            Some((State::Failed, error)) => {
                return Err(Error::Failed {
                    version,
                    name: migration.name().to_owned(),
                    error,
                })
            }
            _ if started.elapsed() >= runner.config.lock_wait => {
                return Err(Error::StillRunning {
                    version,
                    name: migration.name().to_owned(),
                    waited: started.elapsed(),
                })
            }
            _ => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}

/// Runs a no-transaction script statement by statement (each its own implicit transaction, as
/// `CREATE INDEX CONCURRENTLY` needs); on failure, the file's line of the error and the error.
///
/// With the session's `lock_timeout` set (`lock_timeout`), a statement that runs `CONCURRENTLY`
/// runs with none, and the rest with it: its waits for older transactions count as lock waits
/// (see [`transaction::runs_concurrently`]), and it blocks neither reads nor writes.
pub(crate) async fn run_statements(
    client: &Client,
    sql: &str,
    lock_timeout: Option<Duration>,
) -> Result<(), (u32, tokio_postgres::Error)> {
    for statement in lexer::executed(sql) {
        let uncapped = lock_timeout.filter(|_| transaction::runs_concurrently(statement.text));
        if uncapped.is_some() {
            if let Err(error) = client.simple_query("SET lock_timeout = 0").await {
                return Err((statement.line, error));
            }
        }
        let result = client.simple_query(statement.text).await;
        if let (Some(timeout), Ok(_)) = (uncapped, &result) {
            let restore = format!("SET lock_timeout = {}", timeout.as_millis());
            if let Err(error) = client.simple_query(&restore).await {
                return Err((statement.line, error));
            }
        }
        if let Err(error) = result {
            let line = match error.as_db_error().and_then(|db| db.position()) {
                Some(ErrorPosition::Original(position)) => {
                    batch::char_position_to_byte(statement.text, *position as usize)
                        .map(|byte| lexer::line_of(sql, statement.offset + byte))
                }
                _ => None,
            }
            .unwrap_or(statement.line);
            return Err((line, error));
        }
    }
    Ok(())
}
