//! The caller's own setup: least-privilege roles, a pool hook's session settings, the server's
//! refusal of the runner's own setting, and `CONCURRENTLY` under `lock_timeout`.

use std::time::Duration;

use deadpool_postgres::{Hook, HookError, Manager, ManagerConfig, Pool, RecyclingMethod};
use pgratchet_harness::{test_db, TestDb};
use pgratchet_runtime::Migrator;

use crate::support::*;

/// A role of its own for this database (roles are shared by the whole cluster).
fn role(db: &TestDb, what: &str) -> String {
    format!("{}_{what}", db.name)
}

/// `db` for another login role.
fn as_role(db: &TestDb, role: &str) -> TestDb {
    TestDb {
        name: db.name.clone(),
        url: db.url.replacen("postgres@", &format!("{role}@"), 1),
    }
}

/// The usual least-privilege setup: the DBA creates schema `app` owned by the service's role,
/// and the database belongs to someone else. `CREATE SCHEMA IF NOT EXISTS` checks CREATE on the
/// database before it looks at IF NOT EXISTS, so it used to fail every run with "permission
/// denied for database".
#[tokio::test]
async fn a_role_that_owns_its_schema_but_not_the_database_can_run() {
    let db = test_db("roles schema owner").await;
    let client = db.client().await;
    let app = role(&db, "app");
    client
        .batch_execute(&format!(
            "CREATE ROLE \"{app}\" LOGIN;\nCREATE SCHEMA app AUTHORIZATION \"{app}\";"
        ))
        .await
        .expect("the DBA's setup");
    let migrations = set(&[(1, "a", "CREATE TABLE app.a (id int);")]);
    let report = Migrator::new(&migrations)
        .schema("app")
        .run(&as_role(&db, &app).pool(1))
        .await
        .expect("the service's role runs");
    assert_eq!(applied(&report), vec![1]);
    assert_eq!(
        column(&client, "SELECT version::text FROM app.schema_migrations").await,
        ["1"]
    );
    // The runner still creates a configured schema that is missing, when it may.
    let migrations = set(&[(1, "b", "CREATE TABLE public.b (id int);")]);
    let report = Migrator::new(&migrations)
        .schema("elsewhere")
        .run(&db.pool(1))
        .await
        .expect("a missing schema is created");
    assert_eq!(applied(&report), vec![1]);
    assert!(exists(&client, "elsewhere.schema_migrations").await);
}

/// A pool whose hook sets up each new connection the way a service does.
fn hooked_pool(db: &TestDb, setup: String) -> Pool {
    let manager = Manager::from_config(
        db.config(),
        tokio_postgres::NoTls,
        ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        },
    );
    Pool::builder(manager)
        .max_size(1)
        .post_create(Hook::async_fn(move |client, _| {
            let setup = setup.clone();
            Box::pin(async move {
                client
                    .batch_execute(&setup)
                    .await
                    .map_err(HookError::Backend)
            })
        }))
        .build()
        .expect("pool")
}

/// `RESET ALL` and `RESET ROLE` between migrations used to undo the caller's session setup (a
/// pool hook's `SET search_path`, `SET ROLE`, timeouts, `TimeZone`, `application_name`), so
/// migrations after the first one that changes settings landed in `public`, owned by the login
/// role; and a migration's `SET SESSION AUTHORIZATION` outlived both resets.
#[tokio::test]
async fn the_callers_session_setup_holds_for_every_migration() {
    let db = test_db("roles session setup").await;
    let client = db.client().await;
    let owner = role(&db, "owner");
    let other = role(&db, "other");
    client
        .batch_execute(&format!(
            "CREATE ROLE \"{owner}\";\nCREATE ROLE \"{other}\";\n\
             CREATE SCHEMA app AUTHORIZATION \"{owner}\";\nGRANT USAGE, CREATE ON SCHEMA app TO \"{other}\";"
        ))
        .await
        .expect("roles and schema");
    let pool = hooked_pool(
        &db,
        format!(
            "SET search_path TO app;\nSET ROLE \"{owner}\";\nSET statement_timeout = 12345;\n\
             SET TimeZone = 'Pacific/Auckland';\nSET application_name = 'collector';"
        ),
    );
    let noted = "CREATE TABLE {t} AS SELECT current_schema()::text AS schema, current_user::text AS who, \
                 current_setting('statement_timeout') AS timeout, current_setting('TimeZone') AS zone, \
                 current_setting('application_name') AS app;";
    let note = |table: &str| noted.replace("{t}", table);
    let migrations = of(vec![
        // Changes a setting in its transaction: the runner resets the session after it.
        mig(
            1,
            "one",
            &format!("SET LOCAL statement_timeout = 0;\n{}", note("one")),
        ),
        // Runs outside a transaction: the runner resets the session after it.
        mig_nt(2, "two", &note("two")),
        mig(3, "three", &note("three")),
        mig(
            4,
            "four",
            &format!("SET SESSION AUTHORIZATION \"{other}\";\n{}", note("four")),
        ),
        mig(5, "five", &note("five")),
    ]);
    let report = migrations.run(&pool).await.expect("run");
    assert_eq!(applied(&report), vec![1, 2, 3, 4, 5]);
    let expected = |who: &str| {
        vec![
            Some("app".to_owned()),
            Some(who.to_owned()),
            Some("12345ms".to_owned()),
            Some("Pacific/Auckland".to_owned()),
            Some("collector".to_owned()),
        ]
    };
    for table in ["two", "three", "five"] {
        assert_eq!(
            rows(&client, &format!("SELECT * FROM app.{table}")).await,
            vec![expected(&owner)],
            "migration {table}"
        );
    }
    // Inside migration 4, its own SET SESSION AUTHORIZATION holds.
    assert_eq!(
        scalar(&client, "SELECT who FROM app.four").await.as_deref(),
        Some(other.as_str())
    );
    assert_eq!(
        column(
            &client,
            "SELECT tableowner FROM pg_tables WHERE schemaname = 'app' AND tablename IN ('three', 'five') ORDER BY 1"
        )
        .await,
        [owner.clone(), owner.clone()]
    );
    assert!(!exists(&client, "public.five").await);
}

