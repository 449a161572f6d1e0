//! Behind a real transaction-pooling PgBouncer (`.transaction_pooler(true)`), where there is no
//! session lock: exactly once rests on the history row each migration inserts first, in its own
//! transaction. Rolling deploys, concurrent starters with timeouts, a repair run meanwhile, and
//! session state that a pooler would leak.

use std::sync::Arc;
use std::time::Duration;

use pgratchet_harness::test_db;
use pgratchet_runtime::{Error, Migrations, Migrator, Repair};

use crate::support::*;

/// A pooler-mode run of `migrations` through `url`'s database, on a pool of its own.
fn spawn_run(
    migrations: &Arc<Migrations>,
    db: &pgratchet_harness::TestDb,
    configure: fn(Migrator<'_>) -> Migrator<'_>,
) -> tokio::task::JoinHandle<Result<pgratchet_runtime::Report, Error>> {
    let migrations = Arc::clone(migrations);
    let pool = db.pool(1);
    tokio::spawn(async move {
        configure(Migrator::new(&migrations).transaction_pooler(true))
            .run(&pool)
            .await
    })
}

/// Rolling deploy of grouped runs: the old release's group is [5], the new one's [5, 6]. The new
/// starter blocks on 5's history row, which the old one then commits: only 5 was applied by
/// someone else, so the new starter must go on with 6 (it used to return Ok with 6 skipped).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grouped_runs_in_a_rolling_deploy_apply_what_the_other_starter_did_not() {
    let db = test_db("pooler grouped rolling").await;
    let client = db.client().await;
    let bouncer = transaction_pooler();
    let through = bouncer.through(&db);
    let five = "INSERT INTO gate VALUES (5);\nCREATE TABLE five (id int);";
    let old = Arc::new(set(&[(5, "five", five)]));
    let new = Arc::new(set(&[
        (5, "five", five),
        (6, "six", "CREATE TABLE six (id int);"),
    ]));

    let gate = closed_gate(&db).await;
    let old_run = spawn_run(&old, &through, |m| m.grouped(true));
    lock_waiters(&client, 1).await;
    let new_run = spawn_run(&new, &through, |m| m.grouped(true));
    lock_waiters(&client, 2).await;
    open_gate(&gate).await;

    let old_report = old_run.await.expect("task").expect("the old release");
    assert_eq!(applied(&old_report), vec![5]);
    let new_report = new_run.await.expect("task").expect("the new release");
    assert_eq!(applied(&new_report), vec![6], "{new_report:?}");
    assert_eq!(new_report.applied_by_others, vec![5]);
    assert_eq!(history(&client).await, vec![5, 6]);
    assert!(exists(&client, "five").await && exists(&client, "six").await);
    assert_eq!(number(&client, "SELECT count(*) FROM gate").await, 1);
}

/// A no-transaction migration runs long behind the pooler; a second starter gives up waiting
/// for it (and must say that it may still be in progress, not that its process died); an
/// operator runs repair, which takes no lock there and removes the `running` row. When the
/// migration then ends, its runner must not report it applied with no history row (the next
/// start would apply it again): it fails loudly and records it as failed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_running_row_removed_by_a_repair_meanwhile_is_not_reported_applied() {
    let db = test_db("pooler running removed").await;
    let client = db.client().await;
    let bouncer = transaction_pooler();
    let through = bouncer.through(&db);
    let migrations = Arc::new(of(vec![
        mig(1, "a", "CREATE TABLE a (id int);"),
        mig_nt(2, "slow", "SELECT count(*) FROM gate;"),
    ]));

    let gate = closed_gate(&db).await;
    let first = spawn_run(&migrations, &through, |m| m);
    lock_waiters(&client, 1).await;
    assert_eq!(
        column(
            &client,
            "SELECT state FROM schema_migrations ORDER BY version"
        )
        .await,
        ["applied", "running"]
    );

    let error = Migrator::new(&migrations)
        .transaction_pooler(true)
        .lock_wait_timeout(Duration::from_millis(500))
        .run(&through.pool(1))
        .await
        .expect_err("the second starter gives up waiting");
    assert!(
        matches!(error, Error::StillRunning { version: 2, .. }),
        "{error:?}"
    );
    let message = error.to_string();
    assert!(
        message.contains("may still be in progress") && message.contains("pg_stat_activity"),
        "{message}"
    );

    let repaired = Migrator::new(&migrations)
        .transaction_pooler(true)
        .repair(&through.pool(1), &Repair::Versions(vec![2]))
        .await
        .expect("repair");
    assert_eq!(repaired.cleared.len(), 1);
    open_gate(&gate).await;

    let error = first
        .await
        .expect("task")
        .expect_err("the first starter must not report 2 as applied");
    assert!(
        matches!(error, Error::RecordRemoved { version: 2, .. }),
        "{error:?}"
    );
    assert!(error.to_string().contains("removed"), "{error}");
    assert_eq!(
        rows(
            &client,
            "SELECT state, error IS NOT NULL FROM schema_migrations WHERE version = 2"
        )
        .await,
        vec![vec![Some("failed".to_owned()), Some("t".to_owned())]]
    );
    // The next start refuses instead of applying it a second time.
    let error = migrations
        .run(&db.pool(1))
        .await
        .expect_err("a failed migration is refused");
    assert!(
        matches!(error, Error::Failed { version: 2, .. }),
        "{error:?}"
    );
}

