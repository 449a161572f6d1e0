//! Migrations that fail, and states that make a run refuse: nothing half-done, errors that point
//! at the file's line, failed and running no-transaction migrations.

use std::time::Duration;

use pgratchet_harness::test_db;
use pgratchet_runtime::{Error, Migrator};

use crate::support::*;

#[tokio::test]
async fn failing_migration_keeps_earlier_ones_and_nothing_of_itself() {
    let db = test_db("failing_middle").await;
    // One connection: the next run must not find it holding the lock (sqlx#1871).
    let pool = db.pool(1);
    let broken = set(&[
        (1, "create_a", "CREATE TABLE a (id int);"),
        (
            2,
            "create_b",
            "CREATE TABLE b (id int);\nSELECT * FROM nope;",
        ),
        (3, "create_c", "CREATE TABLE c (id int);"),
    ]);
    let error = broken.run(&pool).await.expect_err("migration 2 fails");
    let Error::Migration(failure) = &error else {
        panic!("expected Error::Migration, got {error:?}");
    };
    assert_eq!(failure.version, 2);
    assert_eq!(failure.name, "create_b");
    assert_eq!(failure.file, "2_create_b.sql");
    assert_eq!(failure.line, Some(2));
    assert_eq!(failure.code.as_deref(), Some("42P01"));
    assert!(!failure.no_transaction);
    assert_eq!(
        error.code().map(tokio_postgres::error::SqlState::code),
        Some("42P01")
    );
    let message = error.to_string();
    assert!(message.contains("2_create_b.sql line 2"), "{message}");
    assert!(message.contains("rolled back"), "{message}");
    assert!(std::error::Error::source(&error).is_some());
    let json = serde_json::to_value(&error).expect("error as JSON");
    assert_eq!(json["code"], "42P01");

    let client = db.client().await;
    assert!(exists(&client, "a").await);
    assert!(
        !exists(&client, "b").await,
        "nothing of migration 2 is kept"
    );
    assert!(!exists(&client, "c").await, "migration 3 never ran");
    assert_eq!(history(&client).await, vec![1]);
    assert_eq!(log(&client).await, vec![(1, "apply".to_owned())]);
    // The lock went with the failed run's connection, which was closed, not pooled.
    wait_for(
        &client,
        "SELECT 1 WHERE NOT EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory')",
        Duration::from_secs(10),
    )
    .await;
    assert_eq!(
        pool.status().size,
        0,
        "the failed run's connection left the pool"
    );

    // Fixed file: the same pool (of one connection) works, and 2 and 3 are applied.
    let fixed = set(&[
        (1, "create_a", "CREATE TABLE a (id int);"),
        (2, "create_b", "CREATE TABLE b (id int);"),
        (3, "create_c", "CREATE TABLE c (id int);"),
    ]);
    let report = fixed.run(&pool).await.expect("fixed run");
    assert_eq!(applied(&report), vec![2, 3]);
    assert_eq!(history(&client).await, vec![1, 2, 3]);
}

#[tokio::test]
async fn runtime_error_without_position_points_at_the_statement() {
    let db = test_db("error_no_position").await;
    let pool = db.pool(1);
    let migrations = set(&[
        (1, "create_a", "CREATE TABLE a (id int);"),
        (
            2,
            "raise",
            "CREATE TABLE b (id int);\n\
             -- a comment line\n\
             DO $$ BEGIN RAISE EXCEPTION 'boom; really'; END $$;\n\
             CREATE TABLE c (id int);",
        ),
    ]);
    let error = migrations.run(&pool).await.expect_err("migration 2 fails");
    let Error::Migration(failure) = &error else {
        panic!("expected Error::Migration, got {error:?}");
    };
    assert_eq!(failure.version, 2);
    assert_eq!(failure.line, Some(3));
    assert_eq!(failure.code.as_deref(), Some("P0001"));
    assert!(
        failure.source.to_string().contains("boom; really")
            || format!("{:?}", failure.source).contains("boom; really"),
        "{:?}",
        failure.source
    );
    let client = db.client().await;
    assert_eq!(history(&client).await, vec![1]);
    assert!(!exists(&client, "b").await);
    assert!(!exists(&client, "c").await);
}

