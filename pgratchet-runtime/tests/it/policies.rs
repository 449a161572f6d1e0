//! The rules of CONTRACT.md: unknown versions (newer release, removed file), out-of-order
//! pending migrations, and `status()`.

use pgratchet_harness::test_db;
use pgratchet_runtime::{Error, Migrator, State};

use crate::support::*;

const A: (i64, &str, &str) = (1, "a", "CREATE TABLE a (id int);");
const B: (i64, &str, &str) = (2, "b", "CREATE TABLE b (id int);");
const C: (i64, &str, &str) = (3, "c", "CREATE TABLE c (id int);");
const NEWER: (i64, &str, &str) = (10, "newer", "CREATE TABLE newer (id int);");

#[tokio::test]
async fn unknown_newer_version_warns_or_is_refused_when_strict() {
    let db = test_db("unknown_newer").await;
    let pool = db.pool(2);
    // A newer release ran first (rolling deploy).
    set(&[A, B, C, NEWER])
        .run(&pool)
        .await
        .expect("newer release");
    let client = db.client().await;
    let log_before = log(&client).await;

    let older = set(&[A, B, C]);
    let report = older.run(&pool).await.expect("older release goes on");
    assert!(report.applied.is_empty());
    assert_eq!(report.warnings.len(), 1, "{:?}", report.warnings);
    assert!(report.warnings[0].contains("10"), "{:?}", report.warnings);
    assert!(!report.took_lock);

    let error = Migrator::new(&older)
        .strict_unknown(true)
        .run(&pool)
        .await
        .expect_err("strict refuses");
    assert!(
        matches!(&error, Error::Unknown { version: 10, name } if name == "newer"),
        "{error:?}"
    );
    assert_eq!(history(&client).await, vec![1, 2, 3, 10]);
    assert_eq!(log(&client).await, log_before);

    // With something pending too, the warning comes with the run that applies it.
    let older_plus = set(&[A, B, C, (4, "d", "CREATE TABLE d (id int);")]);
    let error = older_plus.run(&pool).await.expect_err("4 is below 10");
    assert!(
        matches!(
            error,
            Error::OutOfOrder {
                version: 4,
                newest_applied: 10,
                ..
            }
        ),
        "{error:?}"
    );
    let report = Migrator::new(&older_plus)
        .allow_out_of_order(true)
        .run(&pool)
        .await
        .expect("allowed out of order");
    assert_eq!(applied(&report), vec![4]);
    assert_eq!(report.warnings.len(), 1, "{:?}", report.warnings);
}

#[tokio::test]
async fn removed_migration_is_refused() {
    let db = test_db("removed").await;
    let pool = db.pool(2);
    set(&[A, B, C]).run(&pool).await.expect("first run");
    let client = db.client().await;
    let error = set(&[A, C, (4, "d", "CREATE TABLE d (id int);")])
        .run(&pool)
        .await
        .expect_err("2 was removed");
    assert!(
        matches!(&error, Error::Removed { version: 2, name } if name == "b"),
        "{error:?}"
    );
    assert!(!exists(&client, "d").await);
    assert_eq!(history(&client).await, vec![1, 2, 3]);
}

#[tokio::test]
async fn pending_below_newest_applied_is_out_of_order() {
    let db = test_db("out_of_order").await;
    let pool = db.pool(2);
    set(&[A, C]).run(&pool).await.expect("first run");
    let client = db.client().await;
    let with_b = set(&[A, B, C]);

    let error = with_b.run(&pool).await.expect_err("2 is below 3");
    assert!(
        matches!(&error, Error::OutOfOrder { version: 2, newest_applied: 3, name } if name == "b"),
        "{error:?}"
    );
    assert!(!exists(&client, "b").await);
    assert_eq!(history(&client).await, vec![1, 3]);

    let report = Migrator::new(&with_b)
        .allow_out_of_order(true)
        .run(&pool)
        .await
        .expect("allowed");
    assert_eq!(applied(&report), vec![2]);
    assert!(exists(&client, "b").await);
    assert_eq!(history(&client).await, vec![1, 2, 3]);
    // Applied now, so the default runner is happy again.
    let report = with_b.run(&pool).await.expect("nothing pending");
    assert!(report.applied.is_empty());
}

#[tokio::test]
async fn status_reports_each_state_and_serializes() {
    let db = test_db("status").await;
    let pool = db.pool(2);
    let client = db.client().await;

    // Fresh database: all pending, nothing written.
    let status = Migrator::new(&set(&[A, B]))
        .status(&pool)
        .await
        .expect("status");
    assert_eq!(
        status.iter().map(|s| s.state).collect::<Vec<_>>(),
        vec![State::Pending, State::Pending]
    );
    assert!(!exists(&client, "schema_migrations").await);

    let report = set(&[A, B, NEWER]).run(&pool).await.expect("run");
    let report_json = serde_json::to_value(&report).expect("report as JSON");
    assert_eq!(report_json["applied"][0]["version"], 1);
    assert_eq!(report_json["applied"][2]["name"], "newer");
    assert_eq!(report_json["took_lock"], true);

    let current = set(&[A, (2, "b", "CREATE TABLE b (id int, x int);"), C]);
    let status = Migrator::new(&current)
        .status_client(&client)
        .await
        .expect("status");
    let states: Vec<(i64, State)> = status.iter().map(|s| (s.version, s.state)).collect();
    assert_eq!(
        states,
        vec![
            (1, State::Applied),
            (2, State::Modified),
            (3, State::Pending),
            (10, State::Unknown)
        ]
    );
    assert_eq!(status[0].checksum, status[0].applied_checksum);
    assert!(status[0].applied_at.is_some());
    assert_eq!(
        status[1].checksum.as_deref(),
        Some(current.get(2).expect("2").checksum())
    );
    assert_ne!(status[1].checksum, status[1].applied_checksum);
    assert_eq!(status[2].applied_checksum, None);
    assert_eq!(status[3].checksum, None);
    assert_eq!(status[3].name, "newer");

    let json = serde_json::to_value(&status).expect("status as JSON");
    let words: Vec<&str> = json
        .as_array()
        .expect("array")
        .iter()
        .map(|s| s["state"].as_str().expect("state word"))
        .collect();
    assert_eq!(words, vec!["applied", "modified", "pending", "unknown"]);
    assert_eq!(State::Modified.to_string(), "modified");
    assert_eq!(
        serde_json::to_value(State::Running).expect("json"),
        serde_json::json!("running")
    );
    assert_eq!(
        serde_json::to_value(State::Failed).expect("json"),
        serde_json::json!("failed")
    );

    // status() wrote nothing.
    assert_eq!(history(&client).await, vec![1, 2, 10]);
    assert!(!exists(&client, "c").await);
}
