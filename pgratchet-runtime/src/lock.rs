//! The migration lock: a session advisory lock, keyed by the history table, taken by polling.
//!
//! Polling `pg_try_advisory_lock` rather than blocking in `pg_advisory_lock` matters: a waiter
//! blocked inside a statement is a transaction that a holder's `CREATE INDEX CONCURRENTLY` waits
//! for, and the two deadlock (Flyway#1654).

use std::future::Future;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use tokio_postgres::{Client, SimpleQueryMessage};

use crate::batch::first_value;
use crate::holder::LockHolder;
use crate::table::Table;
use crate::Error;

/// The advisory lock key of a history table: the first 8 bytes of SHA-256 of
/// `pgratchet:"schema"."table"`. A fixed function, so every build and release of every binary
/// derives the same key, and two services with their own tables in one database do not block
/// each other. The names are quoted, so `("a.b", "c")` and `("a", "b.c")` differ.
pub(crate) fn key(table: &Table) -> i64 {
    let digest = Sha256::digest(format!("pgratchet:{}", table.qualified).as_bytes());
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

/// The first pause between two tries of a lock.
pub(crate) const FIRST_PAUSE: Duration = Duration::from_millis(10);

/// The pause after `pause`: quick at first, so a crowd of starters lines up fast; then gentle on
/// the server.
pub(crate) fn next_pause(pause: Duration) -> Duration {
    (pause * 2).min(Duration::from_millis(200))
}

/// Takes the session lock, polling; logs the holder every `report_every`; gives up after
/// `timeout`. Between tries asks `done` whether waiting is still worth it (the holder may have
/// applied everything this runner needs): `Ok(true)` when the lock is taken, `Ok(false)` when
/// `done` said so, without the lock.
pub(crate) async fn acquire<F, Fut>(
    client: &Client,
    table: &Table,
    wait: Wait,
    mut done: F,
) -> Result<bool, Error>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<bool, tokio_postgres::Error>>,
{
    let key = key(table);
    let started = Instant::now();
    let mut last_report = started;
    let mut pause = FIRST_PAUSE;
    let try_sql = format!("SELECT pg_try_advisory_lock({key})");
    loop {
        let messages = client
            .simple_query(&try_sql)
            .await
            .map_err(|e| Error::db("could not try the migration lock", e))?;
        if first_value(&messages).as_deref() == Some("t") {
            return Ok(true);
        }
        let up_to_date = done().await.map_err(|error| {
            Error::db(
                "could not re-read the migration history while waiting for the migration lock",
                error,
            )
        })?;
        if up_to_date {
            return Ok(false);
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
        pause = next_pause(pause);
    }
}

/// The lock key as `pg_locks` shows it: a bigint advisory key is stored as two 32-bit halves
/// (`classid`, `objid`), with `objsubid` 1.
fn halves(key: i64) -> (u32, u32) {
    ((key >> 32) as u32, key as u32)
}

/// Checks, once the session lock is held, that it keeps other sessions out. Some engines that
/// speak PostgreSQL's protocol answer the advisory-lock functions without locking (CockroachDB's
/// stubs returned true for years; YugabyteDB could silence its "not supported" error), and a
/// runner that trusts them applies migrations twice. Two checks: this session's lock must show
/// in `pg_locks`, and, when a pool can open one, a second, new session must fail to take it.
///
/// The lock functions are called unqualified, like every lock call of the runner: a test
/// shadows them for a whole database through its search_path to emulate such an engine.
pub(crate) async fn verify_exclusive(
    client: &Client,
    table: &Table,
    pool: Option<&deadpool_postgres::Pool>,
) -> Result<(), Error> {
    let key = key(table);
    let (high, low) = halves(key);
    let sql = format!(
        "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_locks WHERE locktype = 'advisory' AND granted \
         AND pid = pg_catalog.pg_backend_pid() AND classid = {high} AND objid = {low} AND objsubid = 1), version()"
    );
    let messages = client
        .simple_query(&sql)
        .await
        .map_err(|e| Error::db("could not check the migration lock", e))?;
    let (held, server) = first_two(&messages);
    if held.as_deref() != Some("t") {
        return Err(Error::AdvisoryLocksIneffective {
            server: server.unwrap_or_default(),
        });
    }
    let Some(pool) = pool else {
        return Ok(());
    };
    // A brand-new session, outside the pool's accounting (whatever the pool's size and load),
    // closed right after: if the engine's lock did not lock, what it "took" ends with it.
    let second = match deadpool::managed::Manager::create(pool.manager()).await {
        Ok(second) => second,
        Err(error) => {
            tracing::warn!(%error, "could not open a second connection to check that the migration lock excludes other sessions; going on with this session's check only");
            return Ok(());
        }
    };
    let messages = second
        .simple_query(&format!("SELECT pg_try_advisory_lock({key}), version()"))
        .await
        .map_err(|e| {
            Error::db(
                "could not check the migration lock from a second session",
                e,
            )
        })?;
    match first_two(&messages) {
        (Some(taken), server) if taken == "t" => Err(Error::AdvisoryLocksIneffective {
            server: server.unwrap_or_default(),
        }),
        _ => Ok(()),
    }
}

/// A statement that fails (division by zero) unless this session holds the migration lock: run
/// after a migration that might have released it.
pub(crate) fn held_check_sql(table: &Table) -> String {
    let (high, low) = halves(key(table));
    format!(
        "SELECT 1 / count(*) FROM pg_catalog.pg_locks WHERE locktype = 'advisory' AND granted \
         AND pid = pg_catalog.pg_backend_pid() AND classid = {high} AND objid = {low} AND objsubid = 1;\n"
    )
}

/// The first two columns of the first row, if any.
fn first_two(messages: &[SimpleQueryMessage]) -> (Option<String>, Option<String>) {
    messages
        .iter()
        .find_map(|message| match message {
            SimpleQueryMessage::Row(row) => {
                Some((row.get(0).map(str::to_owned), row.get(1).map(str::to_owned)))
            }
            _ => None,
        })
        .unwrap_or_default()
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
    let (high, low) = halves(key);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pauses_grow_to_a_ceiling() {
        let mut pause = FIRST_PAUSE;
        let mut seen = vec![pause];
        for _ in 0..6 {
            pause = next_pause(pause);
            seen.push(pause);
        }
        let ms: Vec<u128> = seen.iter().map(Duration::as_millis).collect();
        assert_eq!(ms, [10, 20, 40, 80, 160, 200, 200]);
    }

    #[test]
    fn key_halves_are_what_pg_locks_shows() {
        assert_eq!(halves(-1), (u32::MAX, u32::MAX));
        assert_eq!(halves(0x1234_5678_9abc_def0), (0x1234_5678, 0x9abc_def0));
    }

    /// Every release of every binary that migrates one database must derive the same key: this
    /// value may never change (the first 8 bytes of `sha256sum` of
    /// `pgratchet:"public"."schema_migrations"`, big-endian).
    #[test]
    fn the_lock_key_is_pinned() {
        assert_eq!(
            key(&Table::new("public", "schema_migrations")),
            7_003_084_208_870_951_877
        );
        assert_ne!(
            key(&Table::new("public", "schema_migrations")),
            key(&Table::new("app", "schema_migrations"))
        );
        assert_ne!(key(&Table::new("a.b", "c")), key(&Table::new("a", "b.c")));
    }
}
