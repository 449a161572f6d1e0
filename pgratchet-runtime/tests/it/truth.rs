//! Errors that tell the truth, and outcomes never dropped: empty statements, a failed history
//! record that is not tampering, a connection lost mid-commit, a failed unlock, and the INVALID
//! indexes a failed migration really left.

use std::sync::Arc;
use std::time::Duration;

use pgratchet_harness::test_db;
use pgratchet_runtime::{Error, Migrator};

use crate::support::*;

/// The server completes no command for an empty statement (`;;`, a lone `;`): counting them
/// dropped the migration from the report (its record row was read as another's) and blamed
/// errors on the statement before the failing one.
#[tokio::test]
async fn empty_statements_neither_hide_a_migration_nor_shift_an_error() {
    let db = test_db("truth empty statements").await;
    let client = db.client().await;
    let migrations = set(&[
        (
            1,
            "semicolons",
            "CREATE TABLE a (id int);;\n;\nCREATE TABLE b (id int);;",
        ),
        (2, "lone", ";"),
        (3, "c", "CREATE TABLE c (id int);"),
    ]);
    let report = migrations.run(&db.pool(1)).await.expect("run");
    assert_eq!(applied(&report), vec![1, 2, 3]);
    assert_eq!(history(&client).await, vec![1, 2, 3]);

    let failing = set(&[
        (
            1,
            "semicolons",
            "CREATE TABLE a (id int);;\n;\nCREATE TABLE b (id int);;",
        ),
        (2, "lone", ";"),
        (3, "c", "CREATE TABLE c (id int);"),
        (4, "broken", ";;\nSELECT 1;\n;\nSELECT 1 / 0;\nSELECT 2;"),
    ]);
    let error = failing.run(&db.pool(1)).await.expect_err("4 fails");
    let Error::Migration(failure) = &error else {
        panic!("expected Error::Migration, got {error:?}");
    };
    assert_eq!((failure.version, failure.line), (4, Some(4)), "{error}");
}

/// A history record that fails for a reason other than tampering (here a lock timeout, because
/// another session holds the history table) used to be reported as "the migration dropped or
/// changed the history table" and was never retried.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_history_record_that_times_out_is_retried_not_called_tampering() {
    let db = test_db("truth record timeout").await;
    let client = db.client().await;
    let migrations = Arc::new(set(&[
        (1, "a", "CREATE TABLE a (id int);"),
        (2, "b", "CREATE TABLE b (id int);"),
    ]));
    Migrator::new(&migrations)
        .target(1)
        .run(&db.pool(1))
        .await
        .expect("the history table");
    let holder = db.client().await;
    holder
        .batch_execute("BEGIN; LOCK TABLE schema_migrations IN SHARE MODE;")
        .await
        .expect("hold the history table");
    let run = {
        let migrations = Arc::clone(&migrations);
        let pool = db.pool(1);
        tokio::spawn(async move {
            Migrator::new(&migrations)
                .lock_timeout(Duration::from_millis(100))
                .lock_retries(20, Duration::from_millis(50))
                .run(&pool)
                .await
        })
    };
    tokio::time::sleep(Duration::from_millis(700)).await;
    holder.batch_execute("COMMIT").await.expect("release");
    let report = run
        .await
        .expect("task")
        .expect("retried until the table was free");
    assert_eq!(applied(&report), vec![2]);
    assert_eq!(history(&client).await, vec![1, 2]);
}

/// When the connection is lost with no error from the server, the server may have run the
/// COMMIT before it went: the runner cannot know, and must not claim "nothing of it was kept".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_lost_mid_batch_is_reported_as_an_unknown_outcome() {
    let db = test_db("truth lost connection").await;
    let client = db.client().await;
    let bouncer = transaction_pooler();
    let migrations = Arc::new(set(&[(
        1,
        "gated",
        "INSERT INTO gate VALUES (1);\nCREATE TABLE gated (id int);",
    )]));
    let gate = closed_gate(&db).await;
    let run = {
        let migrations = Arc::clone(&migrations);
        let pool = bouncer.through(&db).pool(1);
        tokio::spawn(async move {
            Migrator::new(&migrations)
                .transaction_pooler(true)
                .run(&pool)
                .await
        })
    };
    lock_waiters(&client, 1).await;
    // The pooler dies: the runner's connection ends without a word from the server.
    let killed = std::process::Command::new("kill")
        .args(["-9", &bouncer.pid().to_string()])
        .status()
        .expect("kill");
    assert!(killed.success());
    let error = run
        .await
        .expect("task")
        .expect_err("the connection is gone");
    let Error::OutcomeUnknown { versions, .. } = &error else {
        panic!("expected OutcomeUnknown, got {error:?}");
    };
    assert_eq!(versions, &[1]);
    let message = error.to_string();
    assert!(
        message.contains("may or may not have been committed")
            && message.contains("schema_migrations")
            && !message.contains("nothing of it was kept"),
        "{message}"
    );
    // The server does not know yet that its client is gone: once the gate opens, its backend
    // may go on with the batch it already received and commit it (it notices within the
    // connection check interval), or not. Whichever happened, the next run finds out by itself
    // and the migration is applied exactly once.
    open_gate(&gate).await;
    let report = migrations.run(&db.pool(1)).await.expect("the next run");
    assert!(applied(&report).len() <= 1, "{report:?}");
    assert_eq!(history(&client).await, vec![1]);
    assert_eq!(number(&client, "SELECT count(*) FROM gate").await, 1);
}

