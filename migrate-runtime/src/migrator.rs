//! [`Migrator`]: the configurable runner, and its entry points.

use std::time::Duration;

use deadpool_postgres::Pool;
use tokio_postgres::Client;

use crate::apply::Engine;
use crate::connection::Connection;
use crate::status::Policy;
use crate::{Error, Migrations, Report, Status};

/// A runner for a set of migrations, with its settings. [`Migrations::run`] is
/// `Migrator::new(migrations).run(pool)` with the defaults.
///
/// ```no_run
/// # async fn example(pool: deadpool_postgres::Pool, migrations: &migrate_runtime::Migrations) -> Result<(), migrate_runtime::Error> {
/// use std::time::Duration;
/// let report = migrate_runtime::Migrator::new(migrations)
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

    /// Applies what is pending, taking a connection from `pool`.
    ///
    /// When nothing is pending this is one query on a pooled connection, which goes back to the
    /// pool. Otherwise the connection is taken out of the pool for good and closed at the end.
    pub async fn run(&self, pool: &Pool) -> Result<Report, Error> {
        let connection = Connection::Pooled(pool.get().await?);
        Engine::new(self)?.run(connection).await
    }

    /// Applies what is pending on `client`, which the runner owns and closes.
    pub async fn run_client(&self, client: Client) -> Result<Report, Error> {
        Engine::new(self)?.run(Connection::Owned(client)).await
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
}
