//! The entry points of a [`Migrator`], each on a pool or on a client the caller hands over.
//!
//! On a pool, reads that change nothing use a pooled connection and give it back; anything that
//! takes the lock or runs a migration takes its connection out of the pool for good, and closes
//! it at the end. A client given to an operation that changes the database is the runner's and
//! is closed at the end; one lent (`&Client`) to a read is only read on.

use deadpool_postgres::Pool;
use tokio_postgres::Client;

use crate::connection::Connection;
use crate::history;
use crate::{
    apply, baseline, read, redo, repair, rollback, script, BoxFuture, Error, Event, Migrations,
    Migrator, Planned, Redo, Repair, Repaired, Report, Rollback, Status, Validation,
};

impl Migrator<'_> {
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
            self.check_names()?;
            let connection = Connection::Pooled(pool.get().await?);
            apply::run(self, connection, Some(pool)).await
        })
    }

    /// Applies what is pending on `client`, which the runner owns and closes.
    ///
    /// With no pool to open a second session from, the check that the migration lock excludes
    /// others is made on this session alone (`pg_locks` must show the lock): it catches an
    /// engine whose lock function is a stub, not one that also fakes `pg_locks`.
    #[inline(never)]
    pub fn run_client(&self, client: Client) -> BoxFuture<'_, Result<Report, Error>> {
        Box::pin(async move {
            self.check_names()?;
            apply::run(self, Connection::Owned(client), None).await
        })
    }

    /// What [`run`](Self::run) would apply, with checksums and SQL; writes nothing (not even the
    /// history table).
    pub async fn plan(&self, pool: &Pool) -> Result<Vec<Planned>, Error> {
        let connection = pool.get().await?;
        self.plan_client(&connection).await
    }

    /// Like [`plan`](Self::plan), on a client.
    pub async fn plan_client(&self, client: &Client) -> Result<Vec<Planned>, Error> {
        self.check_names()?;
        read::plan(self, client).await
    }

    /// Every migration's [`Status`], known or recorded, in version order; writes nothing.
    pub async fn status(&self, pool: &Pool) -> Result<Vec<Status>, Error> {
        let connection = pool.get().await?;
        self.status_client(&connection).await
    }

    /// Like [`status`](Self::status), on a client.
    pub async fn status_client(&self, client: &Client) -> Result<Vec<Status>, Error> {
        self.check_names()?;
        read::status(self, client).await
    }

    /// Checks the migrations against the database, changing nothing: modified, unknown, removed,
    /// failed, running, out-of-order, missing down SQL.
    pub async fn validate(&self, pool: &Pool) -> Result<Validation, Error> {
        let connection = pool.get().await?;
        self.validate_client(&connection).await
    }

    /// Like [`validate`](Self::validate), on a client.
    pub async fn validate_client(&self, client: &Client) -> Result<Validation, Error> {
        let statuses = self.status_client(client).await?;
        Ok(Validation::new(statuses, self.policy))
    }

    /// The audit trail (`<table>_log`), oldest first; writes nothing.
    pub async fn history(&self, pool: &Pool) -> Result<Vec<Event>, Error> {
        let connection = pool.get().await?;
        self.history_client(&connection).await
    }

    /// Like [`history`](Self::history), on a client.
    pub async fn history_client(&self, client: &Client) -> Result<Vec<Event>, Error> {
        self.check_names()?;
        let first = read::first(self, client).await?;
        let table = crate::table::Table::new(&first.schema, &self.table);
        history::read::log(client, &table).await
    }

    /// The exact SQL a run would execute now (history table creation, the lock, each pending
    /// migration with its history and log rows, built by the same code as a run's batches), for
    /// a DBA to review or run with `psql -f`. Writes nothing.
    pub async fn script(&self, pool: &Pool) -> Result<String, Error> {
        let connection = pool.get().await?;
        self.script_client(&connection).await
    }

    /// Like [`script`](Self::script), on a client.
    pub async fn script_client(&self, client: &Client) -> Result<String, Error> {
        self.check_names()?;
        script::script(self, client).await
    }

    /// Rolls back newest first (see [`Rollback`]). Each down runs in a transaction with the
    /// removal of its history row; a migration without down SQL stops the rollback before
    /// anything is reverted. A version this binary does not know is rolled back with the down
    /// SQL stored when it was applied. The report lists them in
    /// [`rolled_back`](Report::rolled_back).
    pub async fn down(&self, pool: &Pool, how: Rollback) -> Result<Report, Error> {
        self.check_names()?;
        let connection = Connection::Pooled(pool.get().await?).take();
        rollback::on(self, &connection, Some(pool), how).await
    }

    /// Like [`down`](Self::down), on a client the runner owns and closes.
    pub async fn down_client(&self, client: Client, how: Rollback) -> Result<Report, Error> {
        self.check_names()?;
        rollback::on(self, &client, None, how).await
    }

    /// Goes up or down to `version`: up when it is at or above the newest applied migration
    /// (applying the pending ones up to it), down otherwise, keeping `version` itself. `version`
    /// must be 0 (before every migration, but for a migration 0, which stays) or a migration
    /// known here or recorded in the database, else [`Error::UnknownTarget`]. To roll back
    /// every migration, version 0 included: [`down`](Self::down) with [`Rollback::All`].
    pub async fn to(&self, pool: &Pool, version: i64) -> Result<Report, Error> {
        self.check_names()?;
        let connection = Connection::Pooled(pool.get().await?).take();
        self.to_on(&connection, Some(pool), version).await
    }

    /// Like [`to`](Self::to), on a client the runner owns and closes.
    pub async fn to_client(&self, client: Client, version: i64) -> Result<Report, Error> {
        self.check_names()?;
        self.to_on(&client, None, version).await
    }

    async fn to_on(
        &self,
        client: &Client,
        pool: Option<&Pool>,
        version: i64,
    ) -> Result<Report, Error> {
        let recorded: Vec<i64> = read::first(self, client)
            .await?
            .rows
            .unwrap_or_default()
            .iter()
            .map(|row| row.version)
            .collect();
        // 0 means "before everything"; anything else must be a migration, known or recorded, so
        // that a mistyped version does not apply (or revert) everything.
        if version != 0 && self.migrations.get(version).is_none() && !recorded.contains(&version) {
            return Err(Error::UnknownTarget { version });
        }
        if recorded.iter().any(|newest| version < *newest) {
            rollback::on(self, client, pool, Rollback::To(version)).await
        } else {
            apply::run_on(&self.clone().target(version), client, pool).await
        }
    }

    /// Records the migrations up to `version` as applied, with their checksums, without running
    /// them: for a database whose schema existed before its history. Refused when anything is
    /// recorded already. Returns the versions recorded.
    pub async fn baseline(&self, pool: &Pool, version: i64) -> Result<Vec<i64>, Error> {
        self.check_names()?;
        let connection = Connection::Pooled(pool.get().await?).take();
        baseline::on(self, &connection, Some(pool), version).await
    }

    /// Like [`baseline`](Self::baseline), on a client the runner owns and closes.
    pub async fn baseline_client(&self, client: Client, version: i64) -> Result<Vec<i64>, Error> {
        self.check_names()?;
        baseline::on(self, &client, None, version).await
    }

    /// Clears `failed` and `running` records (the migration is pending again; what it left
    /// behind, e.g. INVALID indexes, is reported) and re-stamps the checksums of deliberately
    /// edited applied files (see [`Repair`]).
    pub async fn repair(&self, pool: &Pool, scope: &Repair) -> Result<Repaired, Error> {
        self.check_names()?;
        let connection = Connection::Pooled(pool.get().await?).take();
        repair::on(self, &connection, Some(pool), scope).await
    }

    /// Like [`repair`](Self::repair), on a client the runner owns and closes.
    pub async fn repair_client(&self, client: Client, scope: &Repair) -> Result<Repaired, Error> {
        self.check_names()?;
        repair::on(self, &client, None, scope).await
    }

    /// The round-trip check, for a scratch database (it applies and reverts everything): for
    /// each migration in order, up, snapshot, down, compare with the schema before, up again, all
    /// on one connection. When the up after a down that did not restore the schema fails (on
    /// what the down left behind), the redo stops there and reports what it found so far.
    pub async fn redo(&self, pool: &Pool) -> Result<Redo, Error> {
        self.check_names()?;
        let connection = Connection::Pooled(pool.get().await?).take();
        redo::on(self, &connection).await
    }

    /// Like [`redo`](Self::redo), on a client the runner owns and closes.
    pub async fn redo_client(&self, client: Client) -> Result<Redo, Error> {
        self.check_names()?;
        redo::on(self, &client).await
    }
}

impl Migrations {
    /// Applies what is pending with the default settings (see [`Migrator`] for the others).
    ///
    /// ```no_run
    /// # async fn example(pool: deadpool_postgres::Pool, migrations: &pgratchet_runtime::Migrations) -> Result<(), pgratchet_runtime::Error> {
    /// let report = migrations.run(&pool).await?;
    /// for applied in &report.applied {
    ///     println!("applied {} {} in {} ms", applied.version, applied.name, applied.duration_ms);
    /// }
    /// # Ok(()) }
    /// ```
    pub fn run<'a>(&'a self, pool: &'a Pool) -> BoxFuture<'a, Result<Report, Error>> {
        Box::pin(async move { Migrator::new(self).run(pool).await })
    }

    /// Applies what is pending on a client the runner owns (and closes when done).
    pub fn run_client(&self, client: Client) -> BoxFuture<'_, Result<Report, Error>> {
        Box::pin(async move { Migrator::new(self).run_client(client).await })
    }
}
