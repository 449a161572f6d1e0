//! The runner's own session, which every operation that changes the database works in: one
//! connection nobody else uses (taken out of its pool for good, or handed over), the migration
//! lock on it (unless behind a transaction pooler), the history table's names, how to put the
//! session back after a migration, and whether the run's commits still need a flush.

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};

use deadpool_postgres::Pool;
use tokio_postgres::error::SqlState;
use tokio_postgres::Client;

use crate::batch::{self, Batch};
use crate::failure::{describe, rollback};
use crate::history;
use crate::lock;
use crate::read::{self, FirstRead};
use crate::session::{Setup, Snapshot};
use crate::table::Table;
use crate::{Error, Migration, Migrator};

/// PostgreSQL 14 added `client_connection_check_interval`.
const CONNECTION_CHECK_SINCE: i32 = 140_000;

/// The parts of the batch that prepares the runner's session.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Probe {
    Snapshot,
    CheckInterval,
}

pub(crate) struct Runner<'r> {
    pub(crate) config: &'r Migrator<'r>,
    pub(crate) client: &'r Client,
    pub(crate) table: Table,
    /// How to put the session back after a migration.
    pub(crate) setup: Setup,
    /// The host recorded in the log.
    pub(crate) host: &'static str,
    /// Whether the session takes the migration lock (not behind a transaction pooler).
    pub(crate) holds_lock: bool,
    /// The pool the connection came from, which can open a second session to check the lock.
    pool: Option<&'r Pool>,
    /// Whether a commit of this run waited for no WAL flush and no later commit's flush covered
    /// it yet: then the run makes one before it returns, however it returns.
    unflushed: AtomicBool,
}

impl<'r> Runner<'r> {
    /// Prepares `client` (the runner's own) for the history table the first read found.
    pub(crate) async fn open(
        config: &'r Migrator<'r>,
        client: &'r Client,
        pool: Option<&'r Pool>,
        first: &FirstRead,
    ) -> Result<Runner<'r>, Error> {
        let setup = configure(config, client, first.server_version).await?;
        Ok(Runner {
            config,
            client,
            table: Table::new(&first.schema, &config.table),
            setup,
            host: history::host_name(),
            holds_lock: !config.transaction_pooler,
            pool,
            unflushed: AtomicBool::new(false),
        })
    }

    /// Reads where the history table is, opens the runner's session on `client` (already its
    /// own) and takes the lock: how rollback, baseline and repair begin.
    pub(crate) async fn locked(
        config: &'r Migrator<'r>,
        client: &'r Client,
        pool: Option<&'r Pool>,
    ) -> Result<Runner<'r>, Error> {
        let first = read::first(config, client).await?;
        let runner = Runner::open(config, client, pool, &first).await?;
        runner.lock().await?;
        Ok(runner)
    }

    /// Ends a section: every commit flushed, then the lock released (after a success).
    pub(crate) async fn finish<T>(&self, result: Result<T, Error>) -> Result<T, Error> {
        let result = self.flush(result).await;
        self.release(result).await
    }

    /// Creates or adopts the history table (and its schema when one is set), however many
    /// starters try at once; `true` when its version column is an INTEGER (an adopted table).
    pub(crate) async fn ensure_history(&self) -> Result<bool, Error> {
        history::ensure(
            self.client,
            &self.table,
            self.config.schema.is_some(),
            self.config.lock_wait,
        )
        .await
    }

    pub(crate) fn migrations(&self) -> &'r [Migration] {
        self.config.migrations.as_slice()
    }

    pub(crate) fn migration(&self, version: i64) -> Option<&'r Migration> {
        self.config.migrations.get(version)
    }

    /// Takes the migration lock (not behind a transaction pooler).
    pub(crate) async fn lock(&self) -> Result<(), Error> {
        self.lock_unless(|| async { Ok(false) }).await.map(drop)
    }

    /// Takes the migration lock (not behind a transaction pooler), polling; between tries asks
    /// `done` whether there is still something to do (the holder may have applied everything):
    /// then returns `false`, without the lock. Once held, the lock is checked to really exclude
    /// other sessions.
    pub(crate) async fn lock_unless<F, Fut>(&self, done: F) -> Result<bool, Error>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<bool, tokio_postgres::Error>>,
    {
        if !self.holds_lock {
            return Ok(true);
        }
        let wait = lock::Wait {
            timeout: self.config.lock_wait,
            report_every: self.config.lock_report_every,
        };
        if !lock::acquire(self.client, &self.table, wait, done).await? {
            return Ok(false);
        }
        lock::verify_exclusive(self.client, &self.table, self.pool).await?;
        Ok(true)
    }

    /// Releases the lock after a section that succeeded; after a failed one, the caller closes
    /// the connection, which releases it too.
    pub(crate) async fn release<T>(&self, result: Result<T, Error>) -> Result<T, Error> {
        if self.holds_lock && result.is_ok() {
            // The connection is closed right after anyway: a failed unlock must not turn a run
            // that did its work into an error and lose its report.
            if let Err(error) = lock::release(self.client, &self.table).await {
                tracing::warn!(%error, "could not release the migration lock; closing the connection releases it");
            }
        }
        result
    }

    /// A commit was made: with `synchronous_commit = on` (`durable`), whose flush covers every
    /// commit before it, or not.
    pub(crate) fn committed(&self, durable: bool) {
        self.unflushed.store(!durable, Ordering::Relaxed);
    }

    /// A commit was made with the session's own `synchronous_commit`, which may be `off`.
    pub(crate) fn committed_maybe_async(&self) {
        self.unflushed.store(true, Ordering::Relaxed);
    }

    /// Makes every commit of the run durable before it returns, whichever way it returns.
    /// Commits made with `synchronous_commit = off` wait for no flush; the run's last commit
    /// waits for one that covers them all, but an error, a hook or another starter may end a
    /// run before it.
    ///
    /// A commit waits for the flush only if its transaction wrote WAL: one that only took a
    /// transaction id (`pg_current_xact_id()`) writes its commit record and returns without
    /// waiting (seen on PostgreSQL 15). A transactional logical message is the smallest write
    /// there is, touches no table, and needs no privilege.
    pub(crate) async fn flush<T>(&self, result: Result<T, Error>) -> Result<T, Error> {
        if !self.unflushed.load(Ordering::Relaxed) {
            return result;
        }
        let sql = "BEGIN;\nSET LOCAL synchronous_commit = on;\n\
                   SELECT pg_logical_emit_message(true, 'pgratchet', 'flush');\nCOMMIT;";
        match (self.client.batch_execute(sql).await, result) {
            (Ok(()), result) => {
                self.committed(true);
                result
            }
            (Err(error), Ok(_)) => Err(Error::db(
                "the run's migrations are committed, but waiting for them to reach the disk failed",
                error,
            )),
            (Err(error), Err(original)) => {
                tracing::error!(%error, "could not wait for the run's commits to reach the disk");
                Err(original)
            }
        }
    }
}

