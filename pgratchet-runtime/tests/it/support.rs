//! Helpers shared by the tests: building migration sets in code and reading the database.

#![allow(dead_code)]

use std::time::{Duration, Instant};

use pgratchet_runtime::{Migration, Migrations, Report, Script};
use tokio_postgres::{Client, SimpleQueryMessage};

/// A transactional migration `<version>_<name>.sql`.
pub fn mig(version: i64, name: &str, sql: &str) -> Migration {
    Migration::new(
        version,
        name.to_owned(),
        Script::new(format!("{version}_{name}.sql"), sql.to_owned(), false),
        None,
    )
}

/// A no-transaction migration `<version>_<name>.sql`.
pub fn mig_nt(version: i64, name: &str, sql: &str) -> Migration {
    Migration::new(
        version,
        name.to_owned(),
        Script::new(
            format!("{version}_{name}.sql"),
            format!("-- migrate:no-transaction\n{sql}"),
            true,
        ),
        None,
    )
}

/// A set of transactional migrations from `(version, name, sql)`.
pub fn set(list: &[(i64, &str, &str)]) -> Migrations {
    of(list
        .iter()
        .map(|(version, name, sql)| mig(*version, name, sql))
        .collect())
}

/// A set from migrations built one by one.
pub fn of(list: Vec<Migration>) -> Migrations {
    Migrations::new(list).expect("a valid set of migrations")
}

/// The versions a run applied, in order.
pub fn applied(report: &Report) -> Vec<i64> {
    report
        .applied
        .iter()
        .map(|applied| applied.version)
        .collect()
}

/// The versions a rollback reverted, newest first.
pub fn rolled_back(report: &Report) -> Vec<i64> {
    report
        .rolled_back
        .iter()
        .map(|rolled_back| rolled_back.version)
        .collect()
}

/// Every row of a query, each column as text (`None` for NULL), through the simple protocol.
pub async fn rows(client: &Client, sql: &str) -> Vec<Vec<Option<String>>> {
    let messages = client
        .simple_query(sql)
        .await
        .unwrap_or_else(|e| panic!("query failed: {sql}: {e:?}"));
    messages
        .iter()
        .filter_map(|message| match message {
            SimpleQueryMessage::Row(row) => Some(
                (0..row.len())
                    .map(|index| row.get(index).map(str::to_owned))
                    .collect(),
            ),
            _ => None,
        })
        .collect()
}

/// The first column of the first row, as text.
pub async fn scalar(client: &Client, sql: &str) -> Option<String> {
    rows(client, sql)
        .await
        .into_iter()
        .next()
        .unwrap_or_else(|| panic!("no row from {sql}"))
        .into_iter()
        .next()
        .flatten()
}

/// A number from a query.
pub async fn number(client: &Client, sql: &str) -> i64 {
    scalar(client, sql)
        .await
        .unwrap_or_else(|| panic!("NULL from {sql}"))
        .parse()
        .unwrap_or_else(|e| panic!("not a number from {sql}: {e}"))
}

/// The first column of every row, as text (NULL as "NULL").
pub async fn column(client: &Client, sql: &str) -> Vec<String> {
    rows(client, sql)
        .await
        .into_iter()
        .map(|row| {
            row.into_iter()
                .next()
                .flatten()
                .unwrap_or_else(|| "NULL".to_owned())
        })
        .collect()
}

/// Whether a relation exists (`name` as `to_regclass` reads it, e.g. `public.t`).
pub async fn exists(client: &Client, name: &str) -> bool {
    let sql = format!(
        "SELECT to_regclass('{}') IS NOT NULL",
        name.replace('\'', "''")
    );
    scalar(client, &sql).await.as_deref() == Some("t")
}

/// The versions recorded in `public.schema_migrations`, in order.
pub async fn history(client: &Client) -> Vec<i64> {
    column(
        client,
        "SELECT version FROM public.schema_migrations ORDER BY version",
    )
    .await
    .into_iter()
    .map(|version| version.parse().expect("a version"))
    .collect()
}

