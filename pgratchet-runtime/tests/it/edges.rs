//! Edges of the public API: sets built in code, version 0, redo with a schema, a pool of no
//! connections, history tables whose names could share a lock key.

use std::sync::Arc;
use std::time::{Duration, Instant};

use pgratchet_harness::test_db;
use pgratchet_runtime::{Error, Migration, Migrations, Migrator, Rollback, Script};

use crate::support::*;

/// `Migrations::new` used to skip every check of the loader: a transactional script with a
/// `COMMIT;` committed half a migration (the history row after it failing on its own). It now
/// makes the loader's checks, and nothing reaches the database.
#[tokio::test]
async fn a_set_built_in_code_gets_the_loaders_checks() {
    let db = test_db("edges set in code").await;
    let client = db.client().await;
    let before = catalog(&client).await;
    let built = |version: i64, name: &str, sql: &str, no_transaction: bool| {
        Migration::new(
            version,
            name.to_owned(),
            Script::new(
                format!("{version}_{name}.sql"),
                sql.to_owned(),
                no_transaction,
            ),
            None,
        )
    };
    for (label, migration, expect) in [
        (
            "commit",
            built(
                1,
                "half",
                "CREATE TABLE a (id int);\nCOMMIT;\nCREATE TABLE b (id int);",
                false,
            ),
            "`COMMIT` would control the transaction",
        ),
        (
            "concurrently",
            built(1, "idx", "CREATE INDEX CONCURRENTLY i ON t (id);", false),
            "cannot run inside a transaction block",
        ),
        (
            "flag without directive",
            built(1, "idx", "CREATE INDEX CONCURRENTLY i ON t (id);", true),
            "no_transaction = true, but its directives say false",
        ),
        (
            "bad name",
            built(1, "two words", "SELECT 1;", false),
            "space",
        ),
        ("empty", built(1, "empty", "  \n", false), "is empty"),
    ] {
        let error = Migrations::new(vec![migration]).expect_err(label);
        let Error::Load(problems) = &error else {
            panic!("{label}: expected Error::Load, got {error:?}");
        };
        assert!(
            problems
                .iter()
                .any(|problem| problem.message.contains(expect)),
            "{label}: {problems:?}"
        );
    }
    assert_eq!(catalog(&client).await, before);
}

/// Version 0 is a valid version, but `Rollback::To(0)` (and `to 0`) keep it: rolling back
/// everything needs `Rollback::All`.
#[tokio::test]
async fn version_zero_is_rolled_back_with_all() {
    let db = test_db("edges version zero").await;
    let client = db.client().await;
    let pool = db.pool(1);
    let reversible = |version: i64, table: &str| {
        Migration::new(
            version,
            table.to_owned(),
            Script::new(
                format!("{version}_{table}.up.sql"),
                format!("CREATE TABLE {table} (id int);"),
                false,
            ),
            Some(Script::new(
                format!("{version}_{table}.down.sql"),
                format!("DROP TABLE {table};"),
                false,
            )),
        )
    };
    let migrations = of(vec![reversible(0, "zero"), reversible(1, "one")]);
    migrations.run(&pool).await.expect("up");
    let report = Migrator::new(&migrations)
        .down(&pool, Rollback::To(0))
        .await
        .expect("down to 0");
    assert_eq!(rolled_back(&report), vec![1]);
    assert_eq!(history(&client).await, vec![0]);
    let report = Migrator::new(&migrations)
        .down(&pool, Rollback::All)
        .await
        .expect("down all");
    assert_eq!(rolled_back(&report), vec![0]);
    assert_eq!(history(&client).await, Vec::<i64>::new());
    assert!(!exists(&client, "zero").await);
}

/// With a configured schema, the runner creates that schema at the first up; redo compared the
/// schema before it (no such schema) with the one after the down and reported a false mismatch.
#[tokio::test]
async fn redo_with_a_configured_schema_finds_no_false_mismatch() {
    let db = test_db("edges redo schema").await;
    let migrations = of(vec![Migration::new(
        1,
        "a".to_owned(),
        Script::new("1_a.up.sql", "CREATE TABLE a (id int);", false),
        Some(Script::new("1_a.down.sql", "DROP TABLE a;", false)),
    )]);
    let redo = Migrator::new(&migrations)
        .schema("ops")
        .redo(&db.pool(1))
        .await
        .expect("redo");
    assert!(redo.is_ok(), "{redo:?}");
    assert_eq!(redo.restored, vec![1]);
}

/// A pool of no connections never hands one out: `connect(url, 0)` waited forever.
#[tokio::test]
async fn a_pool_of_no_connections_is_refused() {
    let db = test_db("edges pool size").await;
    let started = Instant::now();
    let error = tokio::time::timeout(
        Duration::from_secs(10),
        pgratchet_runtime::connect(&db.url, 0),
    )
    .await
    .expect("returns at once")
    .expect_err("refused");
    assert!(
        matches!(
            error,
            Error::InvalidSetting {
                name: "max_size",
                ..
            }
        ),
        "{error:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(1));
}

/// `("a.b", "c")` and `("a", "b.c")` are different tables, but their lock keys were computed
/// from the same text `a.b.c`: one service waited for the other's lock.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tables_whose_dotted_names_read_alike_do_not_share_a_lock() {
    let db = test_db("edges lock key").await;
    let client = db.client().await;
    let slow = Arc::new(set(&[(1, "slow", "INSERT INTO gate VALUES (1);")]));
    let gate = closed_gate(&db).await;
    let holder = {
        let slow = Arc::clone(&slow);
        let pool = db.pool(1);
        tokio::spawn(async move {
            Migrator::new(&slow)
                .schema("a.b")
                .table("c")
                .run(&pool)
                .await
        })
    };
    lock_waiters(&client, 1).await;
    let other = set(&[(1, "quick", "SELECT 1;")]);
    let report = Migrator::new(&other)
        .schema("a")
        .table("b.c")
        .lock_wait_timeout(Duration::from_millis(500))
        .run(&db.pool(1))
        .await
        .expect("not blocked by the other table's lock");
    assert_eq!(applied(&report), vec![1]);
    open_gate(&gate).await;
    holder.await.expect("task").expect("the holder finishes");
}