/// Takes what [`Setup`] needs, in one round trip: the caller's session as it is (not behind a
/// pooler), and whether the server takes the runner's `client_connection_check_interval`. Some
/// platforms refuse it (Windows; macOS before PostgreSQL 15) with SQLSTATE 22023: then the
/// runner goes on without it (a failing `SET` inside a migration's batch would abort the
/// migration), and says so once.
async fn configure(
    config: &Migrator<'_>,
    client: &Client,
    server_version: i32,
) -> Result<Setup, Error> {
    let pooler = config.transaction_pooler;
    let interval = config.connection_check_interval.as_millis();
    let mut batch = Batch::new();
    if !pooler {
        batch.push(Probe::Snapshot, Snapshot::SQL);
    }
    let probes_interval = server_version >= CONNECTION_CHECK_SINCE && interval > 0;
    // Last, so that its failure leaves the snapshot's rows read.
    if probes_interval {
        let set = if pooler {
            format!("BEGIN;\nSET LOCAL client_connection_check_interval = {interval};\nROLLBACK;\n")
        } else {
            format!("SET client_connection_check_interval = {interval};\n")
        };
        batch.push(Probe::CheckInterval, &set);
    }
    if batch.sql().is_empty() {
        return Ok(Setup::default());
    }
    let outcome = batch::run(client, batch.sql()).await;
    let completed = outcome.completed();
    let mut setup = Setup {
        snapshot: None,
        check_interval_ms: probes_interval.then_some(interval),
    };
    if let Some(error) = outcome.error {
        let at_probe =
            batch.statement(completed).map(|(piece, _)| piece.tag) == Some(Probe::CheckInterval);
        if !(at_probe && error.code() == Some(&SqlState::INVALID_PARAMETER_VALUE)) {
            return Err(Error::db(
                "could not configure the migration session",
                error,
            ));
        }
        rollback(client).await;
        setup.check_interval_ms = None;
        static SAID: AtomicBool = AtomicBool::new(false);
        if !SAID.swap(true, Ordering::Relaxed) {
            tracing::warn!(
                error = %describe(&error),
                "the server refused client_connection_check_interval; going on without it, so a migration whose runner dies runs its statement to the end"
            );
        }
    }
    if !pooler {
        setup.snapshot = Some(
            Snapshot::parse(&outcome.messages)
                .ok_or_else(|| Error::internal("could not read the session's settings"))?,
        );
    }
    Ok(setup)
}