/// `(version, action)` of every row of `public.schema_migrations_log`, in insertion order.
pub async fn log(client: &Client) -> Vec<(i64, String)> {
    rows(
        client,
        "SELECT version, action FROM public.schema_migrations_log ORDER BY at, ctid",
    )
    .await
    .into_iter()
    .map(|row| {
        (
            row[0]
                .as_deref()
                .expect("version")
                .parse()
                .expect("a version"),
            row[1].clone().expect("action"),
        )
    })
    .collect()
}

/// Every relation (table, index, sequence, view, ...) outside the system schemas, and every
/// schema, as one sorted text: to prove that a refused run created nothing.
pub async fn catalog(client: &Client) -> Vec<String> {
    column(
        client,
        "SELECT n.nspname || '.' || coalesce(c.relname, '') FROM pg_namespace n \
         LEFT JOIN pg_class c ON c.relnamespace = n.oid \
         WHERE n.nspname NOT IN ('pg_catalog', 'information_schema', 'pg_toast') \
         AND n.nspname NOT LIKE 'pg_temp%' AND n.nspname NOT LIKE 'pg_toast_temp%' \
         ORDER BY 1",
    )
    .await
}

/// Polls `sql` (a query returning one value or none) until it returns a non-NULL value.
pub async fn wait_for(client: &Client, sql: &str, within: Duration) -> String {
    let started = Instant::now();
    loop {
        let value = rows(client, sql)
            .await
            .into_iter()
            .next()
            .and_then(|row| row.into_iter().next().flatten());
        if let Some(value) = value {
            return value;
        }
        assert!(
            started.elapsed() < within,
            "nothing from {sql} within {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The pid of the session of this database that holds an advisory lock while running a query
/// that contains `marker`.
pub async fn holder_running(client: &Client, marker: &str) -> i32 {
    let sql = format!(
        "SELECT a.pid FROM pg_stat_activity a JOIN pg_locks l ON l.pid = a.pid \
         WHERE a.datname = current_database() AND a.pid <> pg_backend_pid() \
         AND l.locktype = 'advisory' AND l.granted AND a.state = 'active' \
         AND strpos(a.query, '{}') > 0 LIMIT 1",
        marker.replace('\'', "''")
    );
    wait_for(client, &sql, Duration::from_secs(20))
        .await
        .parse()
        .expect("a pid")
}

/// A throwaway PgBouncer in transaction mode in front of the shared cluster.
pub fn transaction_pooler() -> pgratchet_harness::Bouncer {
    pgratchet_harness::Cluster::shared()
        .pgbouncer(pgratchet_harness::PoolMode::Transaction)
        .unwrap_or_else(|e| panic!("{e}"))
}

/// Creates table `gate` and holds `ACCESS EXCLUSIVE` on it from a session of its own, so a
/// migration that touches `gate` blocks until [`open_gate`]. Returns that session.
pub async fn closed_gate(db: &pgratchet_harness::TestDb) -> Client {
    let keeper = db.client().await;
    // Two batches: statements before a `BEGIN` in one batch join its transaction.
    keeper
        .batch_execute("CREATE TABLE IF NOT EXISTS gate (id int)")
        .await
        .expect("create the gate");
    keeper
        .batch_execute("BEGIN; LOCK TABLE gate IN ACCESS EXCLUSIVE MODE;")
        .await
        .expect("close the gate");
    keeper
}

/// Lets every session waiting on `gate` go on.
pub async fn open_gate(keeper: &Client) {
    keeper.batch_execute("COMMIT").await.expect("open the gate");
}

/// Waits until at least `count` sessions of this database wait for a lock (a table, a row, a
/// transaction), so a test knows its starters reached the point it means to test.
pub async fn lock_waiters(client: &Client, count: usize) {
    let sql = format!(
        "SELECT 1 WHERE (SELECT count(*) FROM pg_stat_activity \
         WHERE datname = current_database() AND wait_event_type = 'Lock') >= {count}"
    );
    wait_for(client, &sql, Duration::from_secs(20)).await;
}
