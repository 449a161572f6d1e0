//! Every statement that writes the history table or its log: one column list, one elapsed-time
//! expression, and the checks that make a write fail rather than miss (`1 / count(*)` divides by
//! zero when the row it needs is not there).

use crate::events::Action;
use crate::ident::{literal, literal_opt};
use crate::table::Table;
use crate::Migration;

/// The columns every row starts with, in [`values`]'s order.
const COLUMNS: &str = "version, name, checksum, state, applied_by, down_sql";

/// The stored state of a row the runner writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Written {
    Applied,
    Running,
    Failed,
}

impl Written {
    fn as_str(self) -> &'static str {
        match self {
            Written::Applied => "applied",
            Written::Running => "running",
            Written::Failed => "failed",
        }
    }
}

/// [`COLUMNS`]' values for `migration` in `state`, by the current role.
fn values(migration: &Migration, state: Written) -> String {
    format!(
        "{}, {}, {}, '{}', current_user, {}",
        migration.version(),
        literal(migration.name()),
        literal(migration.checksum()),
        state.as_str(),
        literal_opt(migration.down_sql()),
    )
}

/// Where a migration's execution time starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Since {
    /// Its transaction's start (`now()`).
    TransactionStart,
    /// Its own start inside a grouped run's transaction, noted by [`Since::note`].
    Noted,
}

impl Since {
    /// The statement that notes a migration's start in a grouped run.
    pub(crate) const NOTE: &'static str =
        "SELECT set_config('pgratchet.started', clock_timestamp()::text, true);\n";

    /// The milliseconds since then, as an `int` expression.
    fn elapsed(self) -> String {
        let since = match self {
            Since::TransactionStart => "now()",
            Since::Noted => "current_setting('pgratchet.started')::timestamptz",
        };
        format!("(extract(epoch FROM clock_timestamp() - {since}) * 1000)::int")
    }
}

/// A row for `migration` in `state`.
pub(crate) fn insert(table: &Table, migration: &Migration, state: Written) -> String {
    format!(
        "INSERT INTO {} ({COLUMNS}) VALUES ({});\n",
        table.qualified,
        values(migration, state)
    )
}

/// An entry of the log; `duration_ms` is SQL (it may be computed by the server).
pub(crate) fn log(
    table: &Table,
    version: i64,
    action: Action,
    host: &str,
    duration_ms: &str,
    error: Option<&str>,
) -> String {
    format!(
        "INSERT INTO {} (version, action, host, duration_ms, error) VALUES ({version}, '{action}', {}, {duration_ms}, {});\n",
        table.log,
        literal(host),
        literal_opt(error),
    )
}

/// After a transactional migration's SQL, under the session lock: its row, with the execution
/// time, then its log entry. Two plain INSERTs (the server runs them faster than a data-modifying
/// WITH); the duration is computed once, so both say the same. Either fails if the migration
/// dropped its table. The first statement returns the duration.
pub(crate) fn record(table: &Table, migration: &Migration, host: &str, since: Since) -> String {
    format!(
        "INSERT INTO {} ({COLUMNS}, execution_time_ms) VALUES ({}, \
         set_config('pgratchet.elapsed_ms', {}::text, true)::int) RETURNING execution_time_ms;\n{}",
        table.qualified,
        values(migration, Written::Applied),
        since.elapsed(),
        log(
            table,
            migration.version(),
            Action::Apply,
            host,
            "current_setting('pgratchet.elapsed_ms')::int",
            None
        ),
    )
}

/// After a transactional migration's SQL, behind a pooler, where its row went in first: one
/// statement checks that the row survived the migration, stores the execution time and appends
/// the log entry; it returns the duration.
pub(crate) fn record_inserted(table: &Table, version: i64, host: &str, since: Since) -> String {
    format!(
        "WITH h AS (UPDATE {} SET execution_time_ms = {} WHERE version = {version} RETURNING execution_time_ms), \
         l AS (INSERT INTO {} (version, action, host, duration_ms) SELECT {version}, 'apply', {}, execution_time_ms FROM h) \
         SELECT max(execution_time_ms), 1 / count(*) FROM h;\n",
        table.qualified,
        since.elapsed(),
        table.log,
        literal(host),
    )
}

/// A no-transaction migration ran to its end: `running` becomes `applied`, only if the row is
/// still `running` (a repair may have removed it meanwhile), and the log entry.
pub(crate) fn applied_if_running(
    table: &Table,
    version: i64,
    host: &str,
    duration_ms: u64,
) -> String {
    format!(
        "WITH done AS (UPDATE {} SET state = 'applied', execution_time_ms = {duration_ms} \
         WHERE version = {version} AND state = 'running' RETURNING 1) SELECT 1 / count(*) FROM done;\n{}",
        table.qualified,
        log(table, version, Action::Apply, host, &duration_ms.to_string(), None),
    )
}