#[tokio::test]
async fn error_line_in_a_multi_line_statement() {
    let db = test_db("error_multi_line").await;
    let pool = db.pool(1);
    let migrations = set(&[(
        1,
        "multi",
        "CREATE TABLE a (\n  id int\n);\nINSERT INTO a (id)\nSELECT id\nFROM missing_table;\n",
    )]);
    let error = migrations.run(&pool).await.expect_err("fails");
    let Error::Migration(failure) = &error else {
        panic!("expected Error::Migration, got {error:?}");
    };
    assert_eq!(
        failure.line,
        Some(6),
        "the position PostgreSQL gives, as a line of the file"
    );
    assert_eq!(failure.code.as_deref(), Some("42P01"));
    let client = db.client().await;
    assert!(!exists(&client, "a").await);
    assert_eq!(history(&client).await, Vec::<i64>::new());
}

#[tokio::test]
async fn modified_migration_is_refused_and_nothing_changes() {
    let db = test_db("modified").await;
    let pool = db.pool(2);
    let original = set(&[
        (1, "a", "CREATE TABLE a (id int);"),
        (2, "b", "CREATE TABLE b (id int);"),
    ]);
    original.run(&pool).await.expect("first run");
    let edited = set(&[
        (1, "a", "CREATE TABLE a (id int);"),
        (2, "b", "CREATE TABLE b (id int, extra int);"),
        (3, "c", "CREATE TABLE c (id int);"),
    ]);
    let client = db.client().await;
    let before = rows(&client, "SELECT * FROM schema_migrations ORDER BY version").await;
    let log_before = log(&client).await;

    let error = edited.run(&pool).await.expect_err("edited file refused");
    let Error::Modified {
        version,
        name,
        applied,
        current,
    } = &error
    else {
        panic!("expected Error::Modified, got {error:?}");
    };
    assert_eq!((*version, name.as_str()), (2, "b"));
    assert_eq!(applied, original.get(2).expect("2").checksum());
    assert_eq!(current, edited.get(2).expect("2").checksum());
    assert_ne!(applied, current);
    let message = error.to_string();
    assert!(message.contains(applied.as_str()) && message.contains(current.as_str()));

    assert!(
        !exists(&client, "c").await,
        "the pending migration after it is not applied"
    );
    assert_eq!(
        rows(&client, "SELECT * FROM schema_migrations ORDER BY version").await,
        before
    );
    assert_eq!(log(&client).await, log_before);
    assert_eq!(
        number(
            &client,
            "SELECT count(*) FROM information_schema.columns WHERE table_name = 'b'"
        )
        .await,
        1
    );
}

#[tokio::test]
async fn running_row_is_refused() {
    let db = test_db("running_row").await;
    let pool = db.pool(2);
    let first = set(&[(1, "a", "CREATE TABLE a (id int);")]);
    first.run(&pool).await.expect("first run");
    let client = db.client().await;
    client
        .batch_execute(
            "INSERT INTO schema_migrations (version, name, checksum, state) \
             VALUES (2, 'a_idx', 'abc', 'running')",
        )
        .await
        .expect("insert a running row");
    let migrations = of(vec![
        mig(1, "a", "CREATE TABLE a (id int);"),
        mig_nt(2, "a_idx", "CREATE INDEX CONCURRENTLY a_idx ON a (id);"),
        mig(3, "b", "CREATE TABLE b (id int);"),
    ]);
    let error = migrations.run(&pool).await.expect_err("running refused");
    let Error::Running { version, name } = &error else {
        panic!("expected Error::Running, got {error:?}");
    };
    assert_eq!((*version, name.as_str()), (2, "a_idx"));
    assert!(error.to_string().contains("repair"), "{error}");
    assert!(!exists(&client, "a_idx").await);
    assert!(!exists(&client, "b").await);
    assert_eq!(
        column(
            &client,
            "SELECT state FROM schema_migrations ORDER BY version"
        )
        .await,
        vec!["applied", "running"]
    );
}

