//! Reliability (issue 6), through the library: the runner's backend terminated
//! (`pg_terminate_backend`) in the middle of a migration or while it waits for the lock.
//!
//! The long statement sleeps only for a session whose `application_name` is `slow`, so the
//! same migration (same checksum) runs quickly on the next run.

use std::sync::Arc;
use std::time::{Duration, Instant};

use pgratchet_harness::{test_db, TestDb};
use pgratchet_runtime::{Error, Migrator, Repair};

use crate::support::*;

const SLOW: &str =
    "SELECT pg_sleep(CASE WHEN current_setting('application_name') = 'slow' THEN 30 ELSE 0 END);";

/// `db` for sessions named `name` (`application_name`).
fn named(db: &TestDb, name: &str) -> TestDb {
    TestDb {
        name: db.name.clone(),
        url: format!("{}?application_name={name}", db.url),
    }
}

/// The backend pid of this database's session named `name`, once it sleeps in `pg_sleep`.
async fn sleeping(client: &tokio_postgres::Client, name: &str) -> i32 {
    wait_for(
        client,
        &format!(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database() \
             AND application_name = '{name}' AND wait_event = 'PgSleep' LIMIT 1"
        ),
        Duration::from_secs(20),
    )
    .await
    .parse()
    .expect("a pid")
}

/// The backend pid of this database's session named `name`.
async fn session(client: &tokio_postgres::Client, name: &str) -> i32 {
    wait_for(
        client,
        &format!(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database() \
             AND application_name = '{name}' LIMIT 1"
        ),
        Duration::from_secs(20),
    )
    .await
    .parse()
    .expect("a pid")
}