/// A `running` migration failed: `failed`, with `stored` as its error (and its duration when
/// `with_duration`), and a log entry with `logged`.
pub(crate) fn mark_failed(
    table: &Table,
    version: i64,
    host: &str,
    (stored, logged): (&str, &str),
    duration_ms: u64,
    with_duration: bool,
) -> String {
    let duration = if with_duration {
        format!(", execution_time_ms = {duration_ms}")
    } else {
        String::new()
    };
    format!(
        "UPDATE {} SET state = 'failed'{duration}, error = {} WHERE version = {version};\n{}",
        table.qualified,
        literal(stored),
        log(
            table,
            version,
            Action::Fail,
            host,
            &duration_ms.to_string(),
            Some(logged)
        ),
    )
}

/// A migration that ran but lost its row meanwhile is recorded `failed` (unless another row
/// for it is there by now), with a log entry.
pub(crate) fn failed_row(
    table: &Table,
    migration: &Migration,
    host: &str,
    error: &str,
    duration_ms: u64,
) -> String {
    format!(
        "INSERT INTO {} ({COLUMNS}, error, execution_time_ms) VALUES ({}, {}, {duration_ms}) \
         ON CONFLICT (version) DO NOTHING;\n{}",
        table.qualified,
        values(migration, Written::Failed),
        literal(error),
        log(
            table,
            migration.version(),
            Action::Fail,
            host,
            &duration_ms.to_string(),
            Some(error)
        ),
    )
}

/// A transactional down's record: its row removed (failing if the down removed it already, or
/// the table), and the log entry with the transaction's duration.
pub(crate) fn removed_after_down(table: &Table, version: i64, host: &str) -> String {
    format!(
        "WITH d AS (DELETE FROM {} WHERE version = {version} RETURNING 1) SELECT 1 / count(*) FROM d;\n{}",
        table.qualified,
        log(
            table,
            version,
            Action::Rollback,
            host,
            &Since::TransactionStart.elapsed(),
            None
        ),
    )
}

/// A no-transaction down starts: the row says `running` again (a process that dies mid-way
/// leaves it so).
pub(crate) fn running_again(table: &Table, version: i64) -> String {
    format!(
        "UPDATE {} SET state = 'running', error = NULL WHERE version = {version};\n",
        table.qualified
    )
}

/// A row removed, with a log entry for `action` (a no-transaction down that ended, a repair).
pub(crate) fn remove(
    table: &Table,
    version: i64,
    action: Action,
    host: &str,
    duration_ms: u64,
    note: Option<&str>,
) -> String {
    format!(
        "DELETE FROM {} WHERE version = {version};\n{}",
        table.qualified,
        log(table, version, action, host, &duration_ms.to_string(), note),
    )
}

/// An applied migration whose file was deliberately edited: the file's checksum and down SQL
/// stored, with a log entry.
pub(crate) fn restamp(table: &Table, migration: &Migration, host: &str, note: &str) -> String {
    format!(
        "UPDATE {} SET checksum = {}, down_sql = {} WHERE version = {};\n{}",
        table.qualified,
        literal(migration.checksum()),
        literal_opt(migration.down_sql()),
        migration.version(),
        log(
            table,
            migration.version(),
            Action::Repair,
            host,
            "0",
            Some(note)
        ),
    )
}

/// A migration recorded as applied without running it, with a log entry.
pub(crate) fn baseline(table: &Table, migration: &Migration, host: &str) -> String {
    insert(table, migration, Written::Applied)
        + &log(
            table,
            migration.version(),
            Action::Baseline,
            host,
            "0",
            None,
        )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Script;

    fn migration() -> Migration {
        Migration::new(
            7,
            "it's".to_owned(),
            Script::new("7_x.up.sql", "SELECT 1;", false),
            Some(Script::new("7_x.down.sql", "SELECT 2;", false)),
        )
    }

    #[test]
    fn every_row_write_names_the_same_columns() {
        let table = Table::new("app", "history");
        let migration = migration();
        let checksum = migration.checksum().to_owned();
        let values = format!(
            "(version, name, checksum, state, applied_by, down_sql) VALUES (7, E'it''s', E'{checksum}', 'running', current_user, E'SELECT 2;')"
        );
        assert_eq!(
            insert(&table, &migration, Written::Running),
            format!("INSERT INTO \"app\".\"history\" {values};\n")
        );
        assert!(record(&table, &migration, "h", Since::Noted)
            .contains("(version, name, checksum, state, applied_by, down_sql, execution_time_ms)"));
        assert!(failed_row(&table, &migration, "h", "x", 3).contains(
            "(version, name, checksum, state, applied_by, down_sql, error, execution_time_ms)"
        ));
    }

    #[test]
    fn the_elapsed_time_starts_where_it_should() {
        let table = Table::new("app", "history");
        assert!(record_inserted(&table, 7, "h", Since::TransactionStart)
            .contains("clock_timestamp() - now()"));
        assert!(record(&table, &migration(), "h", Since::Noted)
            .contains("clock_timestamp() - current_setting('pgratchet.started')::timestamptz"));
    }

    #[test]
    fn log_entries_escape_what_they_store() {
        let table = Table::new("app", "history");
        assert_eq!(
            log(&table, 7, Action::Fail, "host's", "12", Some("it's \\ bad")),
            "INSERT INTO \"app\".\"history_log\" (version, action, host, duration_ms, error) \
             VALUES (7, 'fail', E'host''s', 12, E'it''s \\\\ bad');\n"
        );
    }
}
