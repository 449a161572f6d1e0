//! [`Migrator`]: the configurable runner, and its entry points.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use deadpool_postgres::Pool;
use tokio_postgres::Client;

use crate::apply::Engine;
use crate::connection::Connection;
use crate::status::Policy;
use crate::{
    Error, Migrations, Redo, RedoMismatch, Repair, Repaired, Report, Rollback, Status, Validation,
};

/// A boxed, sendable future: what [`Migrator::run`] and [`Migrations::run`] return.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A runner for a set of migrations, with its settings. [`Migrations::run`] is
/// `Migrator::new(migrations).run(pool)` with the defaults.
///
/// ```no_run
/// # async fn example(pool: deadpool_postgres::Pool, migrations: &pgratchet_runtime::Migrations) -> Result<(), pgratchet_runtime::Error> {
/// use std::time::Duration;
/// let report = pgratchet_runtime::Migrator::new(migrations)
///     .schema("app")
///     .table("schema_migrations")
///     .lock_timeout(Duration::from_millis(500))
///     .run(&pool)
///     .await?;
/// println!("applied {} migrations", report.applied.len());
/// # Ok(()) }
/// ```
#[derive(Clone, Debug)]
pub struct Migrator<'a> {
    pub(crate) migrations: &'a Migrations,
    pub(crate) schema: Option<String>,
    pub(crate) table: String,
    pub(crate) target: Option<i64>,
    pub(crate) lock_wait: Duration,
    pub(crate) lock_report_every: Duration,
    pub(crate) lock_timeout: Option<Duration>,
    pub(crate) statement_timeout: Option<Duration>,
    pub(crate) lock_retries: u32,
    pub(crate) lock_retry_delay: Duration,
    pub(crate) policy: Policy,
    pub(crate) transaction_pooler: bool,
    pub(crate) connection_check_interval: Duration,
    pub(crate) grouped: bool,
    pub(crate) hooks: crate::hooks::Hooks,
}

impl<'a> Migrator<'a> {
    /// A runner with the defaults: table `schema_migrations` in the connection's current schema,
    /// all migrations, wait up to 10 minutes for the lock, no lock or statement timeout, no
    /// out-of-order migrations, unknown newer versions allowed with a warning.
    pub fn new(migrations: &'a Migrations) -> Self {
        Migrator {
            migrations,
            schema: None,
            table: "schema_migrations".to_owned(),
            target: None,
            lock_wait: Duration::from_secs(600),
            lock_report_every: Duration::from_secs(5),
            lock_timeout: None,
            statement_timeout: None,
            lock_retries: 5,
            lock_retry_delay: Duration::from_millis(500),
            policy: Policy::default(),
            transaction_pooler: false,
            connection_check_interval: Duration::from_secs(2),
            grouped: false,
            hooks: crate::hooks::Hooks::default(),
        }
    }

    /// The schema of the history table (created if missing). Default: `current_schema()` of the
    /// connection, resolved once per run.
    pub fn schema(mut self, schema: impl Into<String>) -> Self {
        self.schema = Some(schema.into());
        self
    }

    /// The history table's name (default `schema_migrations`); the audit log is `<table>_log`.
    pub fn table(mut self, table: impl Into<String>) -> Self {
        self.table = table.into();
        self
    }

    /// Apply migrations up to and including this version only.
    pub fn target(mut self, version: i64) -> Self {
        self.target = Some(version);
        self
    }

    /// How long to wait for another runner's lock before giving up with
    /// [`Error::LockTimeout`] naming the holder (default 10 minutes).
    pub fn lock_wait_timeout(mut self, wait: Duration) -> Self {
        self.lock_wait = wait;
        self
    }

    /// How often to log who holds the lock while waiting (default 5 s).
    pub fn lock_wait_report_interval(mut self, every: Duration) -> Self {
        self.lock_report_every = every;
        self
    }

