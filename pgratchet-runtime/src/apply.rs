//! The apply protocol: fast path, lock, table, and each migration in one round trip.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use pgratchet_core::{lexer, transaction};
use tokio_postgres::error::{ErrorPosition, SqlState};
use tokio_postgres::{Client, SimpleQueryMessage};

use crate::batch::{self, Batch};
use crate::connection::Connection;
use crate::error::MigrationFailure;
use crate::fingerprint;
use crate::history::{self, Action, Creation, Row, Shape, Table};
use crate::ident::{literal, literal_opt, validate};
use crate::lock;
use crate::session::{may_change_session, pooler_leak, Setup, Snapshot};
use crate::status::{judge, merge};
use crate::{
    Applied, Error, HookContext, HookPoint, Migration, Migrator, Planned, Report, State, Status,
};

/// PostgreSQL 14 added `client_connection_check_interval`.
const CONNECTION_CHECK_SINCE: i32 = 140_000;

pub(crate) struct Engine<'e> {
    pub(crate) config: &'e Migrator<'e>,
    pub(crate) host: &'static str,
    /// Whether a commit of this run waited for no WAL flush and no later commit's flush covered
    /// it yet: then the run makes one before it returns, however it returns.
    unflushed: AtomicBool,
}

/// The first read of a run: where the table is and what it holds.
pub(crate) struct FirstRead {
    pub(crate) schema: String,
    pub(crate) server_version: i32,
    /// `None` when there is no (readable) history table yet.
    pub(crate) rows: Option<Vec<Row>>,
}

/// The runner's own connection, holding the migration lock (unless behind a pooler).
pub(crate) struct Locked {
    connection: Connection,
    table: Table,
    holds_lock: bool,
    /// The pool the connection came from, which can open a second session to check the lock.
    pool: Option<deadpool_postgres::Pool>,
    /// How to put the session back after a migration.
    setup: Setup,
}

impl Locked {
    pub(crate) fn session(&self) -> Session<'_> {
        Session {
            client: &self.connection,
            table: &self.table,
            holds_lock: self.holds_lock,
            setup: &self.setup,
        }
    }

    /// Releases the lock after a successful section; after a failed one the connection is only
    /// dropped (closed), which releases it too.
    pub(crate) async fn release<T>(self, result: Result<T, Error>) -> Result<T, Error> {
        if self.holds_lock && result.is_ok() {
            // The connection is closed right after, which releases the lock anyway: a failed
            // unlock must not turn a run that did its work into an error and lose its report.
            if let Err(error) = lock::release(&self.connection, &self.table).await {
                tracing::warn!(%error, "could not release the migration lock; closing the connection releases it");
            }
        }
        result
    }
}

/// What a locked section works with: the runner's own connection, the resolved table and the
/// server version.
pub(crate) struct Session<'s> {
    pub(crate) client: &'s Client,
    pub(crate) table: &'s Table,
    /// Whether the session holds the migration lock (not behind a transaction pooler).
    pub(crate) holds_lock: bool,
    /// How to put the session back after a migration.
    pub(crate) setup: &'s Setup,
}

/// The parts of the batch that prepares the runner's session.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Probe {
    Snapshot,
    CheckInterval,
}

/// The parts of a transactional batch; a migration's parts carry its index in the group.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Part {
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
enum Group {
    /// Every migration of the group was applied (with its duration).
    Applied(Vec<Applied>),
    /// Another starter recorded one of them first: the batch was rolled back, nothing of it
    /// was kept.
    Conflict,
}

/// The parts of the batch that records a no-transaction migration.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Closing {
    /// The session reset after the migration's statements.
    Reset,
    Begin,
    /// `running` becomes `applied` (only if the row is still `running`), and the log entry.
    Record,
    /// The migration lock is still this session's.
    LockCheck,
    Commit,
}

impl<'e> Engine<'e> {
    pub(crate) fn new(config: &'e Migrator<'e>) -> Result<Self, Error> {
        validate("table", &config.table)?;
        validate("table", &format!("{}_log", config.table))?;
        if let Some(schema) = &config.schema {
            validate("schema", schema)?;
        }
        Ok(Engine {
            config,
            host: history::host_name(),
            unflushed: AtomicBool::new(false),
        })
    }

