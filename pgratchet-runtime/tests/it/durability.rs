//! "When a run returns, everything it applied is on disk", on every way a run can return.
//!
//! A private cluster where nothing reaches the disk by itself for a while: the WAL writer wakes
//! every 10 s, `synchronous_commit` is `off` for every session (as on the shared test cluster),
//! and nothing else writes WAL (no autovacuum, no standby snapshots at `wal_level = minimal`, no
//! timed checkpoint). So right after a run returns, WAL inserted but not flushed can only be the
//! run's: `pg_current_wal_flush_lsn()` must have reached `pg_current_wal_insert_lsn()`. The check
//! comes first after the run: a later read may prune the pages the run left dead tuples on,
//! which writes WAL of its own.

use std::sync::{Arc, OnceLock};

use pgratchet_harness::{Cluster, TestDb};
use pgratchet_runtime::{HookPoint, Migrator};

use crate::support::*;

fn lazy_cluster() -> &'static Cluster {
    static CLUSTER: OnceLock<Cluster> = OnceLock::new();
    CLUSTER.get_or_init(|| {
        Cluster::start_with(&[
            ("wal_writer_delay", "10s"),
            ("autovacuum", "off"),
            ("wal_level", "minimal"),
            ("max_wal_senders", "0"),
            ("checkpoint_timeout", "1h"),
        ])
        .unwrap_or_else(|e| panic!("{e}"))
    })
}

/// A database on the private cluster, and the right to be the only test writing WAL there:
/// a test's check would see another's unflushed commits.
async fn private_db(label: &str) -> (TestDb, tokio::sync::MutexGuard<'static, ()>) {
    static ALONE: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    let alone = ALONE.lock().await;
    let db = lazy_cluster()
        .create_database(label)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    (db, alone)
}

/// Whether every WAL record inserted so far is flushed.
async fn all_flushed(client: &tokio_postgres::Client) -> bool {
    let row = rows(
        client,
        "SELECT pg_current_wal_flush_lsn() >= pg_current_wal_insert_lsn(), \
         pg_current_wal_flush_lsn()::text, pg_current_wal_insert_lsn()::text",
    )
    .await;
    eprintln!("flush {:?} insert {:?}", row[0][1], row[0][2]);
    row[0][0].as_deref() == Some("t")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_successful_run_is_on_disk_even_if_its_last_migration_turns_synchronous_commit_off() {
    let (db, _alone) = private_db("durable success").await;
    let client = db.client().await;
    let migrations = set(&[
        (1, "a", "CREATE TABLE a (id int);"),
        (2, "b", "CREATE TABLE b (id int);"),
        (
            3,
            "c",
            "SET LOCAL synchronous_commit = off;\nCREATE TABLE c (id int);",
        ),
    ]);
    let report = migrations.run(&db.pool(1)).await.expect("run");
    assert_eq!(applied(&report), vec![1, 2, 3]);
    assert!(all_flushed(&client).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_that_fails_after_applying_some_leaves_those_on_disk() {
    let (db, _alone) = private_db("durable failure").await;
    let client = db.client().await;
    let migrations = set(&[
        (1, "a", "CREATE TABLE a (id int);"),
        (2, "b", "CREATE TABLE b (id int);"),
        (3, "broken", "CREATE TABLE c (id int);\nSELECT 1 / 0;"),
    ]);
    migrations
        .run(&db.pool(1))
        .await
        .expect_err("migration 3 fails");
    assert!(all_flushed(&client).await);
    assert_eq!(history(&client).await, vec![1, 2]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_whose_hook_fails_after_applying_some_leaves_those_on_disk() {
    let (db, _alone) = private_db("durable hook").await;
    let client = db.client().await;
    let migrations = set(&[
        (1, "a", "CREATE TABLE a (id int);"),
        (2, "b", "CREATE TABLE b (id int);"),
    ]);
    Migrator::new(&migrations)
        .hook(HookPoint::AfterEach, |_| async {
            Err("the hook refuses".into())
        })
        .run(&db.pool(1))
        .await
        .expect_err("the hook fails after migration 1");
    assert!(all_flushed(&client).await);
    assert_eq!(history(&client).await, vec![1]);
}

/// Behind a pooler the run's last migration may be applied by another starter: then this run's
/// own earlier commits still have to reach the disk before it returns.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_whose_last_migration_another_starter_applied_leaves_its_own_on_disk() {
    let (db, _alone) = private_db("durable other").await;
    let client = db.client().await;
    let migrations = Arc::new(set(&[
        (1, "a", "CREATE TABLE a (id int);"),
        (2, "b", "CREATE TABLE b (id int);"),
        (3, "c", "CREATE TABLE c (id int);"),
    ]));
    Migrator::new(&migrations)
        .target(1)
        .run(&db.pool(1))
        .await
        .expect("the history table and 1");
    // "Another starter" records 3 and holds its row until this run waits on it.
    let other = db.client().await;
    let three = migrations.get(3).expect("3");
    other
        .batch_execute(&format!(
            "BEGIN; CREATE TABLE c (id int); \
             INSERT INTO schema_migrations (version, name, checksum) VALUES (3, 'c', '{}');",
            three.checksum()
        ))
        .await
        .expect("the other starter's transaction");
    let run = {
        let migrations = Arc::clone(&migrations);
        let pool = db.pool(1);
        tokio::spawn(async move {
            Migrator::new(&migrations)
                .transaction_pooler(true)
                .run(&pool)
                .await
        })
    };
    lock_waiters(&client, 1).await;
    other.batch_execute("COMMIT").await.expect("commit 3");
    let report = run.await.expect("task").expect("the run");
    assert!(all_flushed(&client).await);
    assert_eq!(applied(&report), vec![2]);
    assert_eq!(report.applied_by_others, vec![3]);
}