/// Some platforms refuse `client_connection_check_interval` (Windows; macOS before PostgreSQL
/// 15) with SQLSTATE 22023, and a refused `SET` inside a migration's batch aborted the
/// migration: nothing could ever be applied. Injected here with a value the server refuses the
/// same way (out of range, 22023); the runner must go on without it, on every path.
#[tokio::test]
async fn a_server_that_refuses_the_connection_check_interval_still_migrates() {
    let db = test_db("roles check interval").await;
    let client = db.client().await;
    let refused = Duration::from_millis(3_000_000_000);
    let migrations = of(vec![
        mig(
            1,
            "a",
            "SET LOCAL work_mem = '8MB';\nCREATE TABLE a (id int);",
        ),
        mig_nt(2, "a_idx", "CREATE INDEX CONCURRENTLY a_idx ON a (id);"),
        mig(3, "b", "CREATE TABLE b (id int);"),
    ]);
    let report = Migrator::new(&migrations)
        .connection_check_interval(refused)
        .run(&db.pool(1))
        .await
        .expect("direct");
    assert_eq!(applied(&report), vec![1, 2, 3]);
    // Behind a pooler it is SET LOCAL in each migration's transaction.
    let more = of(vec![
        mig(
            1,
            "a",
            "SET LOCAL work_mem = '8MB';\nCREATE TABLE a (id int);",
        ),
        mig_nt(2, "a_idx", "CREATE INDEX CONCURRENTLY a_idx ON a (id);"),
        mig(3, "b", "CREATE TABLE b (id int);"),
        mig(4, "c", "CREATE TABLE c (id int);"),
    ]);
    let report = Migrator::new(&more)
        .transaction_pooler(true)
        .connection_check_interval(refused)
        .run(&db.pool(1))
        .await
        .expect("behind a pooler");
    assert_eq!(applied(&report), vec![4]);
    assert_eq!(history(&client).await, vec![1, 2, 3, 4]);
}

/// Under `lock_timeout`, the waits of `CREATE INDEX CONCURRENTLY` for older transactions count as
/// lock waits: one transaction older than the timeout made it fail, leaving an INVALID index and
/// a `failed` row. It runs with `lock_timeout = 0` (it blocks no reads or writes), and the
/// file's other statements with the configured one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lock_timeout_does_not_cap_an_index_built_concurrently() {
    let db = test_db("roles cic lock timeout").await;
    let client = db.client().await;
    client
        .batch_execute("CREATE TABLE t (id int); CREATE TABLE notes (lock_timeout text);")
        .await
        .expect("tables");
    let old = db.client().await;
    old.batch_execute("BEGIN; INSERT INTO t VALUES (1);")
        .await
        .expect("an older transaction that wrote to t");
    let migrations = of(vec![mig_nt(
        1,
        "t_idx",
        "CREATE INDEX CONCURRENTLY t_idx ON t (id);\n\
         INSERT INTO notes SELECT current_setting('lock_timeout');",
    )]);
    let run = {
        let pool = db.pool(1);
        tokio::spawn(async move {
            Migrator::new(&migrations)
                .lock_timeout(Duration::from_millis(200))
                .run(&pool)
                .await
                .map(|report| applied(&report))
        })
    };
    lock_waiters(&client, 1).await;
    tokio::time::sleep(Duration::from_millis(600)).await;
    old.batch_execute("COMMIT")
        .await
        .expect("the old transaction ends");
    assert_eq!(run.await.expect("task").expect("the index is built"), [1]);
    assert_eq!(
        scalar(
            &client,
            "SELECT indisvalid::text FROM pg_index WHERE indexrelid = 't_idx'::regclass"
        )
        .await
        .as_deref(),
        Some("true")
    );
    assert_eq!(
        column(&client, "SELECT lock_timeout FROM notes").await,
        ["200ms"]
    );
}
