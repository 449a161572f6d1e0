//! Waiting for the migration lock, and `lock_timeout` with retries for DDL.

use std::sync::Arc;
use std::time::{Duration, Instant};

use pg_harness::test_db;
use pgratchet_runtime::{Error, Migrator};

use crate::support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lock_wait_timeout_names_the_holder() {
    let db = test_db("lock_wait_timeout").await;
    let client = db.client().await;
    let migrations = Arc::new(set(&[
        (1, "slow", "SELECT pg_sleep(2.5);\nCREATE TABLE a (id int);"),
        (2, "b", "CREATE TABLE b (id int);"),
    ]));
    let run_a = {
        let migrations = Arc::clone(&migrations);
        let pool = db.pool(1);
        tokio::spawn(async move { migrations.run(&pool).await })
    };
    let pid = holder_running(&client, "pg_sleep(2.5)").await;

    let started = Instant::now();
    let error = Migrator::new(&migrations)
        .lock_wait_timeout(Duration::from_millis(500))
        .run(&db.pool(1))
        .await
        .expect_err("B gives up");
    let waited_for = started.elapsed();
    let Error::LockTimeout { waited, holder } = &error else {
        panic!("expected Error::LockTimeout, got {error:?}");
    };
    assert!(*waited >= Duration::from_millis(500), "{waited:?}");
    assert!(waited_for < Duration::from_millis(2000), "{waited_for:?}");
    let holder = holder.as_ref().expect("the holder is named");
    assert_eq!(holder.pid, pid);
    assert!(
        holder
            .query
            .as_deref()
            .is_some_and(|q| q.contains("pg_sleep")),
        "{holder:?}"
    );
    let message = error.to_string();
    assert!(message.contains(&format!("pid {pid}")), "{message}");
    assert_eq!(error.exit_code(), 5);

    let report = run_a.await.expect("task").expect("A finishes");
    assert_eq!(applied(&report), vec![1, 2]);
    assert_eq!(history(&client).await, vec![1, 2]);
}

/// Takes `ACCESS EXCLUSIVE` on `t` from another session; returns that session.
async fn lock_table(db: &pg_harness::TestDb) -> tokio_postgres::Client {
    let locker = db.client().await;
    locker
        .batch_execute("BEGIN; LOCK TABLE t IN ACCESS EXCLUSIVE MODE;")
        .await
        .expect("lock t");
    locker
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lock_timeout_is_retried_until_the_table_is_free() {
    let db = test_db("lock_timeout_retry").await;
    let client = db.client().await;
    client
        .batch_execute("CREATE TABLE t (id int)")
        .await
        .expect("t");
    let migrations = set(&[(1, "add_c", "ALTER TABLE t ADD COLUMN c int;")]);
    let locker = lock_table(&db).await;
    let release = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(1500)).await;
        locker.batch_execute("COMMIT").await.expect("release t");
        locker
    });
    let started = Instant::now();
    let report = Migrator::new(&migrations)
        .lock_timeout(Duration::from_millis(200))
        .lock_retries(10, Duration::from_millis(100))
        .run(&db.pool(1))
        .await
        .expect("succeeds after retries");
    let elapsed = started.elapsed();
    assert_eq!(applied(&report), vec![1]);
    assert!(
        elapsed >= Duration::from_millis(1000),
        "it had to wait for the lock: {elapsed:?}"
    );
    assert!(elapsed < Duration::from_secs(8), "{elapsed:?}");
    release.await.expect("release task");
    assert_eq!(
        number(
            &client,
            "SELECT count(*) FROM information_schema.columns WHERE table_name = 't' AND column_name = 'c'"
        )
        .await,
        1
    );
    assert_eq!(history(&client).await, vec![1]);
    assert_eq!(log(&client).await, vec![(1, "apply".to_owned())]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lock_timeout_without_retries_fails_and_applies_nothing() {
    let db = test_db("lock_timeout_no_retry").await;
    let client = db.client().await;
    client
        .batch_execute("CREATE TABLE t (id int)")
        .await
        .expect("t");
    let migrations = set(&[
        (1, "add_c", "ALTER TABLE t ADD COLUMN c int;"),
        (2, "d", "CREATE TABLE d (id int);"),
    ]);
    let locker = lock_table(&db).await;
    let started = Instant::now();
    let error = Migrator::new(&migrations)
        .lock_timeout(Duration::from_millis(200))
        .lock_retries(0, Duration::from_millis(100))
        .run(&db.pool(1))
        .await
        .expect_err("lock_timeout");
    assert!(started.elapsed() < Duration::from_secs(3));
    let Error::Migration(failure) = &error else {
        panic!("expected Error::Migration, got {error:?}");
    };
    assert_eq!(failure.version, 1);
    assert_eq!(failure.code.as_deref(), Some("55P03"));
    assert_eq!(error.code(), Some("55P03"));
    locker.batch_execute("COMMIT").await.expect("release t");

    assert_eq!(
        number(
            &client,
            "SELECT count(*) FROM information_schema.columns WHERE table_name = 't' AND column_name = 'c'"
        )
        .await,
        0
    );
    assert_eq!(history(&client).await, Vec::<i64>::new());
    assert!(!exists(&client, "d").await);
}