#[tokio::test]
async fn failed_no_transaction_migration_is_recorded_and_refused_later() {
    let db = test_db("failed_no_tx").await;
    let pool = db.pool(1);
    let migrations = of(vec![
        mig(
            1,
            "dup",
            "CREATE TABLE dup (v int);\nINSERT INTO dup VALUES (1), (1), (2);",
        ),
        // Lines: 1 is the directive, 2 the CREATE TABLE, 3 the index.
        mig_nt(
            2,
            "dup_v_key",
            "CREATE TABLE before_idx (id int);\nCREATE UNIQUE INDEX CONCURRENTLY dup_v_key ON dup (v);\n",
        ),
        mig(3, "after", "CREATE TABLE after_idx (id int);"),
    ]);
    let error = migrations
        .run(&pool)
        .await
        .expect_err("the unique index fails");
    let Error::Migration(failure) = &error else {
        panic!("expected Error::Migration, got {error:?}");
    };
    assert_eq!(failure.version, 2);
    assert!(failure.no_transaction);
    assert_eq!(failure.code.as_deref(), Some("23505"));
    assert_eq!(failure.line, Some(3));
    assert!(
        failure
            .invalid_indexes
            .iter()
            .any(|index| index == "dup_v_key"),
        "{:?}",
        failure.invalid_indexes
    );
    let message = error.to_string();
    assert!(message.contains("dup_v_key"), "{message}");
    assert!(message.contains("repair"), "{message}");

    let client = db.client().await;
    assert!(
        exists(&client, "before_idx").await,
        "statements before the failing one are kept outside a transaction"
    );
    assert!(!exists(&client, "after_idx").await);
    assert_eq!(
        scalar(
            &client,
            "SELECT indisvalid FROM pg_index WHERE indexrelid = 'dup_v_key'::regclass"
        )
        .await
        .as_deref(),
        Some("f")
    );
    let recorded = rows(
        &client,
        "SELECT version, state, error FROM schema_migrations ORDER BY version",
    )
    .await;
    assert_eq!(recorded.len(), 2);
    assert_eq!(recorded[1][0].as_deref(), Some("2"));
    assert_eq!(recorded[1][1].as_deref(), Some("failed"));
    let recorded_error = recorded[1][2].clone().expect("error text recorded");
    assert!(recorded_error.contains("23505"), "{recorded_error}");
    assert_eq!(
        log(&client).await,
        vec![(1, "apply".to_owned()), (2, "fail".to_owned())]
    );

    // Refused until repaired, also on the next start.
    let error = migrations.run(&pool).await.expect_err("failed refused");
    let Error::Failed {
        version,
        error: recorded,
        ..
    } = &error
    else {
        panic!("expected Error::Failed, got {error:?}");
    };
    assert_eq!(*version, 2);
    assert_eq!(recorded.as_deref(), Some(recorded_error.as_str()));
    assert!(!exists(&client, "after_idx").await);
}