    pub(crate) fn migrations(&self) -> &'e [Migration] {
        self.config.migrations.as_slice()
    }

    pub(crate) async fn run(&self, connection: Connection) -> Result<Report, Error> {
        let started = Instant::now();
        let up_to_date = self
            .fast_check(&connection)
            .await
            .map_err(|error| Error::db("could not read the migration history", error))?;
        if up_to_date {
            return Ok(Report {
                elapsed_ms: elapsed_ms(started),
                ..Report::default()
            });
        }
        // Not exactly the known set: every row, read without the lock, says why. Versions from
        // a newer release only warn by name, and a target may already be reached; then there
        // is nothing to do.
        let first = self.first_read(&connection).await?;
        if let Some(rows) = &first.rows {
            let statuses = merge(self.migrations(), rows);
            if let Ok(verdict) = judge(&statuses, self.config.policy, self.config.target, false) {
                if verdict.pending.is_empty() {
                    warn_all(&verdict.warnings);
                    return Ok(Report {
                        warnings: verdict.warnings,
                        elapsed_ms: elapsed_ms(started),
                        ..Report::default()
                    });
                }
            }
        }
        if self.config.transaction_pooler {
            self.refuse_pooler_leaks(first.rows.as_deref())?;
        }
        // Anything else is decided under the lock: a `running` row seen without it may be
        // another starter's migration in progress.
        // While another starter holds the lock, it may apply everything this one needs.
        let Some(locked) = self.lock_unless_up_to_date(connection, &first).await? else {
            return Ok(Report {
                elapsed_ms: elapsed_ms(started),
                ..Report::default()
            });
        };
        let result = self.apply_all(&locked.session()).await;
        let result = self.flush(&locked.session(), result).await;
        let mut report = locked.release(result).await?;
        report.took_lock = !self.config.transaction_pooler;
        report.elapsed_ms = elapsed_ms(started);
        Ok(report)
    }

    /// The fast path, one round trip and one row: is every known migration applied with its
    /// checksum, and nothing else recorded? The server sums a hash of each row's checksum and
    /// version, the runner compares the sum with its own set's (see [`fingerprint`]); unlike
    /// reading every row, this costs less than a runner that reads versions only.
    ///
    /// Anything but a match (no table yet, a table of another shape, something pending, an edited
    /// file, a newer release's rows) is `false`: the slow path reads every row and says which.
    /// Only a failed connection is an error.
    pub(crate) async fn fast_check(&self, client: &Client) -> Result<bool, tokio_postgres::Error> {
        if self.config.target.is_some() {
            return Ok(false);
        }
        let sql = format!(
            "SELECT count(*), {}, bool_and(state = 'applied') FROM {}",
            fingerprint::SQL,
            self.history_from_sql()
        );
        let messages = match client.simple_query(&sql).await {
            Ok(messages) => messages,
            Err(error) if error.as_db_error().is_some() => return Ok(false),
            Err(error) => return Err(error),
        };
        let Some(row) = messages.iter().find_map(|message| match message {
            SimpleQueryMessage::Row(row) => Some(row),
            _ => None,
        }) else {
            return Ok(false);
        };
        let migrations = self.config.migrations;
        let count = row.get(0).and_then(|count| count.parse::<usize>().ok());
        // An empty table sums to NULL.
        let sum = row.get(1).map_or(Some(0), |sum| sum.parse::<i128>().ok());
        let all_applied = row.get(2) != Some("f");
        Ok(count == Some(migrations.len()) && sum == Some(migrations.fingerprint()) && all_applied)
    }

    /// Behind a transaction pooler, refuses before anything runs a pending no-transaction
    /// migration that changes session state (see [`pooler_leak`]).
    fn refuse_pooler_leaks(&self, rows: Option<&[Row]>) -> Result<(), Error> {
        let applied = |version: i64| {
            rows.is_some_and(|rows| {
                rows.iter()
                    .any(|row| row.version == version && row.state == State::Applied)
            })
        };
        let in_scope = |version: i64| self.config.target.is_none_or(|target| version <= target);
        for migration in self.migrations() {
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

    /// Makes every commit of the run durable before it returns, whichever way it returns.
    /// Commits made with `synchronous_commit = off` wait for no flush; the run's last commit
    /// waits for one that covers them all, but an error, a hook or another starter may end a
    /// run before it.
    ///
    /// A commit waits for the flush only if its transaction wrote WAL: one that only took a
    /// transaction id (`pg_current_xact_id()`) writes its commit record and returns without
    /// waiting (seen on PostgreSQL 15). A transactional logical message is the smallest write
    /// there is, touches no table, and needs no privilege.
    async fn flush<T>(&self, session: &Session<'_>, result: Result<T, Error>) -> Result<T, Error> {
        if !self.unflushed.load(Ordering::Relaxed) {
            return result;
        }
        let sql = "BEGIN;\nSET LOCAL synchronous_commit = on;\n\
                   SELECT pg_logical_emit_message(true, 'pgratchet', 'flush');\nCOMMIT;";
        match (session.client.batch_execute(sql).await, result) {
            (Ok(()), result) => {
                self.unflushed.store(false, Ordering::Relaxed);
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

    /// The first statement of a read batch: the schema and the server version.
    fn schema_sql(&self) -> String {
        let schema = match &self.config.schema {
            Some(schema) => literal(schema),
            None => "current_schema()".to_owned(),
        };
        format!("SELECT {schema}, current_setting('server_version_num')")
    }

    /// The `FROM` of the history table. Without a configured schema the unqualified name goes
    /// through the search_path; the filter keeps only a table in current_schema(), where the
    /// runner would create it (evaluated once, not per row).
    fn history_from_sql(&self) -> String {
        let table = &self.config.table;
        match &self.config.schema {
            Some(schema) => Table::new(schema, table).qualified,
            None => format!(
                "{} h WHERE h.tableoid = (SELECT to_regclass(quote_ident(current_schema()) || '.' || quote_ident({})))",
                crate::ident::quote(table),
                literal(table)
            ),
        }
    }

    /// Takes the runner's own connection (out of any pool) and the migration lock (unless behind a
    /// transaction pooler). Dropping the result closes the connection, which releases the lock:
    /// on error nothing is returned to a pool.
    pub(crate) async fn lock(
        &self,
        connection: Connection,
        first: &FirstRead,
    ) -> Result<Locked, Error> {
        let locked = self.prepare(connection, first).await?;
        if locked.holds_lock {
            lock::acquire(&locked.connection, &locked.table, self.lock_wait()).await?;
            lock::verify_exclusive(&locked.connection, &locked.table, locked.pool.as_ref()).await?;
        }
        Ok(locked)
    }

    /// Like [`lock`](Self::lock), but while waiting checks whether the holder applied
    /// everything: then there is nothing to do (`None`).
    async fn lock_unless_up_to_date(
        &self,
        connection: Connection,
        first: &FirstRead,
    ) -> Result<Option<Locked>, Error> {
        let locked = self.prepare(connection, first).await?;
        if locked.holds_lock
            && !lock::acquire_unless_up_to_date(
                &locked.connection,
                &locked.table,
                self.lock_wait(),
                self,
            )
            .await?
        {
            return Ok(None);
        }
        if locked.holds_lock {
            lock::verify_exclusive(&locked.connection, &locked.table, locked.pool.as_ref()).await?;
        }
        Ok(Some(locked))
    }

    async fn prepare(&self, connection: Connection, first: &FirstRead) -> Result<Locked, Error> {
        let pool = connection.pool();
        let connection = connection.take();
        let setup = self
            .configure_session(&connection, first.server_version)
            .await?;
        Ok(Locked {
            connection,
            table: Table::new(&first.schema, &self.config.table),
            holds_lock: !self.config.transaction_pooler,
            pool,
            setup,
        })
    }

    fn lock_wait(&self) -> lock::Wait {
        lock::Wait {
            timeout: self.config.lock_wait,
            report_every: self.config.lock_report_every,
        }
    }

    pub(crate) async fn plan(&self, client: &Client) -> Result<Vec<Planned>, Error> {
        let first = self.first_read(client).await?;
        let rows = first.rows.unwrap_or_default();
        let statuses = merge(self.migrations(), &rows);
        let verdict = judge(&statuses, self.config.policy, self.config.target, false)?;
        Ok(verdict
            .pending
            .iter()
            .filter_map(|version| self.find(*version))
            .map(|migration| Planned {
                version: migration.version(),
                name: migration.name().to_owned(),
                checksum: migration.checksum().to_owned(),
                no_transaction: migration.no_transaction(),
                sql: migration.up_sql().to_owned(),
            })
            .collect())
    }

    pub(crate) async fn status(&self, client: &Client) -> Result<Vec<Status>, Error> {
        let first = self.first_read(client).await?;
        Ok(merge(self.migrations(), &first.rows.unwrap_or_default()))
    }

    pub(crate) fn find(&self, version: i64) -> Option<&'e Migration> {
        self.config.migrations.get(version)
    }

    /// One round trip: the schema, the server version and every row.
    pub(crate) async fn first_read(&self, client: &Client) -> Result<FirstRead, Error> {
        let sql = format!(
            "{};\n{}",
            self.schema_sql(),
            history::rows_sql(&self.history_from_sql())
        );
        let outcome = batch::run(client, &sql).await;
        let (head, tail) = split_first_statement(&outcome.messages);
        let (schema, server_version) = schema_and_version(head)?;
        let rows = match outcome.error {
            None => {
                let table = Table::new(&schema, &self.config.table);
                Some(history::parse_rows(&table, tail)?)
            }
            Some(error) if first_completed(head) && is_missing_history(&error) => None,
            Some(error) => {
                return Err(Error::db("could not read the migration history", error));
            }
        };
        Ok(FirstRead {
            schema,
            server_version,
            rows,
        })
    }

    /// Takes what [`Setup`] needs, in one round trip: the caller's session as it is (not behind
    /// a pooler), and whether the server takes the runner's `client_connection_check_interval`.
    /// Some platforms refuse it (Windows; macOS before PostgreSQL 15) with SQLSTATE 22023: then
    /// the runner goes on without it (a failing `SET` inside a migration's batch would abort
    /// the migration), and says so once.
    async fn configure_session(
        &self,
        client: &Client,
        server_version: i32,
    ) -> Result<Setup, Error> {
        let pooler = self.config.transaction_pooler;
        let interval = self.config.connection_check_interval.as_millis();
        let mut batch = Batch::new();
        if !pooler {
            batch.push(Probe::Snapshot, Snapshot::SQL);
        }
        let probes_interval = server_version >= CONNECTION_CHECK_SINCE && interval > 0;
        // Last, so that its failure leaves the snapshot's rows read.
        if probes_interval {
            let set = if pooler {
                format!(
                    "BEGIN;\nSET LOCAL client_connection_check_interval = {interval};\nROLLBACK;\n"
                )
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
            let at_probe = batch.statement(completed).map(|(piece, _)| piece.tag)
                == Some(Probe::CheckInterval);
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
                    .ok_or_else(|| Error::db_message("could not read the session's settings"))?,
            );
        }
        Ok(setup)
    }

    async fn apply_all(&self, session: &Session<'_>) -> Result<Report, Error> {
        let (client, table) = (session.client, session.table);
        let version_is_integer = self.ensure_table(client, table).await?;
        let pending = self.pending(client, table).await?;
        let mut report = Report {
            warnings: pending.warnings,
            ..Report::default()
        };
        warn_all(&report.warnings);
        let pending = pending.migrations;
        for migration in &pending {
            if version_is_integer && i32::try_from(migration.version()).is_err() {
                return Err(Error::VersionTooLarge {
                    version: migration.version(),
                    table: table.display(),
                });
            }
        }
        if pending.is_empty() {
            return Ok(report);
        }
        let versions: Vec<i64> = pending
            .iter()
            .map(|migration| migration.version())
            .collect();
        self.config
            .hooks
            .call(HookContext {
                point: HookPoint::BeforeRun,
                pending: versions.clone(),
                migration: None,
            })
            .await?;
        if self.config.grouped {
            self.apply_grouped(session, pending, &mut report).await?;
        } else {
            for (index, migration) in pending.iter().enumerate() {
                let last = index + 1 == pending.len();
                let each = |point| HookContext {
                    point,
                    pending: versions.clone(),
                    migration: Some((migration.version(), migration.name().to_owned())),
                };
                self.config.hooks.call(each(HookPoint::BeforeEach)).await?;
                if migration.no_transaction() {
                    match self.apply_no_transaction(session, migration, last).await? {
                        Some(applied) => record(&mut report, applied),
                        None => report.applied_by_others.push(migration.version()),
                    }
                } else {
                    match self
                        .apply_transactional(session, &[*migration], last)
                        .await?
                    {
                        Group::Applied(applied) => {
                            applied.into_iter().for_each(|a| record(&mut report, a))
                        }
                        Group::Conflict => report.applied_by_others.push(migration.version()),
                    }
                }
                self.config.hooks.call(each(HookPoint::AfterEach)).await?;
            }
        }
        self.config
            .hooks
            .call(HookContext {
                point: HookPoint::AfterRun,
                pending: versions,
                migration: None,
            })
            .await?;
        Ok(report)
    }

    /// What is pending now, from the history as it is (under the lock, or behind a pooler where
    /// other starters may be applying right now), and the warnings about it.
    async fn pending(&self, client: &Client, table: &Table) -> Result<Pending<'e>, Error> {
        let rows = history::read_rows(client, table).await?;
        let statuses = merge(self.migrations(), &rows);
        let verdict = judge(
            &statuses,
            self.config.policy,
            self.config.target,
            self.config.transaction_pooler,
        )?;
        Ok(Pending {
            migrations: verdict
                .pending
                .iter()
                .filter_map(|version| self.find(*version))
                .collect(),
            warnings: verdict.warnings,
        })
    }

    /// All pending migrations in one transaction. When another starter (behind a pooler)
    /// recorded one of them first, the whole batch was rolled back, but only that one and those
    /// before it were applied by someone else: the history is read again and the rest applied.
    async fn apply_grouped(
        &self,
        session: &Session<'_>,
        mut pending: Vec<&'e Migration>,
        report: &mut Report,
    ) -> Result<(), Error> {
        if let Some(migration) = pending.iter().find(|migration| migration.no_transaction()) {
            return Err(Error::GroupedNoTransaction {
                version: migration.version(),
                name: migration.name().to_owned(),
            });
        }
        loop {
            match self.apply_transactional(session, &pending, true).await? {
                Group::Applied(applied) => {
                    applied.into_iter().for_each(|a| record(report, a));
                    return Ok(());
                }
                Group::Conflict => {
                    let now = self
                        .pending(session.client, session.table)
                        .await?
                        .migrations;
                    for migration in &pending {
                        if !now.iter().any(|m| m.version() == migration.version()) {
                            report.applied_by_others.push(migration.version());
                        }
                    }
                    if let Some(migration) = now.iter().find(|m| m.no_transaction()) {
                        return Err(Error::GroupedNoTransaction {
                            version: migration.version(),
                            name: migration.name().to_owned(),
                        });
                    }
                    pending = now;
                    if pending.is_empty() {
                        return Ok(());
                    }
                }
            }
        }
    }

    /// Creates or adopts the history table (and its log) in one transaction under a transaction
    /// advisory lock, so starters behind a transaction pooler cannot race on `CREATE TABLE` either.
    /// Returns whether `version` is an INTEGER (an adopted pybmpmon table).
    ///
    /// The lock is tried, never waited for inside a statement: a transaction blocked in
    /// `pg_advisory_xact_lock` holds a snapshot that a session-lock holder's `CREATE INDEX
    /// CONCURRENTLY` waits for, and the two deadlock (a CLI beside services with the pooler flag).
    pub(crate) async fn ensure_table(&self, client: &Client, table: &Table) -> Result<bool, Error> {
        let key = lock::key(table);
        let try_lock = format!("BEGIN;\nSELECT pg_try_advisory_xact_lock({key});");
        let started = Instant::now();
        let mut pause = lock::FIRST_PAUSE;
        let mut races = 0;
        loop {
            let messages = client
                .simple_query(&try_lock)
                .await
                .map_err(|e| Error::db("could not lock the history table for creation", e))?;
            if lock::first_value(&messages).as_deref() != Some("t") {
                rollback(client).await;
                let waited = started.elapsed();
                if waited >= self.config.lock_wait {
                    let holder = lock::holder(client, key).await.ok().flatten().map(Box::new);
                    return Err(Error::LockTimeout { waited, holder });
                }
                tokio::time::sleep(pause).await;
                pause = lock::next_pause(pause);
                continue;
            }
            match self.create_or_adopt(client, table).await {
                Ok(version_is_integer) => return Ok(version_is_integer),
                // An engine whose advisory locks do not lock lets two starters create at once:
                // the loser finds the table there on its next try.
                Err(Error::Database { source, .. }) if races < 3 && is_creation_race(&source) => {
                    rollback(client).await;
                    races += 1;
                }
                Err(error) => {
                    rollback(client).await;
                    return Err(error);
                }
            }
        }
    }

    /// Inside `ensure_table`'s transaction: inspects, creates or adopts, commits.
    async fn create_or_adopt(&self, client: &Client, table: &Table) -> Result<bool, Error> {
        let shape = history::inspect(client, table).await?;
        // Looked up rather than `CREATE SCHEMA IF NOT EXISTS`, which checks CREATE on the
        // database first: a role that owns its schema but not the database could not run.
        let create_schema =
            self.config.schema.is_some() && !history::schema_exists(client, table).await?;
        let ddl = history::ensure_sql(table, &shape, Creation::Run { create_schema });
        client
            .batch_execute(&format!("{ddl}COMMIT;"))
            .await
            .map_err(|e| {
                Error::db(
                    format!("could not create the history table {}", table.display()),
                    e,
                )
            })?;
        if shape == Shape::Missing {
            tracing::info!(table = %table.display(), "created the migration history table");
        } else if shape == Shape::Pybmpmon {
            tracing::info!(table = %table.display(), "adopted an existing pybmpmon history table");
        }
        Ok(matches!(
            shape,
            Shape::Pybmpmon
                | Shape::Ours {
                    version_is_integer: true
                }
        ))
    }

    pub(crate) fn insert_sql(&self, table: &Table, migration: &Migration, state: &str) -> String {
        format!(
            "INSERT INTO {} (version, name, checksum, state, applied_by, down_sql) VALUES ({}, {}, {}, '{state}', current_user, {});\n",
            table.qualified,
            migration.version(),
            literal(migration.name()),
            literal(migration.checksum()),
            literal_opt(migration.down_sql()),
        )
    }

    /// `SET LOCAL` of the configured timeouts, each back to the session's default when unset.
    pub(crate) fn timeouts_sql(&self) -> String {
        let setting = |name: &str, value: Option<Duration>| match value {
            Some(value) => format!("SET LOCAL {name} = {};\n", value.as_millis()),
            None => format!("SET LOCAL {name} TO DEFAULT;\n"),
        };
        setting("lock_timeout", self.config.lock_timeout)
            + &setting("statement_timeout", self.config.statement_timeout)
    }

    /// The batch of one transactional group (one migration, or all of a grouped run): `BEGIN`,
    /// then per migration its SQL, its history row with the execution time and its log entry
    /// (behind a pooler the row goes before the SQL and is checked after it), then `COMMIT`.
    fn transactional_batch(
        &self,
        session: &Session<'_>,
        group: &[&Migration],
        durable: bool,
    ) -> Batch<Part> {
        let table = session.table;
        let pooler = self.config.transaction_pooler;
        let grouped = group.len() > 1;
        let mut batch = Batch::new();
        batch.push(Part::Setup, "BEGIN;\n");
        if !durable {
            batch.push(Part::Setup, "SET LOCAL synchronous_commit = off;\n");
        }
        if let (true, Some(ms)) = (pooler, session.setup.check_interval_ms) {
            // Behind a pooler there is no session to set the check interval on, but the
            // transaction has one: without it, a starter killed mid-migration leaves its backend
            // running the statement to its end (PgBouncer closes the server connection, the
            // backend does not notice), keeping the history row locked and every other starter,
            // with a pooled server connection each, waiting.
            batch.push(
                Part::Setup,
                &format!("SET LOCAL client_connection_check_interval = {ms};\n"),
            );
        }
        if !pooler
            && (self.config.lock_timeout.is_some() || self.config.statement_timeout.is_some())
        {
            batch.push(Part::Setup, &self.timeouts_sql());
        }
        // In a grouped run now() is the start of the whole group, so each migration notes its own
        // start in a transaction-local setting.
        let since = if grouped {
            "current_setting('pgratchet.started')::timestamptz"
        } else {
            "now()"
        };
        let elapsed = format!("(extract(epoch FROM clock_timestamp() - {since}) * 1000)::int");
        let host = literal(self.host);
        let mut resets_session = false;
        for (index, migration) in group.iter().enumerate() {
            let version = migration.version();
            if grouped {
                batch.push(
                    Part::Setup,
                    "SELECT set_config('pgratchet.started', clock_timestamp()::text, true);\n",
                );
            }
            // Behind a transaction pooler the history row goes first: a second applier blocks on
            // its key (for up to the lock-wait timeout, and no statement timeout, since the
            // first one may take long), then fails with a unique violation instead of applying
            // it again. Under the session lock nobody else applies, so it goes last, like any
            // runner's: no UPDATE.
            if pooler {
                batch.push(
                    Part::Insert(index),
                    &format!(
                        "SET LOCAL lock_timeout = {};\nSET LOCAL statement_timeout = 0;\n{}{}",
                        self.config.lock_wait.as_millis().max(1),
                        self.insert_sql(table, migration, "applied"),
                        self.timeouts_sql()
                    ),
                );
            }
            batch.push_script(Part::Sql(index), migration.up_sql());
            if may_change_session(migration.up_sql()) {
                resets_session = true;
                batch.push(
                    Part::Restore(index),
                    &session
                        .setup
                        .restore_in_transaction_sql(&self.timeouts_sql()),
                );
            }
            let (qualified, log) = (&table.qualified, &table.log);
            // Behind a pooler one statement checks that the row inserted first survived the
            // migration (`1 / count(*)` fails if not), stores the duration and appends the log
            // entry. Under the session lock the row goes in last, so two plain INSERTs do it: the
            // server runs them faster than a data-modifying WITH. Either fails if the migration
            // dropped the history or its log. The duration is computed once, so both rows say
            // the same.
            let record = if pooler {
                format!(
                    "WITH h AS (UPDATE {qualified} SET execution_time_ms = {elapsed} WHERE version = {version} RETURNING execution_time_ms), \
                     l AS (INSERT INTO {log} (version, action, host, duration_ms) SELECT {version}, 'apply', {host}, execution_time_ms FROM h) \
                     SELECT max(execution_time_ms), 1 / count(*) FROM h;\n"
                )
            } else {
                format!(
                    "INSERT INTO {qualified} (version, name, checksum, state, applied_by, down_sql, execution_time_ms) \
                     VALUES ({version}, {}, {}, 'applied', current_user, {}, set_config('pgratchet.elapsed_ms', {elapsed}::text, true)::int) \
                     RETURNING execution_time_ms;\n\
                     INSERT INTO {log} (version, action, host, duration_ms) \
                     VALUES ({version}, 'apply', {host}, current_setting('pgratchet.elapsed_ms')::int);\n",
                    literal(migration.name()),
                    literal(migration.checksum()),
                    literal_opt(migration.down_sql()),
                )
            };
            batch.push(Part::Record(index), &record);
        }
        // Set again right before the commit, so that a migration's own `synchronous_commit`
        // cannot make the run's durable commit asynchronous.
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
            batch.push(Part::Reset, &session.setup.reset_sql());
        }
        batch
    }

    /// Applies `group` in one transaction and one round trip (see [`transactional_batch`]).
    ///
    /// Unless `durable`, the commit does not wait for its WAL to reach disk. A run makes only its
    /// last commit `durable`, and that flush covers the WAL of every commit before it; a run
    /// that ends before its last commit flushes on its way out ([`flush`](Self::flush)). A
    /// server crash before that flush loses the latest migrations together with their history
    /// rows (each is still one transaction), and the next run applies them again. Other starters
    /// cannot act on them early: they see the whole set applied only once the last commit,
    /// flushed before it becomes visible, is.
    ///
    /// [`transactional_batch`]: Self::transactional_batch
    async fn apply_transactional(
        &self,
        session: &Session<'_>,
        group: &[&Migration],
        durable: bool,
    ) -> Result<Group, Error> {
        let (client, table) = (session.client, session.table);
        let batch = self.transactional_batch(session, group, durable);
        let mut attempt = 0;
        loop {
            let outcome = batch::run(client, batch.sql()).await;
            let completed = outcome.completed();
            let Some(error) = outcome.error else {
                self.unflushed.store(!durable, Ordering::Relaxed);
                // Each record's row carries its migration's duration. A migration without one
                // means the count of statements went wrong: said loudly, never dropped.
                let mut durations: Vec<Option<u64>> = vec![None; group.len()];
                for (part, row) in batch.rows(&outcome.messages) {
                    if let Part::Record(index) = part {
                        durations[index] = row.get(0).and_then(|ms| ms.parse().ok());
                    }
                }
                let mut applied = Vec::with_capacity(group.len());
                for (migration, duration_ms) in group.iter().zip(durations) {
                    let Some(duration_ms) = duration_ms else {
                        return Err(Error::db_message(&format!(
                            "the server's replies to the batch of migration {} did not line up with its statements (no history record row); the batch was committed, so it is applied",
                            migration.version()
                        )));
                    };
                    applied.push(Applied {
                        version: migration.version(),
                        name: migration.name().to_owned(),
                        duration_ms,
                        no_transaction: false,
                    });
                }
                return Ok(Group::Applied(applied));
            };
            rollback(client).await;
            let statement = batch.statement(completed).map(|(piece, _)| piece.tag);
            // No error from the server: the connection was lost. The server may have run the
            // COMMIT before it went, whatever reached us: nothing can be said but that.
            if error.as_db_error().is_none() && statement != Some(Part::Reset) {
                return Err(Error::OutcomeUnknown {
                    versions: group.iter().map(|migration| migration.version()).collect(),
                    table: table.display(),
                    source: error,
                });
            }
            // PostgreSQL parses the whole batch before running any of it, so a syntax error
            // completes nothing: its position, not the count, says whose SQL it is in.
            let position = error_byte(&error, batch.sql());
            if let Some(Part::Sql(index)) = position
                .and_then(|byte| batch.piece_at(byte))
                .map(|piece| piece.tag)
            {
                let migration = group[index];
                let line = error_line(
                    migration.up_sql(),
                    &error,
                    batch_start(&batch, Part::Sql(index)),
                    batch.sql(),
                    None,
                );
                return Err(failure(migration, line, false, error));
            }
            let Some((piece, within)) = batch.statement(completed) else {
                return Err(Error::db("a migration batch failed after it ended", error));
            };
            let (index, retryable) = match piece.tag {
                Part::Setup => {
                    return Err(Error::db(
                        "could not start the migration transaction",
                        error,
                    ))
                }
                Part::Reset => return Err(Error::db(
                    "the migrations were committed, but resetting the session after them failed",
                    error,
                )),
                Part::Insert(index) => {
                    let migration = group[index];
                    if is_history_conflict(&error, table) {
                        return Ok(Group::Conflict);
                    }
                    if error.code() == Some(&SqlState::LOCK_NOT_AVAILABLE) {
                        return Err(Error::RowLockTimeout {
                            version: migration.version(),
                            name: migration.name().to_owned(),
                            waited: self.config.lock_wait,
                        });
                    }
                    return Err(Error::db(
                        format!(
                            "could not record migration {} in the history table",
                            migration.version()
                        ),
                        error,
                    ));
                }
                Part::Record(index) => {
                    let migration = group[index];
                    if !self.config.transaction_pooler && is_history_conflict(&error, table) {
                        return Ok(Group::Conflict);
                    }
                    if is_history_tampered(&error) {
                        return Err(Error::HistoryTampered {
                            version: migration.version(),
                            name: migration.name().to_owned(),
                        });
                    }
                    (index, true)
                }
                Part::Sql(index) | Part::Restore(index) => (index, true),
                Part::Commit => (group.len() - 1, false),
            };
            let migration = group[index];
            if retryable && self.may_retry(&error, attempt) {
                attempt += 1;
                let pause = retry_pause(self.config.lock_retry_delay, attempt);
                tracing::warn!(
                    version = migration.version(),
                    name = %migration.name(),
                    attempt,
                    retries = self.config.lock_retries,
                    pause_ms = pause.as_millis() as u64,
                    code = error.code().map(SqlState::code),
                    "migration hit a lock timeout or a deadlock; rolled back, retrying"
                );
                tokio::time::sleep(pause).await;
                continue;
            }
            if let Part::Record(_) = piece.tag {
                return Err(Error::db(
                    format!("migration {} ran, but recording it in the history table failed, so it was rolled back and nothing of it was kept", migration.version()),
                    error,
                ));
            }
            let statement = matches!(piece.tag, Part::Sql(_)).then_some(within);
            let line = error_line(
                migration.up_sql(),
                &error,
                batch_start(&batch, Part::Sql(index)),
                batch.sql(),
                statement,
            );
            return Err(failure(migration, line, false, error));
        }
    }

    /// Whether a transactional batch that failed with `error` may run again: a lock timeout (with
    /// `lock_timeout` configured) or a deadlock rolled all of it back, and the next try may find
    /// the lock free.
    fn may_retry(&self, error: &tokio_postgres::Error, attempt: u32) -> bool {
        let lock_timeout = error.code() == Some(&SqlState::LOCK_NOT_AVAILABLE)
            && self.config.lock_timeout.is_some();
        let deadlock = error.code() == Some(&SqlState::T_R_DEADLOCK_DETECTED);
        (lock_timeout || deadlock) && attempt < self.config.lock_retries
    }

    /// Applies a no-transaction migration: its `running` row is committed first, then each
    /// statement runs on its own, then one transaction records it as applied. `None`: another
    /// starter (behind a pooler) applied it.
    async fn apply_no_transaction(
        &self,
        session: &Session<'_>,
        migration: &Migration,
        durable: bool,
    ) -> Result<Option<Applied>, Error> {
        let (client, table) = (session.client, session.table);
        let version = migration.version();
        // Committed first: a process that dies mid-way leaves `running`, which the next run
        // refuses, and a second applier behind a pooler sees it instead of running it again.
        if let Err(error) = client
            .batch_execute(&self.insert_sql(table, migration, "running"))
            .await
        {
            if is_history_conflict(&error, table) {
                return self.wait_for_other(client, table, migration).await;
            }
            return Err(Error::db(
                format!("could not record migration {version} as running"),
                error,
            ));
        }
        let pooler = self.config.transaction_pooler;
        let mut settings = String::new();
        if !pooler {
            if let Some(timeout) = self.config.lock_timeout {
                settings.push_str(&format!("SET lock_timeout = {};\n", timeout.as_millis()));
            }
            if let Some(timeout) = self.config.statement_timeout {
                settings.push_str(&format!(
                    "SET statement_timeout = {};\n",
                    timeout.as_millis()
                ));
            }
        }
        if !settings.is_empty() {
            client
                .batch_execute(&settings)
                .await
                .map_err(|e| Error::db("could not set the migration's timeouts", e))?;
        }
        // To tell the INVALID indexes this migration leaves from those already there.
        let invalid_before = invalid_indexes(client).await;
        let started = Instant::now();
        let lock_timeout = self.config.lock_timeout.filter(|_| !pooler);
        let failed = run_statements(client, migration.up_sql(), lock_timeout)
            .await
            .err();
        let duration_ms = elapsed_ms(started);
        let reset = if pooler {
            String::new()
        } else {
            session.setup.reset_sql()
        };
        if let Some(failed) = failed {
            return Err(self
                .record_failure(
                    client,
                    table,
                    &reset,
                    migration,
                    failed,
                    &invalid_before,
                    duration_ms,
                    true,
                    "",
                )
                .await);
        }
        let batch = self.closing_batch(session, migration, &reset, duration_ms, durable);
        let outcome = batch::run(client, batch.sql()).await;
        let completed = outcome.completed();
        let Some(error) = outcome.error else {
            self.unflushed.store(!durable, Ordering::Relaxed);
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
            // The row is gone, or no longer `running`: a repair ran meanwhile (behind a pooler,
            // it takes no lock). Reporting the migration applied would leave no row, and the
            // next start would apply it again.
            Some(Closing::Record) if division_by_zero => {
                let message = "ran to its end, but its `running` history row was removed while it ran";
                let sql = format!(
                    "BEGIN READ WRITE;\n\
                     INSERT INTO {} (version, name, checksum, state, applied_by, down_sql, error, execution_time_ms) \
                     VALUES ({version}, {}, {}, 'failed', current_user, {}, {}, {duration_ms}) ON CONFLICT (version) DO NOTHING;\n\
                     {}COMMIT;",
                    table.qualified,
                    literal(migration.name()),
                    literal(migration.checksum()),
                    literal_opt(migration.down_sql()),
                    literal(message),
                    history::log_sql(table, version, Action::Fail, self.host, &duration_ms.to_string(), Some(message)),
                );
                if let Err(error) = client.batch_execute(&sql).await {
                    tracing::error!(version, %error, "could not record the migration as failed");
                }
                self.unflushed.store(true, Ordering::Relaxed);
                Err(Error::RecordRemoved {
                    version,
                    name: migration.name().to_owned(),
                })
            }
            Some(Closing::LockCheck) if division_by_zero => {
                let message = "released the migration lock";
                if let Err(error) = self
                    .mark_failed(client, table, "", version, message, message, duration_ms, true)
                    .await
                {
                    tracing::error!(version, %error, "could not record the migration as failed");
                }
                self.unflushed.store(true, Ordering::Relaxed);
                Err(Error::LockReleased {
                    version,
                    name: migration.name().to_owned(),
                })
            }
            _ => Err(Error::db(
                format!("migration {version} ran, but could not be recorded as applied (it is recorded as running; check, then run repair for version {version} (`Migrator::repair`))"),
                error,
            )),
        }
    }

    /// The batch that records a no-transaction migration that ran: the session reset first, so
    /// the migration's own settings (e.g. `default_transaction_read_only`, a tiny
    /// `statement_timeout`) cannot stop its recording (READ WRITE for the same reason behind a
    /// pooler, where there is no reset); then `running` becomes `applied` only if the row is
    /// still `running`, and, under the session lock, a check that the migration did not release
    /// it (`1 / count(*)` fails for each).
    fn closing_batch(
        &self,
        session: &Session<'_>,
        migration: &Migration,
        reset: &str,
        duration_ms: u64,
        durable: bool,
    ) -> Batch<Closing> {
        let table = session.table;
        let version = migration.version();
        let mut batch = Batch::new();
        batch.push(Closing::Reset, reset);
        batch.push(Closing::Begin, "BEGIN READ WRITE;\n");
        batch.push(
            Closing::Record,
            &format!(
                "WITH done AS (UPDATE {} SET state = 'applied', execution_time_ms = {duration_ms} \
                 WHERE version = {version} AND state = 'running' RETURNING 1) SELECT 1 / count(*) FROM done;\n{}",
                table.qualified,
                history::log_sql(table, version, Action::Apply, self.host, &duration_ms.to_string(), None),
            ),
        );
        if session.holds_lock {
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

    /// After a no-transaction script (an up, or a down) failed at `line`: ends any failed
    /// transaction, marks the migration `failed` with the error (after `reset`, so the script's
    /// session settings cannot break the record), logs it, and returns the error to report,
    /// naming INVALID indexes left behind. The log gets `duration_ms`; the history row too when
    /// `record_duration` (a down keeps the up's); `note` prefixes the stored error.
    #[allow(clippy::too_many_arguments)]
    pub(crate) async fn record_failure(
        &self,
        client: &Client,
        table: &Table,
        reset: &str,
        migration: &Migration,
        (line, error): (u32, tokio_postgres::Error),
        invalid_before: &[InvalidIndex],
        duration_ms: u64,
        record_duration: bool,
        note: &str,
    ) -> Error {
        let version = migration.version();
        rollback(client).await;
        let (invalid_indexes, indexes_in_progress) =
            left_behind(invalid_before, invalid_indexes(client).await);
        let message = describe(&error);
        let mut failed = failure(migration, Some(line), true, error);
        if let Error::Migration(failure) = &mut failed {
            failure.invalid_indexes = invalid_indexes;
            failure.indexes_in_progress = indexes_in_progress;
        }
        let stored = format!("{note}{message}");
        if let Err(record_error) = self
            .mark_failed(
                client,
                table,
                reset,
                version,
                &stored,
                &message,
                duration_ms,
                record_duration,
            )
            .await
        {
            tracing::error!(version, error = %record_error, "could not record the failure; the migration stays recorded as running");
            return failed.not_recorded();
        }
        self.unflushed.store(true, Ordering::Relaxed);
        failed
    }

    /// Marks a `running` migration `failed` with `stored` as its error, and logs `logged`.
    #[allow(clippy::too_many_arguments)]
    async fn mark_failed(
        &self,
        client: &Client,
        table: &Table,
        reset: &str,
        version: i64,
        stored: &str,
        logged: &str,
        duration_ms: u64,
        record_duration: bool,
    ) -> Result<(), tokio_postgres::Error> {
        let set_duration = if record_duration {
            format!(", execution_time_ms = {duration_ms}")
        } else {
            String::new()
        };
        let record = format!(
            "{reset}BEGIN READ WRITE;\nUPDATE {} SET state = 'failed'{set_duration}, error = {} WHERE version = {version};\n{}COMMIT;",
            table.qualified,
            literal(stored),
            history::log_sql(table, version, Action::Fail, self.host, &duration_ms.to_string(), Some(logged)),
        );
        client.batch_execute(&record).await
    }

    /// Behind a transaction pooler another starter may be running this no-transaction migration:
    /// wait for it to finish rather than running it twice or skipping ahead of it. `None` when
    /// it was applied.
    async fn wait_for_other(
        &self,
        client: &Client,
        table: &Table,
        migration: &Migration,
    ) -> Result<Option<Applied>, Error> {
        let version = migration.version();
        let started = Instant::now();
        let sql = format!(
            "SELECT state, error FROM {} WHERE version = {version}",
            table.qualified
        );
        loop {
            let messages = client
                .simple_query(&sql)
                .await
                .map_err(|e| Error::db("could not read the history table", e))?;
            let row = messages.iter().find_map(|message| match message {
                SimpleQueryMessage::Row(row) => {
                    Some((row.get(0)?.to_owned(), row.get(1).map(str::to_owned)))
                }
                _ => None,
            });
            match row {
                Some((state, _)) if state == "applied" => return Ok(None),
                Some((state, error)) if state == "failed" => {
                    return Err(Error::Failed {
                        version,
                        name: migration.name().to_owned(),
                        error,
                    })
                }
                _ if started.elapsed() >= self.config.lock_wait => {
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
}

/// What is pending, in order, and what is worth a warning.
struct Pending<'e> {
    migrations: Vec<&'e Migration>,
    warnings: Vec<String>,
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

/// Where a piece's text starts in its batch.
fn batch_start<T: Copy + PartialEq>(batch: &Batch<T>, tag: T) -> usize {
    batch
        .pieces()
        .iter()
        .find(|piece| piece.tag == tag)
        .map_or(0, |piece| piece.bytes.start)
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

/// The messages of a batch's first statement (its row and its completion) and the rest.
fn split_first_statement(
    messages: &[SimpleQueryMessage],
) -> (&[SimpleQueryMessage], &[SimpleQueryMessage]) {
    let split = messages
        .iter()
        .position(|message| matches!(message, SimpleQueryMessage::CommandComplete(_)))
        .map_or(messages.len(), |index| index + 1);
    messages.split_at(split)
}

fn first_completed(head: &[SimpleQueryMessage]) -> bool {
    matches!(head.last(), Some(SimpleQueryMessage::CommandComplete(_)))
}

/// The schema and server version from a read batch's first statement.
fn schema_and_version(head: &[SimpleQueryMessage]) -> Result<(String, i32), Error> {
    let row = head.iter().find_map(|message| match message {
        SimpleQueryMessage::Row(row) => Some((
            row.get(0).map(str::to_owned),
            row.get(1)
                .and_then(|version| version.parse().ok())
                .unwrap_or(0),
        )),
        _ => None,
    });
    match row {
        Some((Some(schema), version)) => Ok((schema, version)),
        // The first statement failed (the connection?): the caller reports the batch's error.
        None => Ok((String::new(), 0)),
        Some((None, _)) => Err(Error::NoCurrentSchema),
    }
}

/// No history table (yet), or a pybmpmon one not adopted yet: a fresh start, not an error.
fn is_missing_history(error: &tokio_postgres::Error) -> bool {
    matches!(
        error.code(),
        Some(&SqlState::UNDEFINED_TABLE)
            | Some(&SqlState::INVALID_SCHEMA_NAME)
            | Some(&SqlState::UNDEFINED_COLUMN)
    )
}

fn warn_all(warnings: &[String]) {
    for warning in warnings {
        tracing::warn!("{warning}");
    }
}

pub(crate) fn elapsed_ms(started: Instant) -> u64 {
    u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX)
}

fn retry_pause(base: Duration, attempt: u32) -> Duration {
    base.saturating_mul(1 << attempt.saturating_sub(1).min(16))
        .min(Duration::from_secs(30))
}

/// Ends a failed transaction; errors are ignored because the connection may already be gone, and
/// the caller reports the first error.
async fn rollback(client: &Client) {
    let _ = client.batch_execute("ROLLBACK").await;
}

/// A unique violation on the history table's primary key: another starter recorded it first.
fn is_history_conflict(error: &tokio_postgres::Error, table: &Table) -> bool {
    error.as_db_error().is_some_and(|db| {
        *db.code() == SqlState::UNIQUE_VIOLATION
            && db.schema() == Some(table.schema.as_str())
            && db.table() == Some(table.name.as_str())
    })
}

/// The migration dropped or changed the history table or its log, so its record failed:
/// a table or column gone, or (behind a pooler) the row inserted first gone (`1 / count(*)`).
fn is_history_tampered(error: &tokio_postgres::Error) -> bool {
    matches!(
        error.code(),
        Some(&SqlState::UNDEFINED_TABLE)
            | Some(&SqlState::UNDEFINED_COLUMN)
            | Some(&SqlState::INVALID_SCHEMA_NAME)
            | Some(&SqlState::DIVISION_BY_ZERO)
    )
}

/// Two starters created the history table (or its schema) at once: possible only where the
/// advisory lock does not lock.
fn is_creation_race(error: &tokio_postgres::Error) -> bool {
    matches!(
        error.code(),
        Some(&SqlState::DUPLICATE_TABLE)
            | Some(&SqlState::DUPLICATE_SCHEMA)
            | Some(&SqlState::UNIQUE_VIOLATION)
    )
}

/// The line of the migration file an error points at: PostgreSQL's position when it gives one
/// inside the migration's text, else the first line of the failing statement.
/// The byte offset in `batch_sql` of the position PostgreSQL reports for `error`, if any.
pub(crate) fn error_byte(error: &tokio_postgres::Error, batch_sql: &str) -> Option<usize> {
    match error.as_db_error().and_then(|db| db.position()) {
        Some(ErrorPosition::Original(position)) => {
            batch::char_position_to_byte(batch_sql, *position as usize)
        }
        _ => None,
    }
}

pub(crate) fn error_line(
    migration_sql: &str,
    error: &tokio_postgres::Error,
    prefix_bytes: usize,
    batch_sql: &str,
    failed_statement: Option<usize>,
) -> Option<u32> {
    if let Some(ErrorPosition::Original(position)) =
        error.as_db_error().and_then(|db| db.position())
    {
        if let Some(byte) = batch::char_position_to_byte(batch_sql, *position as usize) {
            if byte >= prefix_bytes && byte < prefix_bytes + migration_sql.len() {
                return Some(lexer::line_of(migration_sql, byte - prefix_bytes));
            }
        }
    }
    let index = failed_statement?;
    lexer::executed(migration_sql)
        .nth(index)
        .map(|statement| statement.line)
}

pub(crate) fn failure(
    migration: &Migration,
    line: Option<u32>,
    no_transaction: bool,
    source: tokio_postgres::Error,
) -> Error {
    Error::Migration(Box::new(MigrationFailure {
        version: migration.version(),
        name: migration.name().to_owned(),
        file: migration.up().path().to_owned(),
        line,
        code: source.code().map(|code| code.code().to_owned()),
        no_transaction,
        recorded_as_failed: no_transaction,
        invalid_indexes: Vec::new(),
        indexes_in_progress: Vec::new(),
        source,
    }))
}

/// `SQLSTATE 42P01: relation "x" does not exist`, for the history row's `error` column.
pub(crate) fn describe(error: &tokio_postgres::Error) -> String {
    match error.as_db_error() {
        Some(db) => format!("SQLSTATE {}: {}", db.code().code(), db.message()),
        None => error.to_string(),
    }
}

/// An INVALID index (e.g. left by a failed `CREATE INDEX CONCURRENTLY`), and the backend that
/// is building it right now, if one is: an index is INVALID while it is built concurrently.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct InvalidIndex {
    pub(crate) name: String,
    pub(crate) building: Option<i32>,
}

/// Every INVALID index in the database.
pub(crate) async fn invalid_indexes(client: &Client) -> Vec<InvalidIndex> {
    let sql = "SELECT i.indexrelid::regclass::text, p.pid FROM pg_catalog.pg_index i \
               LEFT JOIN pg_catalog.pg_stat_progress_create_index p \
               ON p.index_relid = i.indexrelid AND p.pid <> pg_catalog.pg_backend_pid() \
               WHERE NOT i.indisvalid ORDER BY 1";
    match client.simple_query(sql).await {
        Ok(messages) => messages
            .iter()
            .filter_map(|message| match message {
                SimpleQueryMessage::Row(row) => Some(InvalidIndex {
                    name: row.get(0)?.to_owned(),
                    building: row.get(1).and_then(|pid| pid.parse().ok()),
                }),
                _ => None,
            })
            .collect(),
        Err(_) => Vec::new(),
    }
}

/// Of the INVALID indexes now, those a failed migration left (not INVALID `before` it, and not
/// being built by another session right now), and those another session is building, which
/// may be in progress (described with its pid).
pub(crate) fn left_behind(
    before: &[InvalidIndex],
    now: Vec<InvalidIndex>,
) -> (Vec<String>, Vec<String>) {
    let mut ours = Vec::new();
    let mut in_progress = Vec::new();
    for index in now {
        if before.iter().any(|old| old.name == index.name) {
            continue;
        }
        match index.building {
            Some(pid) => in_progress.push(format!("{} (pid {pid})", index.name)),
            None => ours.push(index.name),
        }
    }
    (ours, in_progress)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn index(name: &str, building: Option<i32>) -> InvalidIndex {
        InvalidIndex {
            name: name.to_owned(),
            building,
        }
    }

    #[test]
    fn a_failed_migration_left_only_the_new_invalid_indexes_nobody_builds() {
        let before = [index("old_v", None), index("busy_v", Some(7))];
        let now = vec![
            index("busy_v", Some(7)),
            index("dup_v", None),
            index("late_v", Some(9)),
            index("old_v", None),
        ];
        assert_eq!(
            left_behind(&before, now),
            (vec!["dup_v".to_owned()], vec!["late_v (pid 9)".to_owned()])
        );
    }
}
