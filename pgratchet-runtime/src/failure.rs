//! What a failure was, in the terms an operator needs: the file's line an error points at, the
//! server's message, the INVALID indexes a failed migration left, and which errors mean what
//! (another starter's row, a tampered history table, a creation race).

use std::time::Duration;

use pgratchet_core::lexer;
use tokio_postgres::error::{ErrorPosition, SqlState};
use tokio_postgres::{Client, SimpleQueryMessage};

use crate::batch;
use crate::error::MigrationFailure;
use crate::table::Table;
use crate::{Error, Migration};

/// The byte offset in `batch_sql` of the position PostgreSQL reports for `error`, if any.
pub(crate) fn error_byte(error: &tokio_postgres::Error, batch_sql: &str) -> Option<usize> {
    match error.as_db_error().and_then(|db| db.position()) {
        Some(ErrorPosition::Original(position)) => {
            batch::char_position_to_byte(batch_sql, *position as usize)
        }
        _ => None,
    }
}

/// The line of a migration's file an error points at: the server's position when it falls in
/// the file's text (which starts at `start` in the batch), else the line of the failing
/// statement (its index among the file's statements), if known.
pub(crate) fn line_at(
    migration_sql: &str,
    position: Option<usize>,
    start: usize,
    failed_statement: Option<usize>,
) -> Option<u32> {
    if let Some(byte) = position {
        if byte >= start && byte < start + migration_sql.len() {
            return Some(lexer::line_of(migration_sql, byte - start));
        }
    }
    let index = failed_statement?;
    lexer::executed(migration_sql)
        .nth(index)
        .map(|statement| statement.line)
}

/// [`line_at`] for `error` in `batch_sql`.
pub(crate) fn error_line(
    migration_sql: &str,
    error: &tokio_postgres::Error,
    start: usize,
    batch_sql: &str,
    failed_statement: Option<usize>,
) -> Option<u32> {
    line_at(
        migration_sql,
        error_byte(error, batch_sql),
        start,
        failed_statement,
    )
}

/// The error for a migration whose SQL failed at `line`.
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

impl InvalidIndex {
    /// Its name, and the backend building it, if one is.
    pub(crate) fn describe(&self) -> String {
        match self.building {
            Some(pid) => format!("{} (being built by pid {pid})", self.name),
            None => self.name.clone(),
        }
    }
}

/// Every INVALID index in the database; none when it cannot be read.
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

/// The pause before retry `attempt` (from 1) of a migration that hit a lock timeout or a
/// deadlock: `base`, then doubling, at most 30 s.
pub(crate) fn retry_pause(base: Duration, attempt: u32) -> Duration {
    base.saturating_mul(1 << attempt.saturating_sub(1).min(16))
        .min(Duration::from_secs(30))
}

/// Ends a failed transaction; errors are ignored because the connection may already be gone, and
/// the caller reports the first error.
pub(crate) async fn rollback(client: &Client) {
    let _ = client.batch_execute("ROLLBACK").await;
}

/// A unique violation on the history table's key: another starter recorded it first.
pub(crate) fn is_history_conflict(error: &tokio_postgres::Error, table: &Table) -> bool {
    error.as_db_error().is_some_and(|db| {
        *db.code() == SqlState::UNIQUE_VIOLATION
            && db.schema() == Some(table.schema.as_str())
            && db.table() == Some(table.name.as_str())
    })
}

/// The migration dropped or changed the history table or its log, so its record failed:
/// a table or column gone, or (behind a pooler) the row inserted first gone (`1 / count(*)`).
pub(crate) fn is_history_tampered(error: &tokio_postgres::Error) -> bool {
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
pub(crate) fn is_creation_race(error: &tokio_postgres::Error) -> bool {
    matches!(
        error.code(),
        Some(&SqlState::DUPLICATE_TABLE)
            | Some(&SqlState::DUPLICATE_SCHEMA)
            | Some(&SqlState::UNIQUE_VIOLATION)
    )
}

/// No history table (yet), or a pybmpmon one not adopted yet: a fresh start, not an error.
pub(crate) fn is_missing_history(error: &tokio_postgres::Error) -> bool {
    matches!(
        error.code(),
        Some(&SqlState::UNDEFINED_TABLE)
            | Some(&SqlState::INVALID_SCHEMA_NAME)
            | Some(&SqlState::UNDEFINED_COLUMN)
    )
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

    #[test]
    fn the_line_comes_from_the_position_in_the_file_or_else_the_statement() {
        let sql = "CREATE TABLE a (id int);\n\nINSERT INTO a\nVALUES (1);\n";
        // The file starts at byte 10 of its batch.
        let start = 10;
        for (position, statement, line) in [
            // A position inside the file: its line.
            (Some(start), None, Some(1)),
            (Some(start + 30), None, Some(3)),
            (Some(start + 40), Some(0), Some(4)),
            // Outside it (the runner's own statements): the failing statement's line.
            (Some(2), Some(1), Some(3)),
            (None, Some(0), Some(1)),
            (None, Some(1), Some(3)),
            // Neither.
            (None, None, None),
            (None, Some(9), None),
        ] {
            assert_eq!(
                line_at(sql, position, start, statement),
                line,
                "{position:?} {statement:?}"
            );
        }
    }

    #[test]
    fn retries_wait_longer_each_time_up_to_thirty_seconds() {
        let base = Duration::from_millis(500);
        let pauses: Vec<u128> = (1..=8)
            .map(|attempt| retry_pause(base, attempt).as_millis())
            .collect();
        assert_eq!(pauses, [500, 1000, 2000, 4000, 8000, 16000, 30000, 30000]);
        assert_eq!(retry_pause(base, 0), base);
    }
}