#[tokio::test]
async fn history_table_dropped_by_a_migration_is_rolled_back() {
    let db = test_db("history_tampered").await;
    let pool = db.pool(1);
    let migrations = set(&[
        (1, "a", "CREATE TABLE a (id int);"),
        (
            2,
            "evil",
            "CREATE TABLE b (id int);\nDROP TABLE schema_migrations;",
        ),
    ]);
    let error = migrations.run(&pool).await.expect_err("tampering refused");
    let Error::HistoryTampered { version, name } = &error else {
        panic!("expected Error::HistoryTampered, got {error:?}");
    };
    assert_eq!((*version, name.as_str()), (2, "evil"));
    let client = db.client().await;
    assert!(exists(&client, "public.schema_migrations").await);
    assert_eq!(history(&client).await, vec![1]);
    assert!(!exists(&client, "b").await);

    // The log entry is the second statement of the record: dropping the log is caught too.
    let migrations = set(&[
        (1, "a", "CREATE TABLE a (id int);"),
        (
            2,
            "evil",
            "CREATE TABLE b (id int);\nDROP TABLE schema_migrations_log;",
        ),
    ]);
    let error = migrations.run(&pool).await.expect_err("tampering refused");
    assert!(
        matches!(error, Error::HistoryTampered { version: 2, .. }),
        "{error:?}"
    );
    assert!(exists(&client, "public.schema_migrations_log").await);
    assert_eq!(history(&client).await, vec![1]);
    assert!(!exists(&client, "b").await);

    // Behind a transaction pooler the row is inserted first, so deleting the rows removes it
    // too: caught and rolled back.
    let migrations = set(&[
        (1, "a", "CREATE TABLE a (id int);"),
        (
            2,
            "evil",
            "CREATE TABLE b (id int);\nDELETE FROM schema_migrations;",
        ),
    ]);
    let error = Migrator::new(&migrations)
        .transaction_pooler(true)
        .run(&pool)
        .await
        .expect_err("tampering refused");
    assert!(
        matches!(error, Error::HistoryTampered { version: 2, .. }),
        "{error:?}"
    );
    assert_eq!(history(&client).await, vec![1]);
    assert!(!exists(&client, "b").await);
    assert_eq!(log(&client).await, vec![(1, "apply".to_owned())]);

    // Under the session lock the row is recorded after the migration, so deleting earlier rows
    // is not seen by that run; the next run refuses the damaged history instead of re-applying.
    migrations
        .run(&pool)
        .await
        .expect("the deletion itself goes unseen");
    assert_eq!(history(&client).await, vec![2]);
    let error = migrations
        .run(&pool)
        .await
        .expect_err("damaged history refused");
    assert!(
        matches!(error, Error::OutOfOrder { version: 1, .. }),
        "{error:?}"
    );
}

#[tokio::test]
async fn syntax_error_is_the_migrations_with_its_line() {
    // PostgreSQL parses a whole batch before running any of it, so a syntax error completes no
    // statement at all: it must still be reported as the migration's, at its line.
    let db = test_db("syntax_error").await;
    let pool = db.pool(1);
    let migrations = set(&[
        (1, "users", "CREATE TABLE users (id bigint);"),
        (
            2,
            "email",
            "-- adds emails\nALTER TABLE users ADD COLUMN email text;\nCREATE UNIQUE INDEX users_email ON user (email);",
        ),
    ]);
    let error = migrations.run(&pool).await.expect_err("syntax error");
    let Error::Migration(failure) = &error else {
        panic!("expected Error::Migration, got {error:?}");
    };
    assert_eq!(
        (failure.version, failure.line, failure.code.as_deref()),
        (2, Some(3), Some("42601"))
    );
    let client = db.client().await;
    assert_eq!(history(&client).await, vec![1]);
    assert_eq!(
        number(
            &client,
            "SELECT count(*) FROM information_schema.columns WHERE column_name = 'email'"
        )
        .await,
        0
    );
    // Grouped: the position still names the right migration of the group.
    let db = test_db("syntax_error_grouped").await;
    let error = Migrator::new(&migrations)
        .grouped(true)
        .run(&db.pool(1))
        .await
        .expect_err("syntax error");
    let Error::Migration(failure) = &error else {
        panic!("expected Error::Migration, got {error:?}");
    };
    assert_eq!((failure.version, failure.line), (2, Some(3)));
    assert!(history(&db.client().await).await.is_empty());
}
