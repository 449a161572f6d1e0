//! The apply protocol, top to bottom: the one-row check; every row, read without the lock; the
//! lock (unless behind a pooler); the history table; what is pending, decided again under the
//! lock; each migration in one round trip, with the hooks around them; one flush; the unlock.

use std::time::Instant;

use deadpool_postgres::Pool;
use tokio_postgres::Client;

use crate::connection::Connection;
use crate::history::{self, read::Row};
use crate::no_transaction;
use crate::read::{self, FirstRead};
use crate::report::elapsed_ms;
use crate::runner::Runner;
use crate::session::pooler_leak;
use crate::status::{judge, merge};
use crate::transactional::{self, Group};
use crate::{Applied, Error, HookContext, HookPoint, Migration, Migrator, Report, State};

/// What the reads before the lock found.
enum Found {
    /// Nothing to do: this report says so.
    Done(Report),
    /// Something is pending, or something is wrong, which is decided under the lock.
    Work(FirstRead),
}

/// Applies what is pending, on `connection` (pooled, or handed over): when the reads find
/// nothing to do, the connection is not changed and a pooled one goes back to its pool;
/// otherwise it is taken out of the pool for good and closed at the end.
pub(crate) async fn run(
    config: &Migrator<'_>,
    connection: Connection,
    pool: Option<&Pool>,
) -> Result<Report, Error> {
    let started = Instant::now();
    let first = match look(config, &connection, started).await? {
        Found::Done(report) => return Ok(report),
        Found::Work(first) => first,
    };
    let connection = connection.take();
    work(config, &connection, pool, &first, started).await
}

/// [`run`] on a connection that is already the runner's own (kept open afterwards).
pub(crate) async fn run_on(
    config: &Migrator<'_>,
    client: &Client,
    pool: Option<&Pool>,
) -> Result<Report, Error> {
    let started = Instant::now();
    match look(config, client, started).await? {
        Found::Done(report) => Ok(report),
        Found::Work(first) => work(config, client, pool, &first, started).await,
    }
}

/// The reads before the lock: the one-row check, then, when it does not match, every row.
async fn look(config: &Migrator<'_>, client: &Client, started: Instant) -> Result<Found, Error> {
    let done = |warnings: Vec<String>| {
        Found::Done(Report {
            warnings,
            elapsed_ms: elapsed_ms(started),
            ..Report::default()
        })
    };
    if read::up_to_date(config, client)
        .await
        .map_err(|error| Error::db("could not read the migration history", error))?
    {
        return Ok(done(Vec::new()));
    }
    // Not exactly the known set: every row, read without the lock, says why. Versions from a
    // newer release only warn, and a target may be reached already; then there is nothing to do.
    let first = read::first(config, client).await?;
    if let Some(rows) = &first.rows {
        let statuses = merge(config.migrations.as_slice(), rows);
        if let Ok(verdict) = judge(&statuses, config.policy, config.target, false) {
            if verdict.pending.is_empty() {
                warn_all(&verdict.warnings);
                return Ok(done(verdict.warnings));
            }
        }
    }
    if config.transaction_pooler {
        refuse_pooler_leaks(config, first.rows.as_deref())?;
    }
    Ok(Found::Work(first))
}

/// Under the lock (waited for while another starter may apply everything this one needs):
/// everything pending, then one flush, then the unlock.
async fn work(
    config: &Migrator<'_>,
    client: &Client,
    pool: Option<&Pool>,
    first: &FirstRead,
    started: Instant,
) -> Result<Report, Error> {
    let runner = Runner::open(config, client, pool, first).await?;
    // A `running` row seen without the lock may be another starter's migration in progress:
    // everything is decided again under it.
    if !runner
        .lock_unless(|| read::up_to_date(config, client))
        .await?
    {
        return Ok(Report {
            elapsed_ms: elapsed_ms(started),
            ..Report::default()
        });
    }
    let result = apply_pending(&runner).await;
    let result = runner.flush(result).await;
    let mut report = runner.release(result).await?;
    report.took_lock = runner.holds_lock;
    report.elapsed_ms = elapsed_ms(started);
    Ok(report)
}

/// Behind a transaction pooler, refuses before anything runs a pending no-transaction migration
/// that changes session state (see [`pooler_leak`]).
fn refuse_pooler_leaks(config: &Migrator<'_>, rows: Option<&[Row]>) -> Result<(), Error> {
    let applied = |version: i64| {
        rows.is_some_and(|rows| {
            rows.iter()
                .any(|row| row.version == version && row.state == State::Applied)
        })
    };
    let in_scope = |version: i64| config.target.is_none_or(|target| version <= target);
    for migration in config.migrations.iter() {
        let version = migration.version();
        if !migration.no_transaction() || applied(version) || !in_scope(version) {
            continue;
        }
        if let Some((line, statement)) = pooler_leak(migration.up_sql()) {
            return Err(Error::SessionStateBehindPooler {
                version,
                name: migration.name().to_owned(),
                file: migration.up().path().to_owned(),
                line,
                statement,
            });
        }
    }
    Ok(())
}