/// The unlock at the end of a run that did its work failed (here: the database's
/// `pg_advisory_unlock` raises), and that used to turn the run into an error and drop its
/// report; closing the connection releases the lock anyway.
#[tokio::test]
async fn a_failed_unlock_does_not_undo_a_successful_run() {
    let db = test_db("truth failed unlock").await;
    let client = db.client().await;
    client
        .batch_execute(&format!(
            "CREATE SCHEMA refuse;\n\
             CREATE FUNCTION refuse.pg_advisory_unlock(bigint) RETURNS boolean LANGUAGE plpgsql \
             AS $$BEGIN RAISE EXCEPTION 'unlock refused'; END$$;\n\
             ALTER DATABASE \"{}\" SET search_path = refuse, pg_catalog, public;",
            db.name
        ))
        .await
        .expect("an unlock that fails");
    let migrations = set(&[(1, "a", "CREATE TABLE public.a (id int);")]);
    let report = Migrator::new(&migrations)
        .schema("public")
        .run(&db.pool(1))
        .await
        .expect("the run did its work");
    assert_eq!(applied(&report), vec![1]);
    wait_for(
        &client,
        "SELECT 1 WHERE NOT EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory')",
        Duration::from_secs(10),
    )
    .await;
}

/// An index expression slow enough to watch another session build it.
const SLOW_ID: &str = "CREATE FUNCTION slow_id(x int) RETURNS int LANGUAGE plpgsql IMMUTABLE AS \
                       $$BEGIN PERFORM pg_sleep(0.2); RETURN x; END$$";

/// The INVALID-index hint used to list every INVALID index in the database: one left by an old
/// failure elsewhere, and one that another session is building right now (dropping that one
/// would break someone else's work). It names only those the failed migration left. (An index
/// another session starts building while the migration runs is named apart, as possibly in
/// progress: see `apply::left_behind`'s unit test.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_index_build_names_only_its_own_invalid_index() {
    let db = test_db("truth invalid indexes").await;
    let client = db.client().await;
    client
        .batch_execute(&format!(
            "CREATE TABLE dup (v int);\nINSERT INTO dup VALUES (1), (1);\n\
             CREATE TABLE old (v int);\nINSERT INTO old VALUES (1), (1);\n\
             CREATE TABLE busy (v int);\nINSERT INTO busy SELECT generate_series(1, 30);\n{SLOW_ID};"
        ))
        .await
        .expect("tables");
    // An INVALID index from an old failure.
    let _ = client
        .batch_execute("CREATE UNIQUE INDEX CONCURRENTLY old_v ON old (v)")
        .await
        .expect_err("duplicates");
    // Another session builds an index concurrently (INVALID until it is done).
    let builder = db.client().await;
    let building = tokio::spawn(async move {
        builder
            .batch_execute("CREATE INDEX CONCURRENTLY busy_v ON busy (slow_id(v))")
            .await
    });
    wait_for(
        &client,
        "SELECT 1 FROM pg_stat_progress_create_index WHERE phase LIKE 'building%'",
        Duration::from_secs(20),
    )
    .await;

    let migrations = of(vec![mig_nt(
        1,
        "dup_v",
        "CREATE UNIQUE INDEX CONCURRENTLY dup_v ON dup (v);",
    )]);
    let error = migrations.run(&db.pool(1)).await.expect_err("duplicates");
    let Error::Migration(failure) = &error else {
        panic!("expected Error::Migration, got {error:?}");
    };
    assert_eq!(failure.invalid_indexes, ["dup_v"], "{error}");
    // busy_v was INVALID before the migration started: not its own (and in progress).
    assert!(failure.indexes_in_progress.is_empty(), "{error}");
    let message = error.to_string();
    assert!(
        message.contains("INVALID indexes left behind: dup_v (")
            && !message.contains("old_v")
            && !message.contains("busy_v"),
        "{message}"
    );
    building.await.expect("task").expect("the other build ends");
}
