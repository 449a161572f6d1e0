//! [`Event`]: the audit trail in `<table>_log`.

use serde::Serialize;
use tokio_postgres::error::SqlState;
use tokio_postgres::{Client, SimpleQueryMessage};

use crate::history::Table;
use crate::Error;

/// One entry of the audit log: an apply, failure, rollback, baseline or repair.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Event {
    /// The migration's version.
    pub version: i64,
    /// `apply`, `fail`, `rollback`, `baseline` or `repair`.
    pub action: String,
    /// When (UTC, RFC 3339).
    pub at: String,
    /// The database role that did it.
    pub by: String,
    /// The host the runner ran on.
    pub host: Option<String>,
    /// How long it took, in milliseconds.
    pub duration_ms: Option<i64>,
    /// The error, or what a repair did.
    pub error: Option<String>,
}

/// Every event, oldest first; none when the log table does not exist yet.
pub(crate) async fn read(client: &Client, table: &Table) -> Result<Vec<Event>, Error> {
    let sql = format!(
        "SELECT version, action, to_char(at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"'), by, host, duration_ms, error \
         FROM {} ORDER BY at, version",
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
    Ok(messages
        .iter()
        .filter_map(|message| match message {
            SimpleQueryMessage::Row(row) => Some(Event {
                version: row.get(0)?.parse().ok()?,
                action: row.get(1)?.to_owned(),
                at: row.get(2)?.to_owned(),
                by: row.get(3)?.to_owned(),
                host: row.get(4).map(str::to_owned),
                duration_ms: row.get(5).and_then(|ms| ms.parse().ok()),
                error: row.get(6).map(str::to_owned),
            }),
            _ => None,
        })
        .collect())
}