async fn terminate(client: &tokio_postgres::Client, pid: i32) {
    assert_eq!(
        scalar(client, &format!("SELECT pg_terminate_backend({pid})"))
            .await
            .as_deref(),
        Some("t")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn terminated_backends_give_clear_errors_and_leave_the_database_consistent() {
    let db = test_db("rel terminated tx").await;
    let client = db.client().await;
    let migrations = Arc::new(set(&[
        (1, "a", "CREATE TABLE a (id int);\nINSERT INTO a VALUES (1);"),
        (
            2,
            "slow",
            &format!("CREATE TABLE b (id int);\nINSERT INTO a VALUES (2);\n{SLOW}\nCREATE TABLE c (id int);"),
        ),
        (3, "d", "CREATE TABLE d (id int);"),
    ]));

    let holder = {
        let migrations = Arc::clone(&migrations);
        let pool = named(&db, "slow").pool(1);
        tokio::spawn(async move { migrations.run(&pool).await })
    };
    let holder_pid = sleeping(&client, "slow").await;

    // A second runner waits for the lock; its backend is terminated while it polls.
    let waiter = {
        let migrations = Arc::clone(&migrations);
        let pool = named(&db, "waiter").pool(1);
        tokio::spawn(async move { Migrator::new(&migrations).run(&pool).await })
    };
    let waiter_pid = session(&client, "waiter").await;
    // Let it reach the polling loop (its fast-path read found work to do).
    tokio::time::sleep(Duration::from_millis(300)).await;
    terminate(&client, waiter_pid).await;
    let error = tokio::time::timeout(Duration::from_secs(10), waiter)
        .await
        .expect("the waiter returns")
        .expect("task")
        .expect_err("the waiter lost its connection");
    let message = error.to_string();
    assert!(
        matches!(error, Error::Database { .. }) && message.contains("migration lock"),
        "{error:?}: {message}"
    );

    // Now the holder, in the middle of migration 2's transaction.
    terminate(&client, holder_pid).await;
    let error = tokio::time::timeout(Duration::from_secs(10), holder)
        .await
        .expect("the holder returns")
        .expect("task")
        .expect_err("the holder lost its connection");
    let Error::Migration(failure) = &error else {
        panic!("expected Error::Migration, got {error:?}");
    };
    assert_eq!((failure.version, failure.name.as_str()), (2, "slow"));
    assert_eq!(failure.code.as_deref(), Some("57P01"), "admin_shutdown");
    assert_eq!(failure.line, Some(3), "the pg_sleep line");
    assert!(!failure.no_transaction);
    let message = error.to_string();
    assert!(
        message.starts_with("migration 2 `slow` failed at 2_slow.sql line 3 (SQLSTATE 57P01)")
            && message.contains("rolled back and nothing of it was kept"),
        "{message}"
    );

    // Consistent: 1 complete, nothing of 2 (neither its row nor its statements), 3 not started.
    assert_eq!(history(&client).await, vec![1]);
    assert_eq!(log(&client).await, vec![(1, "apply".to_owned())]);
    assert_eq!(column(&client, "SELECT id FROM a ORDER BY id").await, ["1"]);
    for relation in ["b", "c", "d"] {
        assert!(!exists(&client, relation).await, "{relation} exists");
    }

    let started = Instant::now();
    let report = migrations.run(&db.pool(1)).await.expect("the next run");
    assert_eq!(applied(&report), vec![2, 3]);
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_eq!(history(&client).await, vec![1, 2, 3]);
    assert_eq!(
        column(&client, "SELECT id FROM a ORDER BY id").await,
        ["1", "2"]
    );
    for relation in ["b", "c", "d"] {
        assert!(exists(&client, relation).await, "{relation} missing");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn terminated_backend_during_a_no_transaction_migration_leaves_it_running_until_repaired() {
    let db = test_db("rel terminated nt").await;
    let client = db.client().await;
    let migrations = Arc::new(of(vec![
        mig(1, "a", "CREATE TABLE a (id int);"),
        mig_nt(
            2,
            "nt",
            &format!("CREATE TABLE nt_first (id int);\n{SLOW}\nCREATE TABLE nt_last (id int);"),
        ),
        mig(3, "after", "CREATE TABLE after3 (id int);"),
    ]));
    let run = {
        let migrations = Arc::clone(&migrations);
        let pool = named(&db, "slow").pool(1);
        tokio::spawn(async move { migrations.run(&pool).await })
    };
    let pid = sleeping(&client, "slow").await;
    terminate(&client, pid).await;
    let error = tokio::time::timeout(Duration::from_secs(10), run)
        .await
        .expect("the run returns")
        .expect("task")
        .expect_err("the run lost its connection");
    let Error::Migration(failure) = &error else {
        panic!("expected Error::Migration, got {error:?}");
    };
    assert_eq!((failure.version, failure.no_transaction), (2, true));
    assert_eq!(failure.code.as_deref(), Some("57P01"));
    let message = error.to_string();
    assert!(
        message.starts_with("migration 2 `nt` failed at 2_nt.sql line 3 (SQLSTATE 57P01)")
            && message.contains("run repair for version 2"),
        "{message}"
    );
    // The connection was gone, so the failure could not be recorded: the row says `running`,
    // and the message must not claim otherwise.
    assert!(
        !message.contains("recorded as failed") && message.contains("running"),
        "{message}"
    );

    assert_eq!(
        rows(
            &client,
            "SELECT version, state FROM schema_migrations ORDER BY version"
        )
        .await,
        vec![
            vec![Some("1".to_owned()), Some("applied".to_owned())],
            vec![Some("2".to_owned()), Some("running".to_owned())],
        ]
    );
    assert!(exists(&client, "nt_first").await);
    assert!(!exists(&client, "nt_last").await && !exists(&client, "after3").await);

    // The next run refuses, with the way out.
    let before = catalog(&client).await;
    let error = migrations
        .run(&db.pool(1))
        .await
        .expect_err("a running migration is refused");
    assert!(
        matches!(&error, Error::Running { version: 2, .. }),
        "{error:?}"
    );
    assert!(
        error.to_string().contains("run repair for version 2"),
        "{error}"
    );
    assert_eq!(catalog(&client).await, before);
    assert_eq!(history(&client).await, vec![1, 2]);

    // Undo what it left, repair, run.
    client
        .batch_execute("DROP TABLE nt_first")
        .await
        .expect("clean up");
    let repaired = Migrator::new(&migrations)
        .repair(&db.pool(1), &Repair::Versions(vec![2]))
        .await
        .expect("repair");
    assert!(repaired.invalid_indexes.is_empty(), "{repaired:?}");
    let report = migrations
        .run(&db.pool(1))
        .await
        .expect("the run after repair");
    assert_eq!(applied(&report), vec![2, 3]);
    assert_eq!(history(&client).await, vec![1, 2, 3]);
    for relation in ["nt_first", "nt_last", "after3"] {
        assert!(exists(&client, relation).await, "{relation} missing");
    }
}