/// With the README's `lock_timeout(500 ms)`, a starter that waits on another's history row (the
/// pooler's stand-in for the lock) must wait for it, not fail after 500 ms: the insert runs with
/// the lock-wait timeout, and the migration's own statements with `lock_timeout`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_short_lock_timeout_does_not_fail_a_starter_waiting_on_the_history_row() {
    let db = test_db("pooler lock timeout").await;
    let client = db.client().await;
    let bouncer = transaction_pooler();
    let through = bouncer.through(&db);
    let migrations = Arc::new(set(&[(
        1,
        "gated",
        "INSERT INTO gate VALUES (1);\nCREATE TABLE gated (id int);",
    )]));

    let gate = closed_gate(&db).await;
    let first = spawn_run(&migrations, &through, |m| m);
    lock_waiters(&client, 1).await;
    let second = spawn_run(&migrations, &through, |m| {
        m.lock_timeout(Duration::from_millis(500))
            .lock_retries(0, Duration::ZERO)
    });
    lock_waiters(&client, 2).await;
    // Well past the second starter's lock_timeout.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    open_gate(&gate).await;

    let report = first.await.expect("task").expect("the first starter");
    assert_eq!(applied(&report), vec![1]);
    let report = second
        .await
        .expect("task")
        .expect("the second starter waits");
    assert!(report.applied.is_empty(), "{report:?}");
    assert_eq!(report.applied_by_others, vec![1]);
    assert_eq!(number(&client, "SELECT count(*) FROM gate").await, 1);
}

/// Behind a pooler, each statement of a no-transaction file may run on another server
/// connection, so a session `SET` there leaks to the pooler's other clients (`SET ROLE` hands
/// the next one a privilege) and cannot be undone. Such a file is refused before anything runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_no_transaction_file_that_changes_the_session_is_refused_before_anything_runs() {
    let bouncer = transaction_pooler();
    for (label, statement, shape) in [
        ("set", "SET search_path TO elsewhere;", "SET"),
        ("role", "SET ROLE postgres;", "SET ROLE"),
        ("reset", "RESET statement_timeout;", "RESET"),
        (
            "auth",
            "SET SESSION AUTHORIZATION postgres;",
            "SET SESSION AUTHORIZATION",
        ),
    ] {
        let db = test_db(&format!("pooler session {label}")).await;
        let client = db.client().await;
        let before = catalog(&client).await;
        let migrations = of(vec![
            mig(1, "a", "CREATE TABLE a (id int);"),
            mig_nt(
                2,
                "a_idx",
                &format!("CREATE INDEX CONCURRENTLY a_idx ON a (id);\n{statement}"),
            ),
        ]);
        let error = Migrator::new(&migrations)
            .transaction_pooler(true)
            .run(&bouncer.through(&db).pool(1))
            .await
            .expect_err("refused behind a pooler");
        let Error::SessionStateBehindPooler {
            version,
            line,
            statement: found,
            ..
        } = &error
        else {
            panic!("{label}: expected SessionStateBehindPooler, got {error:?}");
        };
        assert_eq!((*version, *line), (2, 3), "{label}");
        assert_eq!(*found, shape, "{label}");
        let message = error.to_string();
        assert!(
            message.contains("ALTER ROLE") && message.contains("direct connection"),
            "{message}"
        );
        assert_eq!(catalog(&client).await, before, "{label}: nothing ran");

        // The same file over a direct connection, where the runner resets the session after it.
        let report = migrations.run(&db.pool(1)).await.expect("direct");
        assert_eq!(applied(&report), vec![1, 2], "{label}");
    }
}
