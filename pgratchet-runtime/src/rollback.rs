//! Rolling back, newest first: each down in its own transaction with the removal of its history
//! row, or statement by statement for a no-transaction down; a version this binary does not know
//! with the down SQL stored when it was applied.

use std::time::Instant;

use pgratchet_core::directive;

use crate::batch::{self, Batch};
use crate::failure::{
    error_byte, error_line, failure, invalid_indexes, is_history_tampered, rollback,
};
use crate::history::read::{self as history, Recorded};
use crate::history::write;
use crate::no_transaction::{record_failure, run_statements, Failed};
use crate::report::elapsed_ms;
use crate::runner::Runner;
use crate::transactional::timeouts_sql;
use deadpool_postgres::Pool;
use tokio_postgres::Client;

use crate::{Applied, Error, Migration, Migrator, Report, Script, State, Status};

/// How far a rollback goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Rollback {
    /// Roll back every applied migration above this version (`To(0)` keeps a version 0).
    To(i64),
    /// Roll back the newest `n` applied migrations.
    Steps(usize),
    /// Roll back every applied migration, version 0 included.
    All,
}

impl Rollback {
    /// Of every migration's status (as [`Migrator::status`](crate::Migrator::status) gives it,
    /// in version order), those this rollback would revert, newest first.
    pub fn plan(self, statuses: &[Status]) -> Vec<Status> {
        let newest_first = statuses
            .iter()
            .rev()
            .filter(|status| status.state != State::Pending)
            .cloned()
            .collect();
        self.choose(newest_first, |status| status.version)
    }

    /// Of the applied migrations, newest first, those this rollback reverts.
    pub(crate) fn choose<T>(self, newest_first: Vec<T>, version: impl Fn(&T) -> i64) -> Vec<T> {
        match self {
            Rollback::To(target) => newest_first
                .into_iter()
                .filter(|item| version(item) > target)
                .collect(),
            Rollback::Steps(steps) => newest_first.into_iter().take(steps).collect(),
            Rollback::All => newest_first,
        }
    }
}

/// Rolls back on `client` (the runner's own), under the lock.
pub(crate) async fn on(
    config: &Migrator<'_>,
    client: &Client,
    pool: Option<&Pool>,
    how: Rollback,
) -> Result<Report, Error> {
    let started = Instant::now();
    let runner = Runner::locked(config, client, pool).await?;
    let result = run(&runner, how).await;
    let mut report = runner.finish(result).await?;
    report.took_lock = runner.holds_lock;
    report.elapsed_ms = elapsed_ms(started);
    Ok(report)
}

/// Rolls back under the lock the runner holds; every down is found before anything is
/// reverted, so a missing one changes nothing.
async fn run(runner: &Runner<'_>, how: Rollback) -> Result<Report, Error> {
    runner.ensure_history().await?;
    let recorded = history::recorded(runner.client, &runner.table).await?;
    if let Some(stuck) = recorded.iter().find(|row| row.state != State::Applied) {
        let (version, name) = (stuck.version, stuck.name.clone());
        return Err(if stuck.state == State::Running {
            Error::Running { version, name }
        } else {
            Error::Failed {
                version,
                name,
                error: None,
            }
        });
    }
    let chosen = how.choose(recorded, |row| row.version);
    let mut downs = Vec::with_capacity(chosen.len());
    for row in &chosen {
        let Some(script) = down_of(runner, row) else {
            return Err(Error::Irreversible {
                version: row.version,
                name: row.name.clone(),
            });
        };
        // The down as a migration of its own, so failures name the down file.
        downs.push(Migration::new(row.version, row.name.clone(), script, None));
    }
    let mut report = Report::default();
    for down in downs {
        let duration_ms = if down.no_transaction() {
            revert_no_transaction(runner, &down).await?
        } else {
            revert_transactional(runner, &down).await?
        };
        tracing::info!(version = down.version(), name = %down.name(), duration_ms, "rolled back migration");
        report.rolled_back.push(Applied {
            version: down.version(),
            name: down.name().to_owned(),
            duration_ms,
            no_transaction: down.no_transaction(),
        });
    }
    Ok(report)
}

/// The down of a recorded migration: its file, or for a version this binary does not know, the
/// down SQL stored with it.
fn down_of(runner: &Runner<'_>, row: &Recorded) -> Option<Script> {
    match runner.migration(row.version) {
        Some(migration) => migration.down().cloned(),
        None => row.down_sql.as_ref().map(|sql| {
            let no_transaction = directive::parse("", sql)
                .map(|directives| directives.no_transaction)
                .unwrap_or(false);
            Script::new(
                format!(
                    "down_sql of version {} (from the history table)",
                    row.version
                ),
                sql.clone(),
                no_transaction,
            )
        }),
    }
}

/// The parts of a transactional down's batch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Part {
    Setup,
    Sql,
    Restore,
    Record,
    Commit,
    Reset,
}