    /// `lock_timeout` for each migration's statements, so DDL never queues behind a long
    /// transaction and blocks all traffic. A transactional migration that hits it is rolled back
    /// and retried (see [`lock_retries`](Self::lock_retries)).
    pub fn lock_timeout(mut self, timeout: Duration) -> Self {
        self.lock_timeout = Some(timeout);
        self
    }

    /// `statement_timeout` for each migration's statements.
    pub fn statement_timeout(mut self, timeout: Duration) -> Self {
        self.statement_timeout = Some(timeout);
        self
    }

    /// With a [`lock_timeout`](Self::lock_timeout): how many times a transactional migration that
    /// failed to get a lock (SQLSTATE 55P03) is retried (default 5), first after `delay`, then
    /// after doubling sleeps (at most 30 s each).
    pub fn lock_retries(mut self, retries: u32, delay: Duration) -> Self {
        self.lock_retries = retries;
        self.lock_retry_delay = delay;
        self
    }

    /// How often the server checks, while a migration's statement runs, that the runner is still
    /// connected (`client_connection_check_interval`, PostgreSQL 14 and later; default 2 s;
    /// zero turns it off): a runner killed mid-migration then stops its statement within this
    /// interval instead of when the statement ends. A server that refuses the setting (some
    /// platforms do) is used without it.
    pub fn connection_check_interval(mut self, every: Duration) -> Self {
        self.connection_check_interval = every;
        self
    }

    /// Apply a pending migration older than the newest applied one instead of refusing.
    pub fn allow_out_of_order(mut self, allow: bool) -> Self {
        self.policy.allow_out_of_order = allow;
        self
    }

    /// Refuse to run when the database has versions newer than every known one (by default a
    /// newer release that ran first only gives a warning, so rolling deploys keep working).
    pub fn strict_unknown(mut self, strict: bool) -> Self {
        self.policy.strict_unknown = strict;
        self
    }

    /// Say that connections go through a transaction-pooling PgBouncer: no session lock (it would
    /// mean nothing there) and no session `SET`s; exactly-once then rests on the history row each
    /// migration inserts first, in its own transaction.
    pub fn transaction_pooler(mut self, pooler: bool) -> Self {
        self.transaction_pooler = pooler;
        self
    }

    /// Apply all pending migrations in one transaction: all or nothing. Refused when one of them
    /// runs outside a transaction.
    pub fn grouped(mut self, grouped: bool) -> Self {
        self.grouped = grouped;
        self
    }

    /// Calls `hook` at `point` of each run (see [`HookPoint`](crate::HookPoint)); e.g. a backup
    /// before anything is applied. A failing before-hook stops the run before that step.
    ///
    /// ```no_run
    /// # async fn example(pool: deadpool_postgres::Pool, migrations: &pgratchet_runtime::Migrations) -> Result<(), pgratchet_runtime::Error> {
    /// use pgratchet_runtime::{HookPoint, Migrator};
    /// Migrator::new(migrations)
    ///     .hook(HookPoint::BeforeRun, |context| async move {
    ///         println!("about to apply {:?}", context.pending);
    ///         Ok(())
    ///     })
    ///     .run(&pool)
    ///     .await?;
    /// # Ok(()) }
    /// ```
    pub fn hook<F, Fut>(mut self, point: crate::HookPoint, hook: F) -> Self
    where
        F: Fn(crate::HookContext) -> Fut + Send + Sync + 'static,
        Fut: std::future::Future<Output = Result<(), crate::HookError>> + Send + 'static,
    {
        self.hooks.add(point, hook);
        self
    }

    /// Applies what is pending, taking a connection from `pool`.
    ///
    /// When nothing is pending this is one query on a pooled connection, which goes back to the
    /// pool. Otherwise the connection is taken out of the pool for good and closed at the end.
    ///
    /// The future is boxed so that the engine is compiled once, in this crate, not again (and
    /// optimised again) in every service that calls it: that keeps a service's rebuild after
    /// editing a migration fast.
    #[inline(never)]
    pub fn run<'r>(&'r self, pool: &'r Pool) -> BoxFuture<'r, Result<Report, Error>> {
        Box::pin(async move {
            let connection = Connection::Pooled(pool.get().await?);
            Engine::new(self)?.run(connection).await
        })
    }

