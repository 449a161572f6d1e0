//! [`Migrator`]: a set of migrations with the settings to run it (its entry points are in
//! `operations.rs`).

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use crate::ident::validate;
use crate::status::Policy;
use crate::{Error, Migrations};

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

    /// The migrations this runner applies.
    pub fn migrations(&self) -> &'a Migrations {
        self.migrations
    }

    /// The history table's schema as set (`None`: the connection's current schema).
    pub fn schema_name(&self) -> Option<&str> {
        self.schema.as_deref()
    }

    /// The history table's name as set.
    pub fn table_name(&self) -> &str {
        &self.table
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

    /// Checks the names from configuration, before anything is sent.
    pub(crate) fn check_names(&self) -> Result<(), Error> {
        validate("table", &self.table)?;
        validate("table", &format!("{}_log", self.table))?;
        if let Some(schema) = &self.schema {
            validate("schema", schema)?;
        }
        Ok(())
    }
}
