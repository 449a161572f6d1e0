//! Operations beyond applying: rollback, `to`, baseline and repair. Each runs under the same lock,
//! on the same kind of connection, and appends to the same audit log as a run.

use std::time::Instant;

use pgratchet_core::{directive, lexer};
use serde::Serialize;
use tokio_postgres::{Client, SimpleQueryMessage};

use crate::apply::{elapsed_ms, failure, invalid_indexes, run_statements, Engine, Session};
use crate::batch;
use crate::history::{self, Action, Table};
use crate::ident::{literal, literal_opt};
use crate::status::merge;
use crate::{Applied, Error, Migration, Report, Script, State, Status};

/// How far a rollback goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rollback {
    /// Roll back every applied migration above this version (`To(0)` keeps a version 0).
    To(i64),
    /// Roll back the newest `n` applied migrations.
    Steps(usize),
    /// Roll back every applied migration, version 0 included.
    All,
}

/// Which records a repair touches.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Repair {
    /// These versions only.
    Versions(Vec<i64>),
    /// Every `failed`, `running` and `modified` migration.
    All,
}

/// What a repair did.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Repaired {
    /// `failed` and `running` records removed (the migration is pending again), as they were.
    pub cleared: Vec<Status>,
    /// Applied migrations whose stored checksum was replaced by the file's, as they were.
    pub restamped: Vec<Status>,
    /// Versions asked for that needed no repair.
    pub untouched: Vec<i64>,
    /// INVALID indexes in the database, which a half-done no-transaction migration may have left.
    pub invalid_indexes: Vec<String>,
}

struct Recorded {
    version: i64,
    name: String,
    state: State,
    down_sql: Option<String>,
}

async fn read_recorded(client: &Client, table: &Table) -> Result<Vec<Recorded>, Error> {
    let sql = format!(
        "SELECT version, name, state, down_sql FROM {} ORDER BY version DESC",
        table.qualified
    );
    let messages = client
        .simple_query(&sql)
        .await
        .map_err(|e| Error::db("could not read the history table", e))?;
    Ok(messages
        .iter()
        .filter_map(|message| match message {
            SimpleQueryMessage::Row(row) => Some(Recorded {
                version: row.get(0)?.parse().ok()?,
                name: row.get(1)?.to_owned(),
                state: match row.get(2)? {
                    "applied" => State::Applied,
                    "running" => State::Running,
                    _ => State::Failed,
                },
                down_sql: row.get(3).map(str::to_owned),
            }),
            _ => None,
        })
        .collect())
}

