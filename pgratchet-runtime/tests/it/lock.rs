//! Waiting for the migration lock, and `lock_timeout` with retries for DDL.

use std::sync::Arc;
use std::time::{Duration, Instant};

use pgratchet_harness::test_db;
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

    let report = run_a.await.expect("task").expect("A finishes");
    assert_eq!(applied(&report), vec![1, 2]);
    assert_eq!(history(&client).await, vec![1, 2]);
}

/// Takes `ACCESS EXCLUSIVE` on `t` from another session; returns that session.
async fn lock_table(db: &pgratchet_harness::TestDb) -> tokio_postgres::Client {
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
    assert_eq!(
        error.code().map(tokio_postgres::error::SqlState::code),
        Some("55P03")
    );
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

/// Releases every session advisory lock of the migration's own session, whatever its key:
/// a statement the build-time check (which refuses `pg_advisory_unlock_all()` and `DISCARD ALL`)
/// cannot see through.
const UNLOCK_OWN_LOCKS: &str =
    "SELECT pg_advisory_unlock((classid::bigint << 32) | objid::bigint) \
     FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid() AND objsubid = 1;";

/// A no-transaction migration that releases the migration lock lets a second starter run at the
/// same time: the runner checks, in the batch that records the migration, that it still holds
/// the lock, and fails loudly if not (it used to go on as if nothing happened).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_migration_that_releases_the_migration_lock_fails_loudly() {
    let db = test_db("lock released").await;
    let client = db.client().await;
    let migrations = of(vec![
        mig(1, "a", "CREATE TABLE a (id int);"),
        mig_nt(2, "unlocks", UNLOCK_OWN_LOCKS),
        mig(3, "b", "CREATE TABLE b (id int);"),
    ]);
    let error = migrations
        .run(&db.pool(1))
        .await
        .expect_err("the lock was released");
    assert!(
        matches!(error, Error::LockReleased { version: 2, .. }),
        "{error:?}"
    );
    assert!(
        error.to_string().contains("released the migration lock"),
        "{error}"
    );
    assert_eq!(
        column(
            &client,
            "SELECT state FROM schema_migrations ORDER BY version"
        )
        .await,
        ["applied", "failed"]
    );
    assert!(!exists(&client, "b").await, "nothing after it ran");
}

const SLOW_INDEX_FUNCTION: &str = "CREATE TABLE t (id int);\n\
    INSERT INTO t SELECT generate_series(1, 20);\n\
    CREATE FUNCTION slow_id(x int) RETURNS int LANGUAGE plpgsql IMMUTABLE AS $$\n\
    BEGIN PERFORM pg_sleep(0.1); RETURN x; END $$;";

/// Mixed mode: the CLI (session lock) builds an index concurrently while a service with the
/// pooler flag starts. The service must never wait inside a statement for the lock (it used to,
/// in `pg_advisory_xact_lock` while creating the history table): `CREATE INDEX CONCURRENTLY`
/// waits for every older snapshot, so the two would deadlock.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pooler_mode_starter_does_not_deadlock_with_a_concurrent_index_build() {
    let db = test_db("mixed mode cic").await;
    let client = db.client().await;
    let migrations = Arc::new(of(vec![
        mig(1, "t", SLOW_INDEX_FUNCTION),
        mig_nt(
            2,
            "t_slow_idx",
            "CREATE INDEX CONCURRENTLY t_slow_idx ON t (slow_id(id));",
        ),
    ]));
    let cli = {
        let migrations = Arc::clone(&migrations);
        let pool = db.pool(1);
        tokio::spawn(async move { migrations.run(&pool).await })
    };
    holder_running(&client, "CREATE INDEX CONCURRENTLY").await;
    let service = {
        let migrations = Arc::clone(&migrations);
        let pool = db.pool(1);
        tokio::spawn(async move {
            Migrator::new(&migrations)
                .transaction_pooler(true)
                .run(&pool)
                .await
        })
    };
    let report = tokio::time::timeout(Duration::from_secs(60), cli)
        .await
        .expect("the CLI finishes")
        .expect("task")
        .expect("the CLI's run");
    assert_eq!(applied(&report), vec![1, 2]);
    let report = tokio::time::timeout(Duration::from_secs(60), service)
        .await
        .expect("the service finishes")
        .expect("task")
        .expect("the service's run");
    assert!(report.applied.is_empty(), "{report:?}");
    assert_eq!(
        scalar(
            &client,
            "SELECT indisvalid::text FROM pg_index WHERE indexrelid = 't_slow_idx'::regclass"
        )
        .await
        .as_deref(),
        Some("true")
    );
    assert_eq!(history(&client).await, vec![1, 2]);
}