/// A transactional down, in one round trip: `BEGIN`; its SQL; the removal of its history row
/// (which fails if the down removed it, or the table) and its log entry; `COMMIT`; the session
/// reset. Returns how long it took.
async fn revert_transactional(runner: &Runner<'_>, down: &Migration) -> Result<u64, Error> {
    let config = runner.config;
    let mut batch = Batch::new();
    batch.push(Part::Setup, "BEGIN;\n");
    if let Some(timeout) = config.lock_timeout {
        batch.push(
            Part::Setup,
            &format!("SET LOCAL lock_timeout = {};\n", timeout.as_millis()),
        );
    }
    batch.push_script(Part::Sql, down.up_sql());
    // As after an up: the down's `SET ROLE` or timeouts must not break the bookkeeping.
    batch.push(
        Part::Restore,
        &runner
            .setup
            .restore_in_transaction_sql(&timeouts_sql(config)),
    );
    batch.push(
        Part::Record,
        &write::removed_after_down(&runner.table, down.version(), runner.host),
    );
    batch.push(Part::Commit, "COMMIT;\n");
    batch.push(Part::Reset, &runner.setup.reset_sql());
    let started = Instant::now();
    let outcome = batch::run(runner.client, batch.sql()).await;
    let completed = outcome.completed();
    let Some(error) = outcome.error else {
        runner.committed_maybe_async();
        return Ok(elapsed_ms(started));
    };
    rollback(runner.client).await;
    let sql_start = batch
        .pieces()
        .iter()
        .find(|piece| piece.tag == Part::Sql)
        .map_or(0, |piece| piece.bytes.start);
    // A syntax error completes nothing (the batch is parsed whole): its position says whose.
    let in_sql = error_byte(&error, batch.sql())
        .and_then(|byte| batch.piece_at(byte))
        .is_some_and(|piece| piece.tag == Part::Sql);
    let statement = batch.statement(completed);
    if !in_sql {
        match statement.map(|(piece, _)| piece.tag) {
            _ if error.as_db_error().is_none() => {
                return Err(Error::OutcomeUnknown {
                    versions: vec![down.version()],
                    table: runner.table.display(),
                    source: error,
                })
            }
            Some(Part::Record) if is_history_tampered(&error) => {
                return Err(Error::HistoryTampered {
                    version: down.version(),
                    name: down.name().to_owned(),
                })
            }
            Some(Part::Setup) | None => {
                return Err(Error::db(
                    "could not start the rollback's transaction",
                    error,
                ))
            }
            Some(Part::Reset) => {
                return Err(Error::db(
                    "the rollback was committed, but resetting the session after it failed",
                    error,
                ))
            }
            _ => {}
        }
    }
    let within = statement
        .filter(|(piece, _)| piece.tag == Part::Sql)
        .map(|(_, within)| within);
    let line = error_line(down.up_sql(), &error, sql_start, batch.sql(), within);
    Err(failure(down, line, false, error))
}

/// A no-transaction down: the row says `running` again, each statement runs on its own, then
/// the row is removed; a failure marks it `failed`. Returns how long it took.
async fn revert_no_transaction(runner: &Runner<'_>, down: &Migration) -> Result<u64, Error> {
    let (client, table) = (runner.client, &runner.table);
    let version = down.version();
    client
        .batch_execute(&write::running_again(table, version))
        .await
        .map_err(|e| Error::db(format!("could not mark migration {version} as running"), e))?;
    let invalid_before = invalid_indexes(client).await;
    let started = Instant::now();
    let reset = runner.setup.reset_sql();
    // A down runs with the session's own timeouts (none of the runner's are set here).
    if let Err(failed) = run_statements(client, down.up_sql(), None).await {
        let failed = Failed {
            reset: &reset,
            failure: failed,
            invalid_before: &invalid_before,
            duration_ms: elapsed_ms(started),
            record_duration: false,
            note: "rollback failed: ",
        };
        return Err(record_failure(runner, down, failed).await);
    }
    let duration = elapsed_ms(started);
    let done = format!(
        "{reset}BEGIN READ WRITE;\n{}COMMIT;",
        write::remove(
            table,
            version,
            crate::events::Action::Rollback,
            runner.host,
            duration,
            None
        ),
    );
    client.batch_execute(&done).await.map_err(|e| {
        Error::db(
            format!("migration {version} was rolled back, but its history row could not be removed (it is recorded as running; run repair for version {version} (`Migrator::repair`))"),
            e,
        )
    })?;
    runner.committed_maybe_async();
    Ok(duration)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rollback_chooses_from_the_newest() {
        let newest_first = vec![5, 3, 1, 0];
        let chosen = |how: Rollback| how.choose(newest_first.clone(), |v| *v);
        assert_eq!(chosen(Rollback::To(1)), [5, 3]);
        assert_eq!(chosen(Rollback::To(0)), [5, 3, 1]);
        assert_eq!(chosen(Rollback::Steps(2)), [5, 3]);
        assert_eq!(chosen(Rollback::Steps(9)), [5, 3, 1, 0]);
        assert_eq!(chosen(Rollback::All), [5, 3, 1, 0]);
    }
}
