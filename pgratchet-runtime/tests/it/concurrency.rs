//! Many starters at once, and a starter killed mid-run.

use std::sync::Arc;
use std::time::{Duration, Instant};

use pgratchet_harness::test_db;
use pgratchet_runtime::{Migration, Migrations, Migrator};
use tokio::sync::Barrier;

use crate::support::*;

/// About 20 migrations: INSERTs (a double application would show), tables, and one
/// `CREATE INDEX CONCURRENTLY` in a no-transaction file.
fn busy_set() -> Migrations {
    let mut list: Vec<Migration> = vec![
        mig(1, "events", "CREATE TABLE events (n int NOT NULL);"),
        mig(2, "first_event", "INSERT INTO events VALUES (2);"),
    ];
    for version in 3..=20 {
        if version == 12 {
            list.push(mig_nt(
                version,
                "events_n_idx",
                "CREATE INDEX CONCURRENTLY events_n_idx ON events (n);",
            ));
        } else if version % 2 == 0 {
            list.push(mig(
                version,
                &format!("event_{version}"),
                &format!("INSERT INTO events VALUES ({version});"),
            ));
        } else {
            list.push(mig(
                version,
                &format!("table_{version}"),
                &format!("CREATE TABLE t_{version} (id int);"),
            ));
        }
    }
    of(list)
}

/// Starts `runs` runs of [`busy_set`] together (each with its own pool, like separate
/// replicas) and checks that every migration was applied exactly once.
async fn start_together(label: &str, runs: usize, transaction_pooler: bool) {
    let db = test_db(label).await;
    let migrations = Arc::new(busy_set());
    let barrier = Arc::new(Barrier::new(runs));
    let mut tasks = Vec::new();
    for _ in 0..runs {
        let migrations: Arc<Migrations> = Arc::clone(&migrations);
        let barrier = Arc::clone(&barrier);
        let pool = db.pool(1);
        tasks.push(tokio::spawn(async move {
            barrier.wait().await;
            Migrator::new(&migrations)
                .transaction_pooler(transaction_pooler)
                .run(&pool)
                .await
        }));
    }
    let started = Instant::now();
    let mut versions = Vec::new();
    for task in tasks {
        let report = task.await.expect("task").expect("every run succeeds");
        if !transaction_pooler {
            // Under the session lock nobody races: a run applies or finds it done.
            assert!(report.applied_by_others.is_empty());
        }
        versions.extend(applied(&report));
    }
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "took {:?}",
        started.elapsed()
    );
    versions.sort_unstable();
    assert_eq!(
        versions,
        (1..=20).collect::<Vec<_>>(),
        "the reports add up to each migration once"
    );

    let client = db.client().await;
    assert_eq!(history(&client).await, (1..=20).collect::<Vec<_>>());
    assert_eq!(
        column(&client, "SELECT DISTINCT state FROM schema_migrations").await,
        vec!["applied"]
    );
    let expected_events: Vec<String> = (2..=20)
        .filter(|v| v % 2 == 0 && *v != 12)
        .map(|v| v.to_string())
        .collect();
    assert_eq!(
        column(&client, "SELECT n FROM events ORDER BY n").await,
        expected_events,
        "each INSERT ran exactly once"
    );
    assert_eq!(
        log(&client).await.len(),
        20,
        "one log row per migration: {:?}",
        log(&client).await
    );
    assert_eq!(
        number(
            &client,
            "SELECT count(*) FROM schema_migrations_log WHERE action = 'apply'"
        )
        .await,
        20
    );
    assert_eq!(
        scalar(
            &client,
            "SELECT indisvalid FROM pg_index WHERE indexrelid = 'events_n_idx'::regclass"
        )
        .await
        .as_deref(),
        Some("t")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thirty_two_concurrent_runs_apply_each_migration_once() {
    start_together("thirty_two_runs", 32, false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_runs_behind_a_transaction_pooler_apply_each_migration_once() {
    // No session lock there: exactly-once rests on the history rows alone.
    start_together("pooler_runs", 8, true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_holder_does_not_block_the_next_run() {
    let db = test_db("killed_holder").await;
    let client = db.client().await;
    // The migration sleeps as long as `gate` says: long for the run that is killed, not at all
    // for the next one (its checksum stays the same).
    client
        .batch_execute("CREATE TABLE gate (seconds float8); INSERT INTO gate VALUES (30);")
        .await
        .expect("gate");
    let migrations = Arc::new(set(&[
        (1, "a", "CREATE TABLE a (id int);"),
        (
            2,
            "slow",
            "CREATE TABLE b (id int);\nSELECT pg_sleep(seconds) FROM gate;",
        ),
        (3, "c", "CREATE TABLE c (id int);"),
    ]));

    let run_a = {
        let migrations = Arc::clone(&migrations);
        let pool = db.pool(1);
        tokio::spawn(async move { migrations.run(&pool).await })
    };
    let pid = holder_running(&client, "pg_sleep(seconds)").await;
    // While it sleeps, nothing of migration 2 is visible.
    assert_eq!(history(&client).await, vec![1]);
    assert!(!exists(&client, "b").await);

    assert_eq!(
        scalar(&client, &format!("SELECT pg_terminate_backend({pid})"))
            .await
            .as_deref(),
        Some("t")
    );
    let result = tokio::time::timeout(Duration::from_secs(10), run_a)
        .await
        .expect("the killed run returns")
        .expect("task");
    assert!(result.is_err(), "{result:?}");
    assert_eq!(history(&client).await, vec![1], "nothing of 2 was recorded");
    assert!(!exists(&client, "b").await);
    assert_eq!(log(&client).await, vec![(1, "apply".to_owned())]);

    client
        .batch_execute("UPDATE gate SET seconds = 0")
        .await
        .expect("open the gate");
    let started = Instant::now();
    let report = migrations.run(&db.pool(1)).await.expect("the next run");
    assert_eq!(applied(&report), vec![2, 3]);
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "the next run waited {:?}",
        started.elapsed()
    );
    assert_eq!(history(&client).await, vec![1, 2, 3]);
    assert!(exists(&client, "b").await && exists(&client, "c").await);
}