    /// Applies what is pending on `client`, which the runner owns and closes.
    #[inline(never)]
    pub fn run_client(&self, client: Client) -> BoxFuture<'_, Result<Report, Error>> {
        Box::pin(async move { Engine::new(self)?.run(Connection::Owned(client)).await })
    }

    /// What [`run`](Self::run) would apply, with checksums and SQL; writes nothing (not even the
    /// history table).
    pub async fn plan(&self, pool: &Pool) -> Result<Vec<crate::Planned>, Error> {
        let connection = Connection::Pooled(pool.get().await?);
        Engine::new(self)?.plan(&connection).await
    }

    /// Like [`plan`](Self::plan), on a client.
    pub async fn plan_client(&self, client: &Client) -> Result<Vec<crate::Planned>, Error> {
        Engine::new(self)?.plan(client).await
    }

    /// Every migration's [`Status`], known or recorded, in version order; writes nothing.
    pub async fn status(&self, pool: &Pool) -> Result<Vec<Status>, Error> {
        let connection = Connection::Pooled(pool.get().await?);
        Engine::new(self)?.status(&connection).await
    }

    /// Like [`status`](Self::status), on a client.
    pub async fn status_client(&self, client: &Client) -> Result<Vec<Status>, Error> {
        Engine::new(self)?.status(client).await
    }

    /// Rolls back newest first: down to a version, or the newest `n`. Each down runs in a
    /// transaction with the removal of its history row; a migration without down SQL stops the
    /// rollback before anything is reverted. A version this binary does not know is rolled back
    /// with the down SQL stored when it was applied.
    pub async fn down(&self, pool: &Pool, how: Rollback) -> Result<Report, Error> {
        let connection = Connection::Pooled(pool.get().await?);
        let engine = Engine::new(self)?;
        let first = engine.first_read(&connection).await?;
        let started = std::time::Instant::now();
        let mut report = {
            let locked = engine.lock(connection, &first).await?;
            let result = engine.rollback(&locked.session(), how).await;
            locked.release(result).await
        }?;
        report.took_lock = !self.transaction_pooler;
        report.elapsed_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
        Ok(report)
    }

    /// Goes up or down to `version`: up when it is at or above the newest applied migration
    /// (applying the pending ones up to it), down otherwise, keeping `version` itself. `version`
    /// must be 0 (before every migration, but for a migration 0, which stays) or a migration
    /// known here or recorded in the database, else [`Error::UnknownTarget`]. To roll back
    /// every migration, version 0 included: [`down`](Self::down) with [`Rollback::All`].
    pub async fn to(&self, pool: &Pool, version: i64) -> Result<Report, Error> {
        let recorded: Vec<i64> = {
            let connection = Connection::Pooled(pool.get().await?);
            let engine = Engine::new(self)?;
            engine
                .first_read(&connection)
                .await?
                .rows
                .unwrap_or_default()
                .iter()
                .map(|row| row.version)
                .collect()
        };
        // 0 means "before everything"; anything else must be a migration, known or recorded, so
        // that a mistyped version does not apply (or revert) everything.
        if version != 0 && self.migrations.get(version).is_none() && !recorded.contains(&version) {
            return Err(Error::UnknownTarget { version });
        }
        let newest_applied = recorded.iter().copied().max();
        if newest_applied.is_some_and(|newest| version < newest) {
            self.down(pool, Rollback::To(version)).await
        } else {
            self.clone().target(version).run(pool).await
        }
    }

    /// Records the migrations up to `version` as applied, with their checksums, without running
    /// them: for a database whose schema existed before its history. Refused when anything is
    /// recorded already. Returns the versions recorded.
    pub async fn baseline(&self, pool: &Pool, version: i64) -> Result<Vec<i64>, Error> {
        let connection = Connection::Pooled(pool.get().await?);
        let engine = Engine::new(self)?;
        let first = engine.first_read(&connection).await?;
        {
            let locked = engine.lock(connection, &first).await?;
            let result = engine.baseline(&locked.session(), version).await;
            locked.release(result).await
        }
    }

    /// Clears `failed` and `running` records (the migration is pending again; what it left
    /// behind, e.g. INVALID indexes, is reported) and re-stamps the checksums of deliberately
    /// edited applied files.
    pub async fn repair(&self, pool: &Pool, scope: &Repair) -> Result<Repaired, Error> {
        let connection = Connection::Pooled(pool.get().await?);
        let engine = Engine::new(self)?;
        let first = engine.first_read(&connection).await?;
        {
            let locked = engine.lock(connection, &first).await?;
            let result = engine.repair(&locked.session(), scope).await;
            locked.release(result).await
        }
    }

    /// Checks the migrations against the database, changing nothing: modified, unknown, removed,
    /// failed, running, out-of-order, missing down SQL.
    pub async fn validate(&self, pool: &Pool) -> Result<Validation, Error> {
        let statuses = self.status(pool).await?;
        Ok(Validation::new(statuses, self.policy))
    }

    /// The round-trip check, for a scratch database (it applies and reverts everything): for each
    /// migration in order, up, snapshot, down, compare with the schema before, up again. When
    /// the up after a down that did not restore the schema fails (on what the down left behind),
    /// the redo stops there and reports what it found so far.
    pub async fn redo(&self, pool: &Pool) -> Result<Redo, Error> {
        let mut redo = Redo::default();
        let mut previous: Option<i64> = None;
        for migration in self.migrations.iter() {
            let version = migration.version();
            let before = self.snapshot(pool).await?;
            self.clone().target(version).run(pool).await?;
            if migration.down().is_none() {
                redo.irreversible.push(version);
                previous = Some(version);
                continue;
            }
            self.down(pool, Rollback::To(previous.unwrap_or(version - 1)))
                .await?;
            let after_down = self.snapshot(pool).await?;
            if after_down == before {
                redo.restored.push(version);
                self.clone().target(version).run(pool).await?;
            } else {
                redo.mismatches.push(RedoMismatch {
                    version,
                    name: migration.name().to_owned(),
                    missing: before.difference(&after_down).cloned().collect(),
                    left_behind: after_down.difference(&before).cloned().collect(),
                });
                // What the down left behind usually makes the up fail (`CREATE INDEX` of an
                // index that is still there): the mismatch is the finding, not that error, and
                // the migrations after it cannot be checked on this schema.
                if let Err(error) = self.clone().target(version).run(pool).await {
                    tracing::warn!(version, %error, "redo stopped: the up after a down that did not restore the schema failed");
                    return Ok(redo);
                }
            }
            previous = Some(version);
        }
        Ok(redo)
    }

    /// The audit trail (`<table>_log`), oldest first; writes nothing.
    pub async fn history(&self, pool: &Pool) -> Result<Vec<crate::Event>, Error> {
        let connection = Connection::Pooled(pool.get().await?);
        let engine = Engine::new(self)?;
        let first = engine.first_read(&connection).await?;
        let table = crate::history::Table::new(&first.schema, &self.table);
        crate::events::read(&connection, &table).await
    }

    async fn snapshot(&self, pool: &Pool) -> Result<std::collections::BTreeSet<String>, Error> {
        let connection = Connection::Pooled(pool.get().await?);
        let engine = Engine::new(self)?;
        let first = engine.first_read(&connection).await?;
        let table = crate::history::Table::new(&first.schema, &self.table);
        crate::redo::snapshot(&connection, &table, self.schema.as_deref()).await
    }

    /// The exact SQL script a run would execute now (history table creation, the lock, each
    /// pending migration with its history and log rows), for a DBA to review or run with
    /// `psql -f`. Writes nothing.
    pub async fn script(&self, pool: &Pool) -> Result<String, Error> {
        let connection = Connection::Pooled(pool.get().await?);
        Engine::new(self)?.script(&connection).await
    }
}
