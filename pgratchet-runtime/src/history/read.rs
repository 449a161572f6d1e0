//! Reading the history table and its log. A row this runner cannot read (a state it does not
//! write, a missing version) is an error, never something to skip.

use tokio_postgres::error::SqlState;
use tokio_postgres::{Client, SimpleQueryMessage, SimpleQueryRow};

use crate::events::{Action, Event};
use crate::table::Table;
use crate::{Error, State};

/// A timestamp column as RFC 3339 in UTC, the way every reader shows it.
fn utc(column: &str) -> String {
    format!(
        "to_char({column}::timestamptz AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"')"
    )
}

/// The one reading of the `state` column: only the states the runner writes.
pub(crate) fn parse_state(word: &str) -> Option<State> {
    match word {
        "applied" => Some(State::Applied),
        "running" => Some(State::Running),
        "failed" => Some(State::Failed),
        _ => None,
    }
}

/// Reads every row of the history table named by the `from` clause (a table, or a table with a
/// filter), in version order; not `down_sql`, which can be large.
pub(crate) fn rows_sql(from: &str) -> String {
    format!(
        "SELECT version, name, checksum, state, {}, execution_time_ms, error FROM {from} ORDER BY version",
        utc("applied_at")
    )
}

/// One row of the history table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Row {
    pub(crate) version: i64,
    pub(crate) name: String,
    pub(crate) checksum: String,
    pub(crate) state: State,
    pub(crate) applied_at: Option<String>,
    pub(crate) execution_time_ms: i64,
    pub(crate) error: Option<String>,
}

impl Row {
    fn parse(row: &SimpleQueryRow) -> Option<Row> {
        Some(Row {
            version: row.get(0)?.parse().ok()?,
            name: row.get(1)?.to_owned(),
            checksum: row.get(2)?.to_owned(),
            state: parse_state(row.get(3)?)?,
            applied_at: row.get(4).map(str::to_owned),
            execution_time_ms: row.get(5).and_then(|ms| ms.parse().ok()).unwrap_or(0),
            error: row.get(6).map(str::to_owned),
        })
    }
}

fn unreadable(table: &Table, row: &SimpleQueryRow) -> Error {
    Error::ForeignTable {
        table: table.display(),
        found: format!(
            "a row with version {:?} and state {:?} this tool cannot read",
            row.get(0),
            row.get(3)
        ),
    }
}

/// Rows from the messages of [`rows_sql`], in order.
pub(crate) fn parse_rows(
    table: &Table,
    messages: &[SimpleQueryMessage],
) -> Result<Vec<Row>, Error> {
    rows_of(messages)
        .map(|row| Row::parse(row).ok_or_else(|| unreadable(table, row)))
        .collect()
}

/// Every row (the table is known to exist and to have the runner's shape).
pub(crate) async fn rows(client: &Client, table: &Table) -> Result<Vec<Row>, Error> {
    let messages = client
        .simple_query(&rows_sql(&table.qualified))
        .await
        .map_err(|e| {
            Error::db(
                format!("could not read the history table {}", table.display()),
                e,
            )
        })?;
    parse_rows(table, &messages)
}

/// A recorded migration as a rollback needs it: with the down SQL stored when it was applied.
pub(crate) struct Recorded {
    pub(crate) version: i64,
    pub(crate) name: String,
    pub(crate) state: State,
    pub(crate) down_sql: Option<String>,
}

/// Every recorded migration, newest first, with its stored down SQL.
pub(crate) async fn recorded(client: &Client, table: &Table) -> Result<Vec<Recorded>, Error> {
    let sql = format!(
        "SELECT version, name, state, down_sql FROM {} ORDER BY version DESC",
        table.qualified
    );
    let messages = client
        .simple_query(&sql)
        .await
        .map_err(|e| Error::db("could not read the history table", e))?;
    rows_of(&messages)
        .map(|row| {
            let recorded = || {
                Some(Recorded {
                    version: row.get(0)?.parse().ok()?,
                    name: row.get(1)?.to_owned(),
                    state: parse_state(row.get(2)?)?,
                    down_sql: row.get(3).map(str::to_owned),
                })
            };
            recorded().ok_or_else(|| unreadable(table, row))
        })
        .collect()
}

/// One migration's state and stored error, if it is recorded.
pub(crate) async fn state(
    client: &Client,
    table: &Table,
    version: i64,
) -> Result<Option<(State, Option<String>)>, Error> {
    let sql = format!(
        "SELECT state, error FROM {} WHERE version = {version}",
        table.qualified
    );
    let messages = client
        .simple_query(&sql)
        .await
        .map_err(|e| Error::db("could not read the history table", e))?;
    let Some(row) = rows_of(&messages).next() else {
        return Ok(None);
    };
    let state = row.get(0).and_then(parse_state);
    let state = state.ok_or_else(|| unreadable(table, row))?;
    Ok(Some((state, row.get(1).map(str::to_owned))))
}

/// Every event of the log, oldest first; none when the log table does not exist yet.
pub(crate) async fn log(client: &Client, table: &Table) -> Result<Vec<Event>, Error> {
    let sql = format!(
        "SELECT version, action, {}, by, host, duration_ms, error FROM {} ORDER BY at, version",
        utc("at"),
        table.log
    );
    let messages = match client.simple_query(&sql).await {
        Ok(messages) => messages,
        Err(error)
            if matches!(
                error.code(),
                Some(&SqlState::UNDEFINED_TABLE) | Some(&SqlState::INVALID_SCHEMA_NAME)
            ) =>
        {
            return Ok(Vec::new())
        }
        Err(error) => return Err(Error::db("could not read the migration log", error)),
    };
    rows_of(&messages)
        .map(|row| {
            let event = || {
                Some(Event {
                    version: row.get(0)?.parse().ok()?,
                    action: Action::parse(row.get(1)?)?,
                    at: row.get(2)?.to_owned(),
                    by: row.get(3)?.to_owned(),
                    host: row.get(4).map(str::to_owned),
                    duration_ms: row.get(5).and_then(|ms| ms.parse().ok()),
                    error: row.get(6).map(str::to_owned),
                })
            };
            event().ok_or_else(|| Error::ForeignTable {
                table: table.log.clone(),
                found: format!(
                    "a log entry with version {:?} and action {:?} this tool cannot read",
                    row.get(0),
                    row.get(1)
                ),
            })
        })
        .collect()
}

fn rows_of(messages: &[SimpleQueryMessage]) -> impl Iterator<Item = &SimpleQueryRow> {
    messages.iter().filter_map(|message| match message {
        SimpleQueryMessage::Row(row) => Some(row),
        _ => None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_states_the_runner_writes_are_read() {
        assert_eq!(parse_state("applied"), Some(State::Applied));
        assert_eq!(parse_state("running"), Some(State::Running));
        assert_eq!(parse_state("failed"), Some(State::Failed));
        for word in ["pending", "modified", "Applied", "", "dirty"] {
            assert_eq!(parse_state(word), None, "{word}");
        }
    }
}
