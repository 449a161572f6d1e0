//! The apply protocol: fast path, lock, table, and each migration in one round trip.

use std::time::{Duration, Instant};

use pgratchet_core::lexer;
use tokio_postgres::error::{ErrorPosition, SqlState};
use tokio_postgres::{Client, SimpleQueryMessage};

use crate::batch;
use crate::connection::Connection;
use crate::error::MigrationFailure;
use crate::fingerprint;
use crate::history::{self, Action, Row, Shape, Table};
use crate::ident::{literal, literal_opt, validate};
use crate::lock;
use crate::status::{judge, merge};
use crate::{Applied, Error, HookContext, HookPoint, Migration, Migrator, Planned, Report, Status};

/// PostgreSQL 14 added `client_connection_check_interval`.
const CONNECTION_CHECK_SINCE: i32 = 140_000;

pub(crate) struct Engine<'e> {
    pub(crate) config: &'e Migrator<'e>,
    pub(crate) host: &'static str,
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
    server_version: i32,
    holds_lock: bool,
}

impl Locked {
    pub(crate) fn session(&self) -> Session<'_> {
        Session {
            client: &self.connection,
            table: &self.table,
            server_version: self.server_version,
        }
    }

    /// Releases the lock after a successful section; after a failed one the connection is only
    /// dropped (closed), which releases it too.
    pub(crate) async fn release<T>(self, result: Result<T, Error>) -> Result<T, Error> {
        if self.holds_lock && result.is_ok() {
            lock::release(&self.connection, &self.table).await?;
        }
        result
    }
}

/// What a locked section works with: the runner's own connection, the resolved table and the
/// server version.
pub(crate) struct Session<'s> {
    pub(crate) client: &'s Client,
    pub(crate) table: &'s Table,
    pub(crate) server_version: i32,
}

/// Where one migration of a transactional batch sits in it, to trace an error back to it.
struct Segment<'m> {
    migration: &'m Migration,
    /// Index (in statements completed) of its first statement.
    segment_start: usize,
    /// Index of its history INSERT, when that goes first (behind a transaction pooler).
    insert_statement: Option<usize>,
    /// Byte offset of its SQL in the batch.
    sql_start: usize,
    /// Index of its first statement.
    first_statement: usize,
    /// How many statements it has.
    statements: usize,
    /// Index, counted from its first statement, of the history record, whose row carries the
    /// duration.
    record_statement: usize,
    /// How many statements the history record and the log entry take.
    record_statements: usize,
}