/// An engine whose advisory-lock functions succeed without locking (CockroachDB's stubs, a
/// YugabyteDB with the error silenced), emulated: functions that always succeed, found before
/// pg_catalog's through the database's search_path, so that every new session sees them.
async fn fake_advisory_locks(client: &tokio_postgres::Client, db: &pgratchet_harness::TestDb) {
    client
        .batch_execute(&format!(
            "CREATE SCHEMA fake;\n\
             CREATE FUNCTION fake.pg_try_advisory_lock(bigint) RETURNS boolean LANGUAGE sql AS 'SELECT true';\n\
             CREATE FUNCTION fake.pg_advisory_unlock(bigint) RETURNS boolean LANGUAGE sql AS 'SELECT true';\n\
             CREATE FUNCTION fake.pg_advisory_xact_lock(bigint) RETURNS void LANGUAGE sql AS '';\n\
             CREATE FUNCTION fake.pg_try_advisory_xact_lock(bigint) RETURNS boolean LANGUAGE sql AS 'SELECT true';\n\
             CREATE FUNCTION fake.version() RETURNS text LANGUAGE sql AS $$SELECT 'CockroachDB CCL v22.2.0 (emulated)'$$;\n\
             ALTER DATABASE \"{}\" SET search_path = fake, pg_catalog;",
            db.name
        ))
        .await
        .expect("the fake engine");
}

/// A runner that trusts such locks applies migrations twice when replicas start together: it
/// checks, once it holds the lock, that a second session cannot take it too, and refuses,
/// naming the engine and the mode that does not rely on the lock.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_engine_whose_advisory_locks_do_not_lock_is_refused() {
    let db = test_db("fake advisory locks").await;
    let client = db.client().await;
    fake_advisory_locks(&client, &db).await;
    let migrations = set(&[(1, "a", "CREATE TABLE a (id int);")]);
    let before = catalog(&client).await;

    let error = migrations
        .run(&db.pool(1))
        .await
        .expect_err("refused: the lock does not exclude a second session");
    let Error::AdvisoryLocksIneffective { server } = &error else {
        panic!("expected AdvisoryLocksIneffective, got {error:?}");
    };
    assert!(server.contains("CockroachDB"), "{server}");
    let message = error.to_string();
    assert!(
        message.contains("CockroachDB") && message.contains(".transaction_pooler(true)"),
        "{message}"
    );
    assert_eq!(catalog(&client).await, before, "nothing applied");

    // With a client and no pool there is no second connection to try; the runner sees that its
    // own session holds no such lock instead.
    let error = migrations
        .run_client(db.client().await)
        .await
        .expect_err("refused on a client too");
    assert!(
        matches!(error, Error::AdvisoryLocksIneffective { .. }),
        "{error:?}"
    );
    assert_eq!(catalog(&client).await, before, "nothing applied");

    // The way out: the history row's key, not the lock.
    let report = Migrator::new(&migrations)
        .transaction_pooler(true)
        .run(&db.pool(1))
        .await
        .expect("pooler mode");
    assert_eq!(applied(&report), vec![1]);
}
