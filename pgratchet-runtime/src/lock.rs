//! The migration lock: a session advisory lock, keyed by the history table, taken by polling.
//!
//! Polling `pg_try_advisory_lock` rather than blocking in `pg_advisory_lock` matters: a waiter
//! blocked inside a statement is a transaction that a holder's `CREATE INDEX CONCURRENTLY` waits
//! for, and the two deadlock (Flyway#1654).

use std::fmt;
use std::time::{Duration, Instant};

use serde::Serialize;
use sha2::{Digest, Sha256};
use tokio_postgres::{Client, SimpleQueryMessage};

use crate::apply::Engine;
use crate::history::Table;
use crate::Error;

/// The session holding the migration lock, as `pg_stat_activity` shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct LockHolder {
    /// The holder's backend process id.
    pub pid: i32,
    /// Its `application_name`.
    pub application_name: String,
    /// Its state (`active`, `idle`, `idle in transaction`, ...).
    pub state: Option<String>,
    /// When its current transaction started.
    pub xact_start: Option<String>,
    /// When its connection started.
    pub backend_start: Option<String>,
    /// Its current or last query.
    pub query: Option<String>,
}

impl fmt::Display for LockHolder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "pid {}", self.pid)?;
        if !self.application_name.is_empty() {
            write!(f, " ({})", self.application_name)?;
        }
        if let Some(state) = &self.state {
            write!(f, ", {state}")?;
        }
        if let Some(start) = self.xact_start.as_ref().or(self.backend_start.as_ref()) {
            write!(f, " since {start}")?;
        }
        if let Some(query) = &self.query {
            let query: String = query.chars().take(120).collect();
            write!(f, ", query: {}", query.replace('\n', " "))?;
        }
        Ok(())
    }
}

/// The advisory lock key of a history table: the first 8 bytes of SHA-256 of `schema.table`.
/// A fixed function, so every build and release of every binary derives the same key, and two
/// services with their own tables in one database do not block each other.
pub(crate) fn key(table: &Table) -> i64 {
    let digest = Sha256::digest(format!("pgratchet:{}", table.display()).as_bytes());
    let mut bytes = [0u8; 8];
    bytes.copy_from_slice(&digest[..8]);
    i64::from_be_bytes(bytes)
}

/// How to wait for the lock.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Wait {
    pub(crate) timeout: Duration,
    pub(crate) report_every: Duration,
}

/// Takes the session lock, polling; logs the holder every `report_every`; gives up after
/// `timeout`.
pub(crate) async fn acquire(client: &Client, table: &Table, wait: Wait) -> Result<(), Error> {
    poll(client, table, wait, None).await.map(drop)
}

/// Like [`acquire`], but between tries asks whether the holder applied everything; then returns
/// `false` without the lock.
pub(crate) async fn acquire_unless_up_to_date(
    client: &Client,
    table: &Table,
    wait: Wait,
    engine: &Engine<'_>,
) -> Result<bool, Error> {
    poll(client, table, wait, Some(engine)).await
}

async fn poll(
    client: &Client,
    table: &Table,
    wait: Wait,
    recheck: Option<&Engine<'_>>,
) -> Result<bool, Error> {
    let key = key(table);
    let started = Instant::now();
    let mut last_report = started;
    let mut pause = Duration::from_millis(10);
    let try_sql = format!("SELECT pg_try_advisory_lock({key})");
    loop {
        let messages = client
            .simple_query(&try_sql)
            .await
            .map_err(|e| Error::db("could not try the migration lock", e))?;
        if first_value(&messages).as_deref() == Some("t") {
            return Ok(true);
        }
        if let Some(engine) = recheck {
            let up_to_date = engine.fast_check(client).await.map_err(|error| {
                Error::db(
                    "could not re-read the migration history while waiting for the migration lock",
                    error,
                )
            })?;
            if up_to_date {
                return Ok(false);
            }
        }
        let waited = started.elapsed();
        if waited >= wait.timeout {
            let holder = holder(client, key).await.ok().flatten().map(Box::new);
            return Err(Error::LockTimeout { waited, holder });
        }
        if last_report.elapsed() >= wait.report_every {
            last_report = Instant::now();
            match holder(client, key).await.ok().flatten() {
                Some(holder) => tracing::info!(
                    table = %table.display(),
                    waited_ms = waited.as_millis() as u64,
                    %holder,
                    "waiting for the migration lock"
                ),
                None => tracing::info!(
                    table = %table.display(),
                    waited_ms = waited.as_millis() as u64,
                    "waiting for the migration lock"
                ),
            }
        }
        tokio::time::sleep(pause.min(wait.timeout.saturating_sub(waited))).await;
        // Quick at first, so a crowd of starters lines up fast; then gentle on the server.
        pause = (pause * 2).min(Duration::from_millis(200));
    }
}

/// Releases the session lock (the connection is closed afterwards anyway).
pub(crate) async fn release(client: &Client, table: &Table) -> Result<(), Error> {
    client
        .simple_query(&format!("SELECT pg_advisory_unlock({})", key(table)))
        .await
        .map_err(|e| Error::db("could not release the migration lock", e))?;
    Ok(())
}

/// Who holds the lock, from `pg_locks` and `pg_stat_activity`.
pub(crate) async fn holder(client: &Client, key: i64) -> Result<Option<LockHolder>, Error> {
    // A bigint advisory key is stored as two 32-bit halves, objsubid 1.
    let high = (key >> 32) as u32;
    let low = key as u32;
    let sql = format!(
        "SELECT a.pid, coalesce(a.application_name, ''), a.state, a.xact_start::text, a.backend_start::text, a.query \
         FROM pg_catalog.pg_locks l JOIN pg_catalog.pg_stat_activity a ON a.pid = l.pid \
         WHERE l.locktype = 'advisory' AND l.granted AND l.database = (SELECT oid FROM pg_catalog.pg_database WHERE datname = current_database()) \
         AND l.classid = {high} AND l.objid = {low} AND l.objsubid = 1 LIMIT 1"
    );
    let messages = client
        .simple_query(&sql)
        .await
        .map_err(|e| Error::db("could not look up the migration lock's holder", e))?;
    Ok(messages.iter().find_map(|message| match message {
        SimpleQueryMessage::Row(row) => Some(LockHolder {
            pid: row.get(0)?.parse().ok()?,
            application_name: row.get(1).unwrap_or_default().to_owned(),
            state: row.get(2).map(str::to_owned),
            xact_start: row.get(3).map(str::to_owned),
            backend_start: row.get(4).map(str::to_owned),
            query: row.get(5).map(str::to_owned),
        }),
        _ => None,
    }))
}

/// The first column of the first row, if any.
pub(crate) fn first_value(messages: &[SimpleQueryMessage]) -> Option<String> {
    messages.iter().find_map(|message| match message {
        SimpleQueryMessage::Row(row) => row.get(0).map(str::to_owned),
        _ => None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every release of every binary that migrates one database must derive the same key: this
    /// value may never change (compare `sha256sum` of `pgratchet:public.schema_migrations`).
    #[test]
    fn the_lock_key_is_pinned() {
        assert_eq!(
            key(&Table::new("public", "schema_migrations")),
            -7_907_430_249_889_709_541
        );
        assert_ne!(
            key(&Table::new("public", "schema_migrations")),
            key(&Table::new("app", "schema_migrations"))
        );
    }
}