pub(crate) enum Outcome {
    Applied(Applied),
    /// Another starter applied it first (behind a transaction pooler).
    AppliedByOther,
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
        Ok(Some(locked))
    }

    async fn prepare(&self, connection: Connection, first: &FirstRead) -> Result<Locked, Error> {
        let connection = connection.take();
        self.configure_session(&connection, first.server_version)
            .await?;
        Ok(Locked {
            connection,
            table: Table::new(&first.schema, &self.config.table),
            server_version: first.server_version,
            holds_lock: !self.config.transaction_pooler,
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

    /// Undoes, inside a migration's transaction, the session settings its SQL may have changed
    /// that would make the runner's own history check and log INSERT fail (`SET ROLE` to a role
    /// that may not write the history table is a common pattern; a tiny `statement_timeout`),
    /// or reach the next migration of a grouped run (`search_path` too). Not `RESET ALL`: that
    /// would also drop the transaction-local `pgratchet.started` of a grouped run. The runner's
    /// own timeouts are set again; the rest goes back to the session's defaults.
    pub(crate) fn restore_after_migration_sql(&self) -> String {
        let setting = |name: &str, value: Option<Duration>| match value {
            Some(value) => format!("SET LOCAL {name} = {};\n", value.as_millis()),
            None => format!("SET LOCAL {name} TO DEFAULT;\n"),
        };
        let mut sql = String::from("RESET ROLE;\nSET LOCAL search_path TO DEFAULT;\n");
        sql.push_str(&setting("statement_timeout", self.config.statement_timeout));
        sql.push_str(&setting("lock_timeout", self.config.lock_timeout));
        sql
    }

    pub(crate) fn session_reset_sql(&self, server_version: i32) -> String {
        // RESET ALL would also undo our own setting, so it is set again right after. It leaves
        // the role alone, and a migration's `SET ROLE` must not outlive it either.
        let mut sql = String::from("RESET ALL;\nRESET ROLE;\n");
        sql.push_str(&self.check_interval_sql(server_version));
        sql
    }

    fn check_interval_sql(&self, server_version: i32) -> String {
        if server_version >= CONNECTION_CHECK_SINCE && !self.config.transaction_pooler {
            format!(
                "SET client_connection_check_interval = {};\n",
                self.config.connection_check_interval.as_millis()
            )
        } else {
            String::new()
        }
    }

    async fn configure_session(&self, client: &Client, server_version: i32) -> Result<(), Error> {
        let sql = self.check_interval_sql(server_version);
        if !sql.is_empty() {
            client
                .batch_execute(&sql)
                .await
                .map_err(|e| Error::db("could not configure the migration session", e))?;
        }
        Ok(())
    }

    async fn apply_all(&self, session: &Session<'_>) -> Result<Report, Error> {
        let (client, table, server_version) =
            (session.client, session.table, session.server_version);
        let version_is_integer = self.ensure_table(client, table).await?;
        let rows = history::read_rows(client, table).await?;
        let statuses = merge(self.migrations(), &rows);
        let verdict = judge(
            &statuses,
            self.config.policy,
            self.config.target,
            self.config.transaction_pooler,
        )?;
        warn_all(&verdict.warnings);
        let mut report = Report {
            warnings: verdict.warnings,
            ..Report::default()
        };
        let pending: Vec<&Migration> = verdict
            .pending
            .iter()
            .filter_map(|version| self.find(*version))
            .collect();
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
            if let Some(migration) = pending.iter().find(|migration| migration.no_transaction()) {
                return Err(Error::GroupedNoTransaction {
                    version: migration.version(),
                    name: migration.name().to_owned(),
                });
            }
            let outcomes = self
                .apply_transactional(client, table, &pending, server_version, true)
                .await?;
            for (migration, outcome) in pending.iter().zip(outcomes) {
                self.record(&mut report, migration, outcome);
            }
        } else {
            for (index, migration) in pending.iter().enumerate() {
                let last = index + 1 == pending.len();
                let each = |point| HookContext {
                    point,
                    pending: versions.clone(),
                    migration: Some((migration.version(), migration.name().to_owned())),
                };
                self.config.hooks.call(each(HookPoint::BeforeEach)).await?;
                let outcomes = if migration.no_transaction() {
                    vec![
                        self.apply_no_transaction(client, table, migration, server_version)
                            .await?,
                    ]
                } else {
                    self.apply_transactional(client, table, &[*migration], server_version, last)
                        .await?
                };
                for outcome in outcomes {
                    self.record(&mut report, migration, outcome);
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

    fn record(&self, report: &mut Report, migration: &Migration, outcome: Outcome) {
        match outcome {
            Outcome::Applied(applied) => {
                tracing::info!(
                    version = applied.version,
                    name = %applied.name,
                    duration_ms = applied.duration_ms,
                    "applied migration"
                );
                report.applied.push(applied);
            }
            Outcome::AppliedByOther => report.applied_by_others.push(migration.version()),
        }
    }

    /// Creates or adopts the history table (and its log) in one transaction under a transaction
    /// advisory lock, so starters behind a transaction pooler cannot race on `CREATE TABLE` either.
    /// Returns whether `version` is an INTEGER (an adopted pybmpmon table).
    pub(crate) async fn ensure_table(&self, client: &Client, table: &Table) -> Result<bool, Error> {
        let begin = format!(
            "BEGIN;\nSELECT pg_advisory_xact_lock({});",
            lock::key(table)
        );
        client
            .batch_execute(&begin)
            .await
            .map_err(|e| Error::db("could not lock the history table for creation", e))?;
        let result = async {
            let shape = history::inspect(client, table).await?;
            let ddl = history::ensure_sql(table, &shape, self.config.schema.is_some());
            client.batch_execute(&format!("{ddl}COMMIT;")).await.map_err(|e| {
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
        .await;
        if result.is_err() {
            rollback(client).await;
        }
        result
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

    /// Applies `group` (one migration, or all of a grouped run) in one transaction and one round
    /// trip: `BEGIN`, then per migration its SQL, its history row with the execution time and its
    /// log entry (behind a pooler the row goes before the SQL and is checked after it), then
    /// `COMMIT`.
    ///
    /// Unless `durable`, the commit does not wait for its WAL to reach disk. A run makes only its
    /// last commit `durable`, and that flush covers the WAL of every commit before it: when the
    /// run returns, all of it is on disk, and a run of 1,000 migrations waits for one flush, not
    /// 1,000. A server crash before that flush loses the latest migrations together with their
    /// history rows (each is still one transaction), and the next run applies them again. Other
    /// starters cannot act on them early: they see the whole set applied only once the last
    /// commit, flushed before it becomes visible, is.
    async fn apply_transactional(
        &self,
        client: &Client,
        table: &Table,
        group: &[&Migration],
        server_version: i32,
        durable: bool,
    ) -> Result<Vec<Outcome>, Error> {
        let grouped = group.len() > 1;
        let mut sql = String::from("BEGIN;\n");
        let mut statements = 1;
        if !durable {
            sql.push_str("SET LOCAL synchronous_commit = off;\n");
            statements += 1;
        }
        if self.config.transaction_pooler && server_version >= CONNECTION_CHECK_SINCE {
            // Behind a pooler there is no session to set the check interval on (see
            // `check_interval_sql`), but the transaction has one: without it, a starter killed
            // mid-migration leaves its backend running the statement to its end (PgBouncer
            // closes the server connection, the backend does not notice), keeping the history
            // row locked and every other starter, with a pooled server connection each, waiting.
            sql.push_str(&format!(
                "SET LOCAL client_connection_check_interval = {};\n",
                self.config.connection_check_interval.as_millis()
            ));
            statements += 1;
        }
        if let Some(timeout) = self.config.lock_timeout {
            sql.push_str(&format!(
                "SET LOCAL lock_timeout = {};\n",
                timeout.as_millis()
            ));
            statements += 1;
        }
        if let Some(timeout) = self.config.statement_timeout {
            sql.push_str(&format!(
                "SET LOCAL statement_timeout = {};\n",
                timeout.as_millis()
            ));
            statements += 1;
        }
        // In a grouped run now() is the start of the whole group, so each migration notes its own
        // start in a transaction-local setting.
        let since = if grouped {
            "current_setting('pgratchet.started')::timestamptz"
        } else {
            "now()"
        };
        let elapsed = format!("(extract(epoch FROM clock_timestamp() - {since}) * 1000)::int");
        let mut segments = Vec::with_capacity(group.len());
        let mut resets_session = false;
        for migration in group {
            let version = migration.version();
            if grouped {
                sql.push_str(
                    "SELECT set_config('pgratchet.started', clock_timestamp()::text, true);\n",
                );
                statements += 1;
            }
            // Behind a transaction pooler the history row goes first: a second applier blocks on
            // its key and then fails with a unique violation instead of applying it again. Under
            // the session lock nobody else applies, so it goes last, like any runner's: no UPDATE.
            let insert_first = self.config.transaction_pooler;
            let segment_start = statements;
            if insert_first {
                sql.push_str(&self.insert_sql(table, migration, "applied"));
                statements += 1;
            }
            let first_statement = statements;
            let sql_start = sql.len();
            sql.push_str(migration.up_sql());
            let migration_statements = lexer::executed(migration.up_sql()).count();
            // The newline ends a trailing `--` comment; the `;` a last statement without one.
            sql.push_str("\n;\n");
            let changes_session = may_change_session(migration.up_sql());
            resets_session |= changes_session;
            let restore = if changes_session {
                self.restore_after_migration_sql()
            } else {
                String::new()
            };
            sql.push_str(&restore);
            let restore_statements = lexer::executed(&restore).count();
            let host = literal(self.host);
            let log = &table.log;
            // Behind a pooler one statement checks that the row inserted first survived the
            // migration (`1 / count(*)` fails if not), stores the duration and appends the log
            // entry. Under the session lock the row goes in last, so two plain INSERTs do it: the
            // server runs them faster than a data-modifying WITH. Either fails if the migration
            // dropped the history or its log. The duration is computed once, so both rows say
            // the same.
            let (record, record_statements) = if insert_first {
                (
                    format!(
                        "WITH h AS (UPDATE {} SET execution_time_ms = {elapsed} WHERE version = {version} RETURNING execution_time_ms), \
                         l AS (INSERT INTO {log} (version, action, host, duration_ms) SELECT {version}, 'apply', {host}, execution_time_ms FROM h) \
                         SELECT max(execution_time_ms), 1 / count(*) FROM h;\n",
                        table.qualified
                    ),
                    1,
                )
            } else {
                (
                    format!(
                        "INSERT INTO {} (version, name, checksum, state, applied_by, down_sql, execution_time_ms) \
                         VALUES ({version}, {}, {}, 'applied', current_user, {}, set_config('pgratchet.elapsed_ms', {elapsed}::text, true)::int) \
                         RETURNING execution_time_ms;\n\
                         INSERT INTO {log} (version, action, host, duration_ms) \
                         VALUES ({version}, 'apply', {host}, current_setting('pgratchet.elapsed_ms')::int);\n",
                        table.qualified,
                        literal(migration.name()),
                        literal(migration.checksum()),
                        literal_opt(migration.down_sql()),
                    ),
                    2,
                )
            };
            sql.push_str(&record);
            segments.push(Segment {
                migration,
                segment_start,
                insert_statement: insert_first.then_some(segment_start),
                sql_start,
                first_statement,
                statements: migration_statements,
                record_statement: migration_statements + restore_statements,
                record_statements,
            });
            statements += migration_statements + restore_statements + record_statements;
        }
        sql.push_str("COMMIT;\n");
        // A migration that cannot have changed session settings needs no reset after it.
        if resets_session {
            sql.push_str(&self.session_reset_sql(server_version));
        }
        let mut attempt = 0;
        loop {
            let outcome = batch::run(client, &sql).await;
            let completed = outcome.completed();
            let Some(error) = outcome.error else {
                // The check's row tells each migration's duration; rows of the migrations' own
                // statements are told apart by their position in the batch.
                let mut statement = 0;
                let mut durations = Vec::with_capacity(group.len());
                for message in &outcome.messages {
                    match message {
                        SimpleQueryMessage::CommandComplete(_) => statement += 1,
                        SimpleQueryMessage::Row(row)
                            if segments.iter().any(|segment| {
                                segment.first_statement + segment.record_statement == statement
                            }) =>
                        {
                            durations.push(
                                row.get(0)
                                    .and_then(|ms| ms.parse::<u64>().ok())
                                    .unwrap_or(0),
                            );
                        }
                        _ => {}
                    }
                }
                return Ok(group
                    .iter()
                    .zip(durations)
                    .map(|(migration, duration_ms)| {
                        Outcome::Applied(Applied {
                            version: migration.version(),
                            name: migration.name().to_owned(),
                            duration_ms,
                            no_transaction: false,
                        })
                    })
                    .collect());
            };
            rollback(client).await;
            // PostgreSQL parses the whole batch before running any of it, so a syntax error
            // completes nothing: its position, not the count, says whose SQL it is in.
            if let Some(segment) = segments.iter().find(|segment| {
                error_byte(&error, &sql).is_some_and(|byte| {
                    byte >= segment.sql_start
                        && byte < segment.sql_start + segment.migration.up_sql().len()
                })
            }) {
                if completed < segment.first_statement {
                    let migration = segment.migration;
                    let line =
                        error_line(migration.up_sql(), &error, segment.sql_start, &sql, None);
                    return Err(failure(migration, line, false, Vec::new(), error));
                }
            }
            let Some(segment) = segments
                .iter()
                .rev()
                .find(|segment| completed >= segment.segment_start)
            else {
                return Err(Error::db(
                    "could not start the migration transaction",
                    error,
                ));
            };
            let migration = segment.migration;
            let version = migration.version();
            if Some(completed) == segment.insert_statement {
                if is_history_conflict(&error, table) {
                    return Ok(group.iter().map(|_| Outcome::AppliedByOther).collect());
                }
                return Err(Error::db(
                    format!("could not record migration {version} in the history table"),
                    error,
                ));
            }
            let failed_statement = completed - segment.first_statement;
            // Right after the migration come the history record and the log INSERT: if they
            // failed, the migration removed or changed the history or its log, unless another
            // starter (one behind a pooler, say) recorded the migration first.
            let record =
                segment.record_statement..segment.record_statement + segment.record_statements;
            if record.contains(&failed_statement) {
                if segment.insert_statement.is_none() && is_history_conflict(&error, table) {
                    return Ok(group.iter().map(|_| Outcome::AppliedByOther).collect());
                }
                return Err(Error::HistoryTampered {
                    version,
                    name: migration.name().to_owned(),
                });
            }
            if error.code() == Some(&SqlState::LOCK_NOT_AVAILABLE)
                && self.config.lock_timeout.is_some()
                && attempt < self.config.lock_retries
            {
                attempt += 1;
                let pause = retry_pause(self.config.lock_retry_delay, attempt);
                tracing::warn!(
                    version,
                    name = %migration.name(),
                    attempt,
                    retries = self.config.lock_retries,
                    pause_ms = pause.as_millis() as u64,
                    "migration hit lock_timeout; rolled back, retrying"
                );
                tokio::time::sleep(pause).await;
                continue;
            }
            let line = error_line(
                migration.up_sql(),
                &error,
                segment.sql_start,
                &sql,
                (failed_statement < segment.statements).then_some(failed_statement),
            );
            return Err(failure(migration, line, false, Vec::new(), error));
        }
    }

    async fn apply_no_transaction(
        &self,
        client: &Client,
        table: &Table,
        migration: &Migration,
        server_version: i32,
    ) -> Result<Outcome, Error> {
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
        let started = Instant::now();
        let sql = migration.up_sql();
        let failed = run_statements(client, sql).await.err();
        let duration_ms = elapsed_ms(started);
        let reset = self.session_reset_sql(server_version);
        let reset = if pooler { String::new() } else { reset };
        match failed {
            None => {
                // The reset comes first, so the migration's own session settings (e.g.
                // `default_transaction_read_only`, a tiny `statement_timeout`) cannot stop its
                // recording; READ WRITE for the same reason behind a pooler, where there is none.
                let done = format!(
                    "{reset}BEGIN READ WRITE;\nUPDATE {} SET state = 'applied', execution_time_ms = {duration_ms} WHERE version = {version};\n{}COMMIT;",
                    table.qualified,
                    history::log_sql(table, version, Action::Apply, self.host, &duration_ms.to_string(), None),
                );
                client.batch_execute(&done).await.map_err(|e| {
                    Error::db(
                        format!("migration {version} ran, but could not be recorded as applied (it is recorded as running; check, then run repair for version {version} (`Migrator::repair`))"),
                        e,
                    )
                })?;
                Ok(Outcome::Applied(Applied {
                    version,
                    name: migration.name().to_owned(),
                    duration_ms,
                    no_transaction: true,
                }))
            }
            Some((line, error)) => Err(self
                .record_failure(
                    client,
                    table,
                    &reset,
                    migration,
                    (line, error),
                    duration_ms,
                    true,
                    "",
                )
                .await),
        }
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
        duration_ms: u64,
        record_duration: bool,
        note: &str,
    ) -> Error {
        let version = migration.version();
        rollback(client).await;
        let invalid_indexes = invalid_indexes(client).await;
        let message = describe(&error);
        let set_duration = if record_duration {
            format!(", execution_time_ms = {duration_ms}")
        } else {
            String::new()
        };
        let record = format!(
            "{reset}BEGIN READ WRITE;\nUPDATE {} SET state = 'failed'{set_duration}, error = {} WHERE version = {version};\n{}COMMIT;",
            table.qualified,
            literal(&format!("{note}{message}")),
            history::log_sql(table, version, Action::Fail, self.host, &duration_ms.to_string(), Some(&message)),
        );
        let failed = failure(migration, Some(line), true, invalid_indexes, error);
        if let Err(record_error) = client.batch_execute(&record).await {
            tracing::error!(version, error = %record_error, "could not record the failure; the migration stays recorded as running");
            return failed.not_recorded();
        }
        failed
    }

    /// Behind a transaction pooler another starter may be running this no-transaction migration:
    /// wait for it to finish rather than running it twice or skipping ahead of it.
    async fn wait_for_other(
        &self,
        client: &Client,
        table: &Table,
        migration: &Migration,
    ) -> Result<Outcome, Error> {
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
                Some((state, _)) if state == "applied" => return Ok(Outcome::AppliedByOther),
                Some((state, error)) if state == "failed" => {
                    return Err(Error::Failed {
                        version,
                        name: migration.name().to_owned(),
                        error,
                    })
                }
                _ if started.elapsed() >= self.config.lock_wait => {
                    return Err(Error::Running {
                        version,
                        name: migration.name().to_owned(),
                    })
                }
                _ => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    }
}

/// Runs a no-transaction script statement by statement (each its own implicit transaction, as
/// `CREATE INDEX CONCURRENTLY` needs); on failure, the file's line of the error and the error.
pub(crate) async fn run_statements(
    client: &Client,
    sql: &str,
) -> Result<(), (u32, tokio_postgres::Error)> {
    for statement in lexer::executed(sql) {
        if let Err(error) = client.simple_query(statement.text).await {
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

/// Whether `sql` may change session settings that the runner's own statements depend on or
/// that would reach the next migration (`SET`, `RESET`, `set_config`, a role, a search_path, a
/// timeout, also inside dynamic SQL). A false positive only costs a few statements.
pub(crate) fn may_change_session(sql: &str) -> bool {
    let lower = sql.to_ascii_lowercase();
    [
        "set_config",
        "set role",
        "set session",
        "set local",
        "search_path",
        "_timeout",
        "read_only",
    ]
    .iter()
    .any(|word| lower.contains(word))
        || lexer::split(sql).iter().any(|statement| {
            matches!(
                statement.keywords(1).first().map(String::as_str),
                Some("SET" | "RESET")
            )
        })
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
    invalid_indexes: Vec<String>,
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
        invalid_indexes,
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

/// Indexes left INVALID (e.g. by a failed `CREATE INDEX CONCURRENTLY`), to name in the error.
pub(crate) async fn invalid_indexes(client: &Client) -> Vec<String> {
    let sql = "SELECT indexrelid::regclass::text FROM pg_catalog.pg_index WHERE NOT indisvalid ORDER BY 1";
    match client.simple_query(sql).await {
        Ok(messages) => messages
            .iter()
            .filter_map(|message| match message {
                SimpleQueryMessage::Row(row) => row.get(0).map(str::to_owned),
                _ => None,
            })
            .collect(),
        Err(_) => Vec::new(),
    }
}