/// What is pending, in order, and what is worth a warning.
struct Pending<'r> {
    migrations: Vec<&'r Migration>,
    warnings: Vec<String>,
}

/// What is pending now, from the history as it is (under the lock, or behind a pooler where
/// other starters may be applying right now).
async fn pending<'r>(runner: &Runner<'r>) -> Result<Pending<'r>, Error> {
    let rows = history::read::rows(runner.client, &runner.table).await?;
    let statuses = merge(runner.migrations(), &rows);
    let config = runner.config;
    let verdict = judge(
        &statuses,
        config.policy,
        config.target,
        config.transaction_pooler,
    )?;
    Ok(Pending {
        migrations: verdict
            .pending
            .iter()
            .filter_map(|version| runner.migration(*version))
            .collect(),
        warnings: verdict.warnings,
    })
}

/// The history table, what is pending, and each pending migration with the hooks around it.
async fn apply_pending(runner: &Runner<'_>) -> Result<Report, Error> {
    let config = runner.config;
    let version_is_integer = runner.ensure_history().await?;
    let pending = pending(runner).await?;
    warn_all(&pending.warnings);
    let mut report = Report {
        warnings: pending.warnings,
        ..Report::default()
    };
    let pending = pending.migrations;
    if let Some(migration) = pending
        .iter()
        .find(|migration| version_is_integer && i32::try_from(migration.version()).is_err())
    {
        return Err(Error::VersionTooLarge {
            version: migration.version(),
            table: runner.table.display(),
        });
    }
    if pending.is_empty() {
        return Ok(report);
    }
    let versions: Vec<i64> = pending
        .iter()
        .map(|migration| migration.version())
        .collect();
    let hooks = &config.hooks;
    let call = |context: HookContext| async move {
        hooks
            .call(context)
            .await
            .map_err(|(point, source)| Error::Hook { point, source })
    };
    call(HookContext::run(HookPoint::BeforeRun, &versions)).await?;
    if config.grouped {
        apply_grouped(runner, pending, &mut report).await?;
    } else {
        for (index, migration) in pending.iter().enumerate() {
            // Only the run's last commit waits for the disk; its flush covers the others.
            let last = index + 1 == pending.len();
            let each = |point| HookContext::each(point, &versions, migration);
            call(each(HookPoint::BeforeEach)).await?;
            if migration.no_transaction() {
                match no_transaction::apply(runner, migration, last).await? {
                    Some(applied) => record(&mut report, applied),
                    None => report.applied_by_others.push(migration.version()),
                }
            } else {
                match transactional::apply(runner, &[*migration], last).await? {
                    Group::Applied(applied) => {
                        applied.into_iter().for_each(|a| record(&mut report, a))
                    }
                    Group::Conflict => report.applied_by_others.push(migration.version()),
                }
            }
            call(each(HookPoint::AfterEach)).await?;
        }
    }
    call(HookContext::run(HookPoint::AfterRun, &versions)).await?;
    Ok(report)
}

/// All pending migrations in one transaction. When another starter (behind a pooler) recorded
/// one of them first, the whole batch was rolled back, but only the migrations recorded by then
/// were someone else's: the history is read again and the rest applied.
async fn apply_grouped<'r>(
    runner: &Runner<'r>,
    mut pending: Vec<&'r Migration>,
    report: &mut Report,
) -> Result<(), Error> {
    loop {
        if let Some(migration) = pending.iter().find(|migration| migration.no_transaction()) {
            return Err(Error::GroupedNoTransaction {
                version: migration.version(),
                name: migration.name().to_owned(),
            });
        }
        match transactional::apply(runner, &pending, true).await? {
            Group::Applied(applied) => {
                applied.into_iter().for_each(|a| record(report, a));
                return Ok(());
            }
            Group::Conflict => {
                let now = pending_now(runner).await?;
                for migration in &pending {
                    if !now.iter().any(|m| m.version() == migration.version()) {
                        report.applied_by_others.push(migration.version());
                    }
                }
                pending = now;
                if pending.is_empty() {
                    return Ok(());
                }
            }
        }
    }
}

async fn pending_now<'r>(runner: &Runner<'r>) -> Result<Vec<&'r Migration>, Error> {
    Ok(pending(runner).await?.migrations)
}

fn record(report: &mut Report, applied: Applied) {
    tracing::info!(
        version = applied.version,
        name = %applied.name,
        duration_ms = applied.duration_ms,
        "applied migration"
    );
    report.applied.push(applied);
}

fn warn_all(warnings: &[String]) {
    for warning in warnings {
        tracing::warn!("{warning}");
    }
}