impl Engine<'_> {
    /// Rolls back newest first, each down in its own transaction with the removal of its history
    /// row (or statement by statement for a no-transaction down).
    pub(crate) async fn rollback(
        &self,
        session: &Session<'_>,
        how: Rollback,
    ) -> Result<Report, Error> {
        let (client, table) = (session.client, session.table);
        self.ensure_table(client, table).await?;
        let recorded = read_recorded(client, table).await?;
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
        let chosen: Vec<&Recorded> = match how {
            Rollback::To(target) => recorded.iter().filter(|row| row.version > target).collect(),
            Rollback::Steps(steps) => recorded.iter().take(steps).collect(),
            Rollback::All => recorded.iter().collect(),
        };
        // Every down is found before anything is reverted, so a missing one changes nothing.
        let mut plan = Vec::with_capacity(chosen.len());
        for row in chosen {
            let script = match self.find(row.version) {
                Some(migration) => migration.down().cloned(),
                // A version this binary does not know: the down SQL stored with it.
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
            };
            match script {
                Some(script) => plan.push((row.version, row.name.clone(), script)),
                None => {
                    return Err(Error::Irreversible {
                        version: row.version,
                        name: row.name.clone(),
                    })
                }
            }
        }
        let mut report = Report::default();
        for (version, name, script) in plan {
            let migration = Migration::new(version, name, script.clone(), None);
            let duration_ms = if script.no_transaction() {
                self.revert_no_transaction(session, &migration).await?
            } else {
                self.revert_transactional(session, &migration).await?
            };
            tracing::info!(version, name = %migration.name(), duration_ms, "rolled back migration");
            report.applied.push(Applied {
                version,
                name: migration.name().to_owned(),
                duration_ms,
                no_transaction: script.no_transaction(),
            });
        }
        Ok(report)
    }

    /// `migration` here carries the down script as its "up", so failures report the down file.
    async fn revert_transactional(
        &self,
        session: &Session<'_>,
        migration: &Migration,
    ) -> Result<u64, Error> {
        let (client, table) = (session.client, session.table);
        let version = migration.version();
        let mut prefix = String::from("BEGIN;\n");
        let mut prefix_statements = 1;
        if let Some(timeout) = self.config.lock_timeout {
            prefix.push_str(&format!(
                "SET LOCAL lock_timeout = {};\n",
                timeout.as_millis()
            ));
            prefix_statements += 1;
        }
        let started = Instant::now();
        let elapsed = "(extract(epoch FROM clock_timestamp() - now()) * 1000)::int";
        // As after an up: the down's `SET ROLE` or timeouts must not break the bookkeeping.
        let restore = session
            .setup
            .restore_in_transaction_sql(&self.timeouts_sql());
        let restore_statements = lexer::executed(&restore).count();
        let sql = format!(
            "{prefix}{}\n;\n{restore}WITH d AS (DELETE FROM {t} WHERE version = {version} RETURNING 1) SELECT 1 / count(*) FROM d;\n{log}COMMIT;\n{reset}",
            migration.up_sql(),
            t = table.qualified,
            log = history::log_sql(table, version, Action::Rollback, self.host, elapsed, None),
            reset = session.setup.reset_sql(),
        );
        let outcome = batch::run(client, &sql).await;
        let completed = outcome.completed();
        if let Some(error) = outcome.error {
            let _ = client.batch_execute("ROLLBACK").await;
            let statements = lexer::executed(migration.up_sql()).count();
            let failed = completed.saturating_sub(prefix_statements);
            let check = statements + restore_statements;
            // A syntax error completes nothing (the batch is parsed whole), so it is never ours.
            let parsed = completed >= prefix_statements;
            if parsed && (failed == check || failed == check + 1) {
                return Err(Error::HistoryTampered {
                    version,
                    name: migration.name().to_owned(),
                });
            }
            let line = crate::apply::error_line(
                migration.up_sql(),
                &error,
                prefix.len(),
                &sql,
                (parsed && failed < statements).then_some(failed),
            );
            return Err(failure(migration, line, false, error));
        }
        Ok(elapsed_ms(started))
    }

    async fn revert_no_transaction(
        &self,
        session: &Session<'_>,
        migration: &Migration,
    ) -> Result<u64, Error> {
        let (client, table) = (session.client, session.table);
        let version = migration.version();
        let mark = format!(
            "UPDATE {} SET state = 'running', error = NULL WHERE version = {version}",
            table.qualified
        );
        client
            .batch_execute(&mark)
            .await
            .map_err(|e| Error::db(format!("could not mark migration {version} as running"), e))?;
        let invalid_before = invalid_indexes(client).await;
        let started = Instant::now();
        // A down runs with the session's own timeouts (none of the runner's are set here).
        if let Err(failed) = run_statements(client, migration.up_sql(), None).await {
            let reset = session.setup.reset_sql();
            let duration = elapsed_ms(started);
            return Err(self
                .record_failure(
                    client,
                    table,
                    &reset,
                    migration,
                    failed,
                    &invalid_before,
                    duration,
                    false,
                    "rollback failed: ",
                )
                .await);
        }
        let duration = elapsed_ms(started);
        let done = format!(
            "{}BEGIN READ WRITE;\nDELETE FROM {} WHERE version = {version};\n{}COMMIT;",
            session.setup.reset_sql(),
            table.qualified,
            history::log_sql(
                table,
                version,
                Action::Rollback,
                self.host,
                &duration.to_string(),
                None
            ),
        );
        client.batch_execute(&done).await.map_err(|e| {
            Error::db(
                format!("migration {version} was rolled back, but its history row could not be removed (it is recorded as running; run repair for version {version} (`Migrator::repair`))"),
                e,
            )
        })?;
        Ok(duration)
    }

    /// Records migrations up to `version` as applied without running them.
    pub(crate) async fn baseline(
        &self,
        session: &Session<'_>,
        version: i64,
    ) -> Result<Vec<i64>, Error> {
        let (client, table) = (session.client, session.table);
        self.ensure_table(client, table).await?;
        let rows = history::read_rows(client, table).await?;
        if !rows.is_empty() {
            return Err(Error::BaselineOnHistory {
                recorded: rows.len(),
            });
        }
        let chosen: Vec<&Migration> = self
            .migrations()
            .iter()
            .filter(|migration| migration.version() <= version)
            .collect();
        let mut sql = String::from("BEGIN;\n");
        for migration in &chosen {
            sql.push_str(&self.insert_sql(table, migration, "applied"));
            sql.push_str(&history::log_sql(
                table,
                migration.version(),
                Action::Baseline,
                self.host,
                "0",
                None,
            ));
        }
        sql.push_str("COMMIT;");
        client.batch_execute(&sql).await.map_err(|e| {
            Error::db(
                format!("could not record the baseline at version {version}"),
                e,
            )
        })?;
        Ok(chosen.iter().map(|migration| migration.version()).collect())
    }

    /// Clears `failed`/`running` records and re-stamps checksums of edited applied files.
    pub(crate) async fn repair(
        &self,
        session: &Session<'_>,
        scope: &Repair,
    ) -> Result<Repaired, Error> {
        let (client, table) = (session.client, session.table);
        self.ensure_table(client, table).await?;
        let rows = history::read_rows(client, table).await?;
        let statuses = merge(self.migrations(), &rows);
        let mut repaired = Repaired {
            invalid_indexes: invalid_indexes(client)
                .await
                .into_iter()
                .map(|index| match index.building {
                    Some(pid) => format!("{} (being built by pid {pid})", index.name),
                    None => index.name,
                })
                .collect(),
            ..Repaired::default()
        };
        let wanted = |version: i64| match scope {
            Repair::All => true,
            Repair::Versions(versions) => versions.contains(&version),
        };
        let mut sql = String::from("BEGIN;\n");
        for status in statuses.iter().filter(|status| wanted(status.version)) {
            let version = status.version;
            match status.state {
                State::Failed | State::Running => {
                    sql.push_str(&format!(
                        "DELETE FROM {} WHERE version = {version};\n",
                        table.qualified
                    ));
                    let note = format!(
                        "cleared a {} record{}",
                        status.state,
                        status
                            .error
                            .as_ref()
                            .map(|error| format!(" ({error})"))
                            .unwrap_or_default()
                    );
                    sql.push_str(&history::log_sql(
                        table,
                        version,
                        Action::Repair,
                        self.host,
                        "0",
                        Some(&note),
                    ));
                    repaired.cleared.push(status.clone());
                }
                State::Modified => {
                    let migration = self.find(version);
                    sql.push_str(&format!(
                        "UPDATE {} SET checksum = {}, down_sql = {} WHERE version = {version};\n",
                        table.qualified,
                        literal(status.checksum.as_deref().unwrap_or_default()),
                        literal_opt(migration.and_then(Migration::down_sql)),
                    ));
                    let note = format!(
                        "re-stamped checksum {} -> {}",
                        status.applied_checksum.as_deref().unwrap_or_default(),
                        status.checksum.as_deref().unwrap_or_default()
                    );
                    sql.push_str(&history::log_sql(
                        table,
                        version,
                        Action::Repair,
                        self.host,
                        "0",
                        Some(&note),
                    ));
                    repaired.restamped.push(status.clone());
                }
                _ if matches!(scope, Repair::Versions(_)) => repaired.untouched.push(version),
                _ => {}
            }
        }
        if let Repair::Versions(versions) = scope {
            for version in versions {
                if !statuses.iter().any(|status| status.version == *version) {
                    repaired.untouched.push(*version);
                }
            }
        }
        sql.push_str("COMMIT;");
        client
            .batch_execute(&sql)
            .await
            .map_err(|e| Error::db("could not repair the history table", e))?;
        for status in &repaired.cleared {
            tracing::warn!(version = status.version, name = %status.name, state = %status.state, "repair cleared the record; the migration is pending again");
        }
        Ok(repaired)
    }
}
