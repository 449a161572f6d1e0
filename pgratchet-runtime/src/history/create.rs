//! Creating (or adopting) the history table and its log, once, however many starters try at
//! the same moment.

use std::time::{Duration, Instant};

use tokio_postgres::Client;

use super::shape::{self, Creation, Shape};
use crate::batch::first_value;
use crate::failure::{is_creation_race, rollback};
use crate::lock;
use crate::table::Table;
use crate::Error;

/// Creates or adopts the history table (and its log) in one transaction under a transaction
/// advisory lock, so starters behind a transaction pooler cannot race on `CREATE TABLE` either.
/// Returns whether `version` is an INTEGER (an adopted pybmpmon table). `create_schema`: the
/// schema is configured, so create it when it is missing.
///
/// The lock is tried, never waited for inside a statement: a transaction blocked in
/// `pg_advisory_xact_lock` holds a snapshot that a session-lock holder's `CREATE INDEX
/// CONCURRENTLY` waits for, and the two deadlock (a CLI beside services with the pooler flag).
pub(crate) async fn ensure(
    client: &Client,
    table: &Table,
    create_schema: bool,
    lock_wait: Duration,
) -> Result<bool, Error> {
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
        if first_value(&messages).as_deref() != Some("t") {
            rollback(client).await;
            let waited = started.elapsed();
            if waited >= lock_wait {
                let holder = lock::holder(client, key).await.ok().flatten().map(Box::new);
                return Err(Error::LockTimeout { waited, holder });
            }
            tokio::time::sleep(pause).await;
            pause = lock::next_pause(pause);
            continue;
        }
        match create_or_adopt(client, table, create_schema).await {
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

/// Inside `ensure`'s transaction: inspects, creates or adopts, commits.
async fn create_or_adopt(
    client: &Client,
    table: &Table,
    create_schema: bool,
) -> Result<bool, Error> {
    let shape = shape::inspect(client, table).await?;
    // Looked up rather than `CREATE SCHEMA IF NOT EXISTS`, which checks CREATE on the database
    // first: a role that owns its schema but not the database could not run.
    let create_schema = create_schema && !shape::schema_exists(client, table).await?;
    let ddl = shape::ensure_sql(table, &shape, Creation::Run { create_schema });
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
