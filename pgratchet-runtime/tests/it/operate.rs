//! Operations beyond applying (issue 4): rollback, `to`, baseline, repair, grouped runs,
//! validate, redo, hooks, the audit log and offline SQL, each checked in the database itself.

use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use pgratchet_harness::{test_db, Cluster, TestDb};
use pgratchet_runtime::{
    Error, HookContext, HookPoint, IssueKind, Migration, Migrator, Repair, Rollback, Script, State,
};

use crate::support::*;

/// A transactional migration with a transactional down: `<v>_<name>.up.sql` + `.down.sql`.
fn rev(version: i64, name: &str, up: &str, down: &str) -> Migration {
    Migration::new(
        version,
        name.to_owned(),
        Script::new(format!("{version}_{name}.up.sql"), up.to_owned(), false),
        Some(Script::new(
            format!("{version}_{name}.down.sql"),
            down.to_owned(),
            false,
        )),
    )
}

/// A migration whose up and down both run outside a transaction.
fn rev_nt(version: i64, name: &str, up: &str, down: &str) -> Migration {
    let script = |half: &str, sql: &str| {
        Script::new(
            format!("{version}_{name}.{half}.sql"),
            format!("-- migrate:no-transaction\n{sql}"),
            true,
        )
    };
    Migration::new(
        version,
        name.to_owned(),
        script("up", up),
        Some(script("down", down)),
    )
}

/// The versions a run applied or a rollback reverted (a report holds one or the other).
fn versions(report: &pgratchet_runtime::Report) -> Vec<i64> {
    applied(report)
        .into_iter()
        .chain(rolled_back(report))
        .collect()
}

/// A path under the temporary directory no other test (or test process) uses.
fn scratch_path(label: &str, extension: &str) -> PathBuf {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    std::env::temp_dir().join(format!(
        "pgratchet-operate-{label}-{}-{}.{extension}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ))
}

/// A server binary (`pg_dump`, `psql`) next to the cluster's, if there is one.
fn server_binary(name: &str) -> Option<PathBuf> {
    let path = Cluster::shared().bin_dir()?.join(name);
    path.exists().then_some(path)
}

/// `pg_dump --schema-only` of the database without the history and log tables, or `None`
/// when no pg_dump for the server's version is installed. The `\restrict` lines (a random key
/// per dump) are dropped.
fn schema_dump(db: &TestDb) -> Option<String> {
    let pg_dump = server_binary("pg_dump")?;
    let output = Command::new(pg_dump)
        .args([
            "--schema-only",
            "--no-owner",
            "--no-privileges",
            "--exclude-table=public.schema_migrations*",
            "--dbname",
            &db.url,
        ])
        .output()
        .expect("pg_dump runs");
    let stderr = String::from_utf8_lossy(&output.stderr);
    if stderr.contains("server version mismatch") {
        // A DATABASE_URL server newer than the local pg_dump: the catalog comparison remains.
        return None;
    }
    assert!(output.status.success(), "pg_dump failed: {stderr}");
    Some(
        String::from_utf8(output.stdout)
            .expect("UTF-8 dump")
            .lines()
            .filter(|line| !line.starts_with("\\restrict") && !line.starts_with("\\unrestrict"))
            .collect::<Vec<_>>()
            .join("\n"),
    )
}

/// Everything user-visible in the schema, from the catalog (works without pg_dump too).
async fn schema_lines(client: &tokio_postgres::Client) -> Vec<String> {
    column(
        client,
        "SELECT 'rel ' || c.oid::regclass::text || ' ' || c.relkind::text FROM pg_class c \
           JOIN pg_namespace n ON n.oid = c.relnamespace \
           WHERE n.nspname = 'public' AND c.relname NOT LIKE 'schema_migrations%' \
         UNION ALL SELECT 'col ' || attrelid::regclass::text || '.' || attname || ' ' || format_type(atttypid, atttypmod) \
           FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace \
           WHERE n.nspname = 'public' AND c.relname NOT LIKE 'schema_migrations%' AND attnum > 0 AND NOT attisdropped \
         UNION ALL SELECT 'idx ' || pg_get_indexdef(indexrelid) || ' valid=' || indisvalid::text FROM pg_index i \
           JOIN pg_class c ON c.oid = i.indrelid JOIN pg_namespace n ON n.oid = c.relnamespace \
           WHERE n.nspname = 'public' AND c.relname NOT LIKE 'schema_migrations%' \
         UNION ALL SELECT 'con ' || conname || ' ' || pg_get_constraintdef(oid) FROM pg_constraint \
           WHERE connamespace = 'public'::regnamespace AND conrelid::regclass::text NOT LIKE 'schema_migrations%' \
         UNION ALL SELECT 'fn ' || oid::regprocedure::text FROM pg_proc WHERE pronamespace = 'public'::regnamespace \
         UNION ALL SELECT 'type ' || typname FROM pg_type WHERE typnamespace = 'public'::regnamespace AND typtype = 'e' \
         UNION ALL SELECT 'trigger ' || tgname FROM pg_trigger WHERE NOT tgisinternal \
         ORDER BY 1",
    )
    .await
}

/// The history rows that a run and a script must agree on (not times).
async fn history_rows(client: &tokio_postgres::Client) -> Vec<Vec<Option<String>>> {
    rows(
        client,
        "SELECT version, name, checksum, state, applied_by, down_sql, error \
         FROM public.schema_migrations ORDER BY version",
    )
    .await
}

async fn count(client: &tokio_postgres::Client, table: &str) -> i64 {
    number(client, &format!("SELECT count(*) FROM {table}")).await
}

// -------------------------------------------------------------------------------------------
// Rollback
// -------------------------------------------------------------------------------------------

/// The round trip that operators rely on: up all, down all, up all leaves the same schema as the
/// first up, and down all leaves the schema of the empty database.
#[tokio::test]
async fn up_down_up_leaves_an_identical_schema() {
    let db = test_db("op_round_trip").await;
    let pool = db.pool(2);
    let client = db.client().await;
    let migrations = of(vec![
        rev(
            1,
            "users",
            "CREATE TYPE mood AS ENUM ('ok', 'bad');\n\
             CREATE TABLE users (id bigserial PRIMARY KEY, name text NOT NULL UNIQUE, mood mood DEFAULT 'ok');",
            "DROP TABLE users;\nDROP TYPE mood;",
        ),
        rev(
            2,
            "orders",
            "CREATE TABLE orders (\n\
               id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,\n\
               user_id bigint NOT NULL REFERENCES users (id),\n\
               total numeric(10, 2) CHECK (total >= 0)\n\
             );\n\
             CREATE VIEW big_orders AS SELECT * FROM orders WHERE total > 100;\n\
             CREATE FUNCTION touch() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RETURN NEW; END; $$;\n\
             CREATE TRIGGER orders_touch BEFORE UPDATE ON orders FOR EACH ROW EXECUTE FUNCTION touch();",
            "DROP TRIGGER orders_touch ON orders;\nDROP FUNCTION touch();\nDROP VIEW big_orders;\nDROP TABLE orders;",
        ),
        rev_nt(
            3,
            "orders_user_idx",
            "CREATE INDEX CONCURRENTLY orders_user_idx ON orders (user_id);",
            "DROP INDEX CONCURRENTLY orders_user_idx;",
        ),
        rev(
            4,
            "users_email",
            "ALTER TABLE users ADD COLUMN email text;\nINSERT INTO users (name) VALUES ('ada');",
            "ALTER TABLE users DROP COLUMN email;",
        ),
    ]);
    let empty_dump = schema_dump(&db);
    let empty_lines = schema_lines(&client).await;

    let report = migrations.run(&pool).await.expect("first up");
    assert_eq!(versions(&report), vec![1, 2, 3, 4]);
    let first_dump = schema_dump(&db);
    let first_lines = schema_lines(&client).await;
    assert!(first_lines
        .iter()
        .any(|line| line.contains("orders_user_idx")));

    let down = Migrator::new(&migrations)
        .down(&pool, Rollback::To(0))
        .await
        .expect("down all");
    assert_eq!(versions(&down), vec![4, 3, 2, 1], "newest first");
    assert_eq!(
        down.rolled_back
            .iter()
            .map(|reverted| reverted.no_transaction)
            .collect::<Vec<_>>(),
        vec![false, true, false, false]
    );
    assert!(history(&client).await.is_empty());
    assert_eq!(schema_lines(&client).await, empty_lines);
    assert_eq!(schema_dump(&db), empty_dump);

    let report = migrations.run(&pool).await.expect("second up");
    assert_eq!(versions(&report), vec![1, 2, 3, 4]);
    assert_eq!(schema_lines(&client).await, first_lines);
    assert_eq!(schema_dump(&db), first_dump);
    assert_eq!(history(&client).await, vec![1, 2, 3, 4]);
    let actions: Vec<String> = log(&client).await.into_iter().map(|(_, a)| a).collect();
    assert_eq!(
        actions,
        [
            "apply", "apply", "apply", "apply", "rollback", "rollback", "rollback", "rollback",
            "apply", "apply", "apply", "apply"
        ]
    );
}

/// A `-- migrate:no-transaction` down (`DROP INDEX CONCURRENTLY` cannot run in a transaction)
/// runs statement by statement; a failing one is recorded as `failed`, like a failed apply.
#[tokio::test]
async fn no_transaction_down_runs_outside_a_transaction_with_bookkeeping() {
    let db = test_db("op_nt_down").await;
    let pool = db.pool(2);
    let client = db.client().await;
    let table = rev(1, "t", "CREATE TABLE t (x int, y int);", "DROP TABLE t;");
    let migrations = of(vec![
        table.clone(),
        rev_nt(
            2,
            "t_x_idx",
            "CREATE INDEX CONCURRENTLY t_x_idx ON t (x);",
            "DROP INDEX CONCURRENTLY t_x_idx;",
        ),
    ]);
    migrations.run(&pool).await.expect("up");
    assert!(exists(&client, "public.t_x_idx").await);

    let report = Migrator::new(&migrations)
        .down(&pool, Rollback::Steps(1))
        .await
        .expect("no-transaction down");
    assert_eq!(versions(&report), vec![2]);
    assert!(report.rolled_back[0].no_transaction);
    assert!(!exists(&client, "public.t_x_idx").await);
    assert_eq!(history(&client).await, vec![1]);
    assert_eq!(log(&client).await.last(), Some(&(2, "rollback".to_owned())));

    // A down that fails half-way: the first statement is kept, the row is `failed`.
    let broken_down = of(vec![
        table,
        rev_nt(
            2,
            "t_x_idx",
            "CREATE INDEX CONCURRENTLY t_x_idx ON t (x);",
            "DROP INDEX CONCURRENTLY t_x_idx;\nDROP INDEX CONCURRENTLY no_such_index;",
        ),
    ]);
    Migrator::new(&broken_down)
        .run(&pool)
        .await
        .expect("up again");
    let error = Migrator::new(&broken_down)
        .down(&pool, Rollback::Steps(1))
        .await
        .expect_err("the second DROP fails");
    let Error::Migration(failure) = &error else {
        panic!("expected Error::Migration, got {error:?}");
    };
    assert_eq!(failure.version, 2);
    assert_eq!(failure.file, "2_t_x_idx.down.sql");
    assert_eq!(failure.line, Some(3), "the directive is line 1");
    assert_eq!(failure.code.as_deref(), Some("42704"));
    assert!(failure.no_transaction);
    assert!(!exists(&client, "public.t_x_idx").await, "statement 1 kept");
    let row = rows(
        &client,
        "SELECT state, error FROM public.schema_migrations WHERE version = 2",
    )
    .await;
    assert_eq!(row[0][0].as_deref(), Some("failed"));
    assert!(
        row[0][1]
            .as_deref()
            .is_some_and(|e| e.starts_with("rollback failed: SQLSTATE 42704")),
        "{row:?}"
    );
    assert_eq!(log(&client).await.last(), Some(&(2, "fail".to_owned())));
    let refused = broken_down.run(&pool).await.expect_err("failed is refused");
    assert!(
        matches!(refused, Error::Failed { version: 2, .. }),
        "{refused:?}"
    );
}

/// A migration without down SQL stops a rollback before anything is reverted, and names it.
#[tokio::test]
async fn rollback_stops_before_a_migration_without_down() {
    let db = test_db("op_irreversible").await;
    let pool = db.pool(2);
    let client = db.client().await;
    let migrations = of(vec![
        rev(1, "a", "CREATE TABLE a (id int);", "DROP TABLE a;"),
        mig(2, "b", "CREATE TABLE b (id int);"),
        rev(3, "c", "CREATE TABLE c (id int);", "DROP TABLE c;"),
    ]);
    migrations.run(&pool).await.expect("up");
    let migrator = Migrator::new(&migrations);

    let error = migrator
        .down(&pool, Rollback::To(0))
        .await
        .expect_err("2 has no down");
    let Error::Irreversible { version, name } = &error else {
        panic!("expected Error::Irreversible, got {error:?}");
    };
    assert_eq!((*version, name.as_str()), (2, "b"));
    assert!(error.to_string().contains("has no down SQL"), "{error}");
    // Nothing was reverted, not even 3 which has a down.
    assert_eq!(history(&client).await, vec![1, 2, 3]);
    for table in ["public.a", "public.b", "public.c"] {
        assert!(exists(&client, table).await, "{table}");
    }
    assert!(!log(&client).await.iter().any(|(_, a)| a == "rollback"));

    // Above it, a rollback works; reaching it stops again.
    let report = migrator
        .down(&pool, Rollback::Steps(1))
        .await
        .expect("3 reverts");
    assert_eq!(versions(&report), vec![3]);
    let error = migrator
        .down(&pool, Rollback::Steps(1))
        .await
        .expect_err("2 again");
    assert!(matches!(error, Error::Irreversible { version: 2, .. }));
    assert_eq!(history(&client).await, vec![1, 2]);
}

/// An older binary rolls back what a newer release applied with the down SQL stored in the
/// history table (including a no-transaction down, whose directive is in the stored text).
#[tokio::test]
async fn rollback_of_an_unknown_version_uses_the_stored_down_sql() {
    let db = test_db("op_unknown_down").await;
    let pool = db.pool(2);
    let client = db.client().await;
    let old_ones = vec![
        rev(1, "a", "CREATE TABLE a (id int);", "DROP TABLE a;"),
        rev(2, "b", "CREATE TABLE b (id int);", "DROP TABLE b;"),
    ];
    let mut new_ones = old_ones.clone();
    new_ones.push(rev(3, "c", "CREATE TABLE c (x int);", "DROP TABLE c;"));
    new_ones.push(rev_nt(
        4,
        "c_x_idx",
        "CREATE INDEX CONCURRENTLY c_x_idx ON c (x);",
        "DROP INDEX CONCURRENTLY c_x_idx;",
    ));
    let old = of(old_ones);
    let new = of(new_ones.clone());
    new.run(&pool).await.expect("the new release");

    let statuses = Migrator::new(&old).status(&pool).await.expect("status");
    let states: Vec<(i64, State)> = statuses.iter().map(|s| (s.version, s.state)).collect();
    assert_eq!(
        states,
        [
            (1, State::Applied),
            (2, State::Applied),
            (3, State::Unknown),
            (4, State::Unknown)
        ]
    );
    let report = Migrator::new(&old)
        .down(&pool, Rollback::To(2))
        .await
        .expect("the old binary rolls back the new release");
    assert_eq!(versions(&report), vec![4, 3]);
    assert_eq!(report.rolled_back[0].name, "c_x_idx", "the recorded name");
    assert!(
        report.rolled_back[0].no_transaction,
        "directive of the stored SQL"
    );
    assert!(!report.rolled_back[1].no_transaction);
    assert!(!exists(&client, "public.c").await);
    assert_eq!(history(&client).await, vec![1, 2]);

    // A version applied without down SQL cannot be rolled back by anyone: nothing is reverted.
    let mut newer_ones = new_ones;
    newer_ones.push(mig(5, "seed", "INSERT INTO c VALUES (1);"));
    of(newer_ones).run(&pool).await.expect("the newer release");
    let error = Migrator::new(&old)
        .down(&pool, Rollback::To(2))
        .await
        .expect_err("5 has no stored down");
    assert!(
        matches!(&error, Error::Irreversible { version: 5, name } if name == "seed"),
        "{error:?}"
    );
    assert_eq!(history(&client).await, vec![1, 2, 3, 4, 5]);
    assert_eq!(count(&client, "c").await, 1);
}

/// `to` goes up (applying up to the version) or down (rolling back above it).
#[tokio::test]
async fn to_goes_up_and_down() {
    let db = test_db("op_to").await;
    let pool = db.pool(2);
    let client = db.client().await;
    let migrations = of((1..=4)
        .map(|v| {
            rev(
                v,
                &format!("t{v}"),
                &format!("CREATE TABLE t{v} (id int);"),
                &format!("DROP TABLE t{v};"),
            )
        })
        .collect());
    let migrator = Migrator::new(&migrations);

    let report = migrator.to(&pool, 2).await.expect("up to 2");
    assert_eq!(versions(&report), vec![1, 2]);
    assert_eq!(history(&client).await, vec![1, 2]);
    let report = migrator.to(&pool, 4).await.expect("up to 4");
    assert_eq!(versions(&report), vec![3, 4]);
    let report = migrator.to(&pool, 1).await.expect("down to 1");
    assert_eq!(versions(&report), vec![4, 3, 2]);
    assert_eq!(history(&client).await, vec![1]);
    assert!(exists(&client, "public.t1").await);
    assert!(!exists(&client, "public.t2").await);
    let report = migrator.to(&pool, 1).await.expect("already there");
    assert!(versions(&report).is_empty());
    let report = migrator.to(&pool, 0).await.expect("down to nothing");
    assert_eq!(versions(&report), vec![1]);
    assert!(history(&client).await.is_empty());

    // A version that is neither known nor recorded is a typo, not "everything".
    let error = migrator.to(&pool, 99).await.expect_err("unknown target");
    assert!(
        matches!(error, Error::UnknownTarget { version: 99 }),
        "{error:?}"
    );
    assert!(history(&client).await.is_empty());
}

// -------------------------------------------------------------------------------------------
// Baseline and repair
// -------------------------------------------------------------------------------------------

/// A schema that predates its history: baseline records 1..=2 without running them, then a run
/// applies only 3; a second baseline is refused.
#[tokio::test]
async fn baseline_on_an_existing_schema_then_up_applies_only_the_rest() {
    let db = test_db("op_baseline").await;
    let pool = db.pool(2);
    let client = db.client().await;
    let migrations = of(vec![
        rev(
            1,
            "users",
            "CREATE TABLE users (id int PRIMARY KEY);",
            "DROP TABLE users;",
        ),
        mig(
            2,
            "orders",
            "CREATE TABLE orders (id int PRIMARY KEY, user_id int REFERENCES users);",
        ),
        mig(3, "users_email", "ALTER TABLE users ADD COLUMN email text;"),
    ]);
    client
        .batch_execute(
            "CREATE TABLE users (id int PRIMARY KEY);\n\
             CREATE TABLE orders (id int PRIMARY KEY, user_id int REFERENCES users);",
        )
        .await
        .expect("the schema that was there first");
    let migrator = Migrator::new(&migrations);

    let recorded = migrator.baseline(&pool, 2).await.expect("baseline");
    assert_eq!(recorded, vec![1, 2]);
    let recorded_rows = rows(
        &client,
        "SELECT version, checksum, state, execution_time_ms, down_sql FROM public.schema_migrations ORDER BY version",
    )
    .await;
    for (row, migration) in recorded_rows.iter().zip(migrations.iter()) {
        assert_eq!(row[1].as_deref(), Some(migration.checksum()));
        assert_eq!(row[2].as_deref(), Some("applied"));
        assert_eq!(row[3].as_deref(), Some("0"));
        assert_eq!(row[4].as_deref(), migration.down_sql());
    }
    let states: Vec<State> = migrator
        .status(&pool)
        .await
        .expect("status")
        .iter()
        .map(|s| s.state)
        .collect();
    assert_eq!(states, [State::Applied, State::Applied, State::Pending]);

    let report = migrator.run(&pool).await.expect("only 3 runs");
    assert_eq!(versions(&report), vec![3]);
    assert_eq!(
        scalar(
            &client,
            "SELECT count(*) FROM information_schema.columns WHERE table_name = 'users' AND column_name = 'email'"
        )
        .await
        .as_deref(),
        Some("1")
    );
    assert_eq!(
        log(&client).await,
        [
            (1, "baseline".to_owned()),
            (2, "baseline".to_owned()),
            (3, "apply".to_owned())
        ]
    );

    let error = migrator
        .baseline(&pool, 2)
        .await
        .expect_err("history exists");
    assert!(
        matches!(error, Error::BaselineOnHistory { recorded: 3 }),
        "{error:?}"
    );
    assert_eq!(history(&client).await, vec![1, 2, 3]);
}

/// A failed no-transaction migration (it left an INVALID index): refused until repaired; repair
/// says what it cleared and which indexes are INVALID; after a fix, up applies it.
#[tokio::test]
async fn repair_of_a_failed_migration_then_up() {
    let db = test_db("op_repair_failed").await;
    let pool = db.pool(2);
    let client = db.client().await;
    let table = mig(
        1,
        "t",
        "CREATE TABLE t (x int);\nINSERT INTO t VALUES (1), (1);",
    );
    let broken = of(vec![
        table.clone(),
        mig_nt(
            2,
            "t_x_key",
            "CREATE UNIQUE INDEX CONCURRENTLY t_x_key ON t (x);",
        ),
    ]);
    let error = broken.run(&pool).await.expect_err("duplicate values");
    let Error::Migration(failure) = &error else {
        panic!("expected Error::Migration, got {error:?}");
    };
    assert_eq!(failure.code.as_deref(), Some("23505"));
    assert_eq!(failure.line, Some(2));
    assert_eq!(failure.invalid_indexes, ["t_x_key"]);

    let error = broken.run(&pool).await.expect_err("refused until repaired");
    assert!(
        matches!(error, Error::Failed { version: 2, .. }),
        "{error:?}"
    );
    let validation = Migrator::new(&broken)
        .validate(&pool)
        .await
        .expect("validate");
    assert!(!validation.is_ok());
    assert!(validation
        .issues
        .iter()
        .any(|issue| issue.version == 2 && issue.kind == IssueKind::Failed && issue.error));

    let repaired = Migrator::new(&broken)
        .repair(&pool, &Repair::Versions(vec![2]))
        .await
        .expect("repair");
    assert_eq!(repaired.cleared.len(), 1);
    assert_eq!(repaired.cleared[0].version, 2);
    assert_eq!(repaired.cleared[0].state, State::Failed);
    assert!(repaired.cleared[0]
        .error
        .as_deref()
        .is_some_and(|e| e.contains("23505")));
    assert!(repaired.restamped.is_empty());
    assert_eq!(repaired.invalid_indexes, ["t_x_key"]);
    assert_eq!(history(&client).await, vec![1]);
    let last = rows(
        &client,
        "SELECT version, action, error FROM public.schema_migrations_log ORDER BY at DESC LIMIT 1",
    )
    .await;
    assert_eq!(last[0][0].as_deref(), Some("2"));
    assert_eq!(last[0][1].as_deref(), Some("repair"));
    assert!(last[0][2]
        .as_deref()
        .is_some_and(|note| note.starts_with("cleared a failed record")));

    // The operator drops the INVALID index and fixes the file; up applies it.
    client
        .batch_execute("DROP INDEX t_x_key")
        .await
        .expect("drop");
    let fixed = of(vec![
        table,
        mig_nt(2, "t_x_key", "CREATE INDEX CONCURRENTLY t_x_key ON t (x);"),
    ]);
    let report = fixed.run(&pool).await.expect("up after repair");
    assert_eq!(versions(&report), vec![2]);
    assert_eq!(
        scalar(
            &client,
            "SELECT indisvalid::text FROM pg_index WHERE indexrelid = 'public.t_x_key'::regclass"
        )
        .await
        .as_deref(),
        Some("true")
    );
}

/// A no-transaction migration whose process died mid-way stays `running`: refused until
/// repaired, then applied.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repair_of_a_running_migration_then_up() {
    let db = test_db("op_repair_running").await;
    let pool = db.pool(2);
    let client = db.client().await;
    let table = mig(1, "t", "CREATE TABLE t (x int);");
    let slow = of(vec![
        table.clone(),
        mig_nt(2, "slow", "SELECT pg_sleep(30) AS repair_running_marker;"),
    ]);
    let run = {
        let pool = db.pool(1);
        tokio::spawn(async move { slow.run(&pool).await.map(|_| ()) })
    };
    let pid = holder_running(&client, "repair_running_marker").await;
    client
        .batch_execute(&format!("SELECT pg_terminate_backend({pid})"))
        .await
        .expect("kill the runner's session");
    let outcome = tokio::time::timeout(Duration::from_secs(20), run)
        .await
        .expect("the run ends")
        .expect("no panic");
    assert!(outcome.is_err(), "its connection was killed");
    assert_eq!(
        scalar(
            &client,
            "SELECT state FROM public.schema_migrations WHERE version = 2"
        )
        .await
        .as_deref(),
        Some("running")
    );

    let fixed = of(vec![table, mig_nt(2, "slow", "SELECT 1;")]);
    let migrator = Migrator::new(&fixed);
    let error = migrator.run(&pool).await.expect_err("running is refused");
    assert!(
        matches!(error, Error::Running { version: 2, .. }),
        "{error:?}"
    );

    let repaired = migrator.repair(&pool, &Repair::All).await.expect("repair");
    assert_eq!(
        repaired
            .cleared
            .iter()
            .map(|s| (s.version, s.state))
            .collect::<Vec<_>>(),
        [(2, State::Running)]
    );
    assert_eq!(history(&client).await, vec![1]);
    let report = migrator.run(&pool).await.expect("up after repair");
    assert_eq!(versions(&report), vec![2]);
    assert_eq!(
        log(&client).await,
        [
            (1, "apply".to_owned()),
            (2, "repair".to_owned()),
            (2, "apply".to_owned())
        ]
    );
}

/// A deliberately edited applied file: refused as `modified` until its checksum is re-stamped.
#[tokio::test]
async fn repair_restamps_an_edited_checksum_then_run_succeeds() {
    let db = test_db("op_repair_checksum").await;
    let pool = db.pool(2);
    let client = db.client().await;
    let original = of(vec![
        rev(1, "a", "CREATE TABLE a (id int);", "DROP TABLE a;"),
        mig(2, "b", "CREATE TABLE b (id int);"),
    ]);
    original.run(&pool).await.expect("up");
    let edited = of(vec![
        rev(
            1,
            "a",
            "-- reformatted\nCREATE TABLE a (id int);",
            "DROP TABLE a; -- edited too",
        ),
        mig(2, "b", "CREATE TABLE b (id int);"),
        mig(3, "c", "CREATE TABLE c (id int);"),
    ]);
    let migrator = Migrator::new(&edited);
    let error = migrator.run(&pool).await.expect_err("modified");
    assert!(
        matches!(error, Error::Modified { version: 1, .. }),
        "{error:?}"
    );
    let validation = migrator.validate(&pool).await.expect("validate");
    assert!(validation
        .issues
        .iter()
        .any(|issue| issue.version == 1 && issue.kind == IssueKind::Modified && issue.error));

    let repaired = migrator
        .repair(&pool, &Repair::Versions(vec![1, 2, 42]))
        .await
        .expect("repair");
    assert!(repaired.cleared.is_empty());
    assert_eq!(repaired.restamped.len(), 1);
    let old_checksum = original.iter().next().expect("1").checksum();
    let new_checksum = edited.iter().next().expect("1").checksum();
    assert_eq!(
        repaired.restamped[0].applied_checksum.as_deref(),
        Some(old_checksum)
    );
    assert_eq!(
        repaired.restamped[0].checksum.as_deref(),
        Some(new_checksum)
    );
    assert_eq!(repaired.untouched, vec![2, 42]);
    let row = rows(
        &client,
        "SELECT checksum, down_sql FROM public.schema_migrations WHERE version = 1",
    )
    .await;
    assert_eq!(row[0][0].as_deref(), Some(new_checksum));
    assert_eq!(row[0][1].as_deref(), Some("DROP TABLE a; -- edited too"));
    let note = scalar(
        &client,
        "SELECT error FROM public.schema_migrations_log WHERE action = 'repair'",
    )
    .await
    .expect("a note");
    assert_eq!(
        note,
        format!("re-stamped checksum {old_checksum} -> {new_checksum}")
    );

    let report = migrator.run(&pool).await.expect("runs after repair");
    assert_eq!(versions(&report), vec![3]);
    assert!(migrator.validate(&pool).await.expect("validate").is_ok());
}

// -------------------------------------------------------------------------------------------
// Grouped runs, validate, redo
// -------------------------------------------------------------------------------------------

/// A grouped run is one transaction: a failure in the third migration keeps nothing of the
/// first two, not even their history or log rows. A no-transaction migration is refused.
#[tokio::test]
async fn grouped_run_is_all_or_nothing() {
    let db = test_db("op_grouped").await;
    let pool = db.pool(2);
    let client = db.client().await;
    let good = vec![
        mig(1, "a", "CREATE TABLE a (id int);"),
        mig(
            2,
            "b",
            "CREATE TABLE b (id int);\nINSERT INTO a VALUES (1);",
        ),
    ];
    let mut failing = good.clone();
    failing.push(mig(
        3,
        "bad",
        "INSERT INTO b VALUES (1);\nSELECT * FROM missing_table;",
    ));
    let failing = of(failing);

    let error = Migrator::new(&failing)
        .grouped(true)
        .run(&pool)
        .await
        .expect_err("3 fails");
    let Error::Migration(failure) = &error else {
        panic!("expected Error::Migration, got {error:?}");
    };
    assert_eq!(failure.version, 3);
    assert_eq!(failure.line, Some(2));
    assert_eq!(failure.code.as_deref(), Some("42P01"));
    assert!(!exists(&client, "public.a").await);
    assert!(!exists(&client, "public.b").await);
    assert_eq!(count(&client, "public.schema_migrations").await, 0);
    assert_eq!(count(&client, "public.schema_migrations_log").await, 0);

    let with_nt = of(vec![
        good[0].clone(),
        mig_nt(2, "a_idx", "CREATE INDEX CONCURRENTLY a_idx ON a (id);"),
    ]);
    let error = Migrator::new(&with_nt)
        .grouped(true)
        .run(&pool)
        .await
        .expect_err("refused");
    assert!(
        matches!(&error, Error::GroupedNoTransaction { version: 2, name } if name == "a_idx"),
        "{error:?}"
    );
    assert!(!exists(&client, "public.a").await);
    assert_eq!(count(&client, "public.schema_migrations").await, 0);

    let report = Migrator::new(&of(good))
        .grouped(true)
        .run(&pool)
        .await
        .expect("grouped run");
    assert_eq!(versions(&report), vec![1, 2]);
    assert_eq!(history(&client).await, vec![1, 2]);
    assert_eq!(count(&client, "a").await, 1);
    assert_eq!(
        log(&client).await,
        [(1, "apply".to_owned()), (2, "apply".to_owned())]
    );
}

/// Validate finds every kind of issue and changes nothing.
#[tokio::test]
async fn validate_reports_every_issue_and_changes_nothing() {
    let db = test_db("op_validate").await;
    let pool = db.pool(2);
    let client = db.client().await;
    let table = |v: i64| {
        rev(
            v,
            &format!("t{v}"),
            &format!("CREATE TABLE t{v} (id int);"),
            &format!("DROP TABLE t{v};"),
        )
    };
    of(vec![table(1), table(2), table(3), table(5), table(6)])
        .run(&pool)
        .await
        .expect("up");
    let before = history_rows(&client).await;
    let events = count(&client, "public.schema_migrations_log").await;

    let mut edited = table(1);
    edited = Migration::new(
        1,
        "t1",
        Script::new("1_t1.up.sql", "CREATE TABLE t1 (id int); -- edited", false),
        edited.down().cloned(),
    );
    let current = of(vec![
        edited,
        table(3),
        mig(4, "late", "CREATE TABLE t4 (id int);"),
        table(5),
    ]);
    let validation = Migrator::new(&current)
        .validate(&pool)
        .await
        .expect("validate");
    let found: Vec<(i64, IssueKind, bool)> = validation
        .issues
        .iter()
        .map(|issue| (issue.version, issue.kind, issue.error))
        .collect();
    assert_eq!(
        found,
        [
            (1, IssueKind::Modified, true),
            (2, IssueKind::Removed, true),
            (4, IssueKind::OutOfOrder, true),
            (4, IssueKind::MissingDown, false),
            (6, IssueKind::Unknown, false),
        ]
    );
    assert!(!validation.is_ok());
    assert_eq!(validation.statuses.len(), 6);
    assert_eq!(history_rows(&client).await, before);
    assert_eq!(count(&client, "public.schema_migrations_log").await, events);
}

/// Redo's round trip catches a down that forgets to drop an index, even though the up that
/// follows the faulty down then fails on what it left behind.
#[tokio::test]
async fn redo_catches_a_down_that_forgets_an_index() {
    let db = test_db("op_redo").await;
    let pool = db.pool(2);
    let migrations = of(vec![
        rev(1, "t", "CREATE TABLE t (id int, x int);", "DROP TABLE t;"),
        rev(
            2,
            "t_x_idx",
            "CREATE INDEX t_x_idx ON t (x);",
            "SELECT 1; -- forgot DROP INDEX t_x_idx",
        ),
        rev(
            3,
            "t_y",
            "ALTER TABLE t ADD COLUMN y int;",
            "ALTER TABLE t DROP COLUMN y;",
        ),
    ]);
    let redo = Migrator::new(&migrations)
        .redo(&pool)
        .await
        .expect("redo reports, does not fail");
    assert!(!redo.is_ok());
    assert_eq!(redo.restored, vec![1]);
    assert_eq!(redo.mismatches.len(), 1);
    let mismatch = &redo.mismatches[0];
    assert_eq!((mismatch.version, mismatch.name.as_str()), (2, "t_x_idx"));
    assert!(mismatch.missing.is_empty(), "{mismatch:?}");
    assert!(
        mismatch
            .left_behind
            .iter()
            .any(|line| line.contains("CREATE INDEX t_x_idx ON public.t")),
        "{mismatch:?}"
    );

    // The same set with a correct down round-trips every migration.
    let db = test_db("op_redo_ok").await;
    let fixed = of(vec![
        rev(1, "t", "CREATE TABLE t (id int, x int);", "DROP TABLE t;"),
        rev(
            2,
            "t_x_idx",
            "CREATE INDEX t_x_idx ON t (x);",
            "DROP INDEX t_x_idx;",
        ),
        rev(
            3,
            "t_y",
            "ALTER TABLE t ADD COLUMN y int;",
            "ALTER TABLE t DROP COLUMN y;",
        ),
        mig(4, "seed", "INSERT INTO t VALUES (1, 2, 3);"),
    ]);
    let redo = Migrator::new(&fixed).redo(&db.pool(2)).await.expect("redo");
    assert!(redo.is_ok(), "{redo:?}");
    assert_eq!(redo.restored, vec![1, 2, 3]);
    assert_eq!(redo.irreversible, vec![4]);
}

// -------------------------------------------------------------------------------------------
// Hooks
// -------------------------------------------------------------------------------------------

/// A failing before-run hook (e.g. a backup that failed) stops the run with nothing applied.
#[tokio::test]
async fn failing_before_hook_applies_nothing() {
    let db = test_db("op_hook_fails").await;
    let pool = db.pool(2);
    let client = db.client().await;
    let migrations = set(&[
        (1, "a", "CREATE TABLE a (id int);"),
        (2, "b", "CREATE TABLE b (id int);"),
    ]);
    let told = Arc::new(Mutex::new(Vec::new()));
    let error = Migrator::new(&migrations)
        .hook(HookPoint::BeforeRun, {
            let told = Arc::clone(&told);
            move |context: HookContext| {
                told.lock().expect("lock").push(context.pending);
                async { Err("the backup failed".into()) }
            }
        })
        .run(&pool)
        .await
        .expect_err("the hook fails");
    let Error::Hook { point, source } = &error else {
        panic!("expected Error::Hook, got {error:?}");
    };
    assert_eq!(*point, HookPoint::BeforeRun);
    assert_eq!(source.to_string(), "the backup failed");
    assert_eq!(*told.lock().expect("lock"), [vec![1, 2]]);
    assert!(!exists(&client, "public.a").await);
    assert_eq!(count(&client, "public.schema_migrations").await, 0);
    assert_eq!(count(&client, "public.schema_migrations_log").await, 0);

    // A failing before-each hook stops before that migration; earlier ones stay applied.
    let error = Migrator::new(&migrations)
        .hook(HookPoint::BeforeEach, |context: HookContext| async move {
            match context.migration {
                Some((2, _)) => Err("not 2".into()),
                _ => Ok(()),
            }
        })
        .run(&pool)
        .await
        .expect_err("stops at 2");
    assert!(matches!(
        error,
        Error::Hook {
            point: HookPoint::BeforeEach,
            ..
        }
    ));
    assert_eq!(history(&client).await, vec![1]);
    assert!(!exists(&client, "public.b").await);
}

/// Hooks see each migration, in order, each after-each hook after its migration is recorded.
#[tokio::test]
async fn hooks_see_each_migration() {
    let db = test_db("op_hook_each").await;
    let pool = db.pool(2);
    let client = Arc::new(db.client().await);
    let migrations = of(vec![
        mig(1, "a", "CREATE TABLE a (id int);"),
        mig_nt(2, "a_idx", "CREATE INDEX CONCURRENTLY a_idx ON a (id);"),
        mig(3, "b", "CREATE TABLE b (id int);"),
    ]);
    let seen: Arc<Mutex<Vec<String>>> = Arc::default();
    let note = |point: HookPoint| {
        let seen = Arc::clone(&seen);
        let client = Arc::clone(&client);
        move |context: HookContext| {
            let seen = Arc::clone(&seen);
            let client = Arc::clone(&client);
            async move {
                assert_eq!(context.point, point);
                assert_eq!(context.pending, [1, 2, 3]);
                let mut line = format!("{point:?}");
                if let Some((version, name)) = context.migration {
                    let state = scalar(
                        &client,
                        &format!(
                            "SELECT coalesce((SELECT state FROM public.schema_migrations WHERE version = {version}), 'none')"
                        ),
                    )
                    .await
                    .expect("state");
                    line.push_str(&format!(" {version} {name} {state}"));
                }
                seen.lock().expect("lock").push(line);
                Ok(())
            }
        }
    };
    let migrator = Migrator::new(&migrations)
        .hook(HookPoint::BeforeRun, note(HookPoint::BeforeRun))
        .hook(HookPoint::BeforeEach, note(HookPoint::BeforeEach))
        .hook(HookPoint::AfterEach, note(HookPoint::AfterEach))
        .hook(HookPoint::AfterRun, note(HookPoint::AfterRun));
    let report = migrator.run(&pool).await.expect("run");
    assert_eq!(versions(&report), vec![1, 2, 3]);
    assert_eq!(
        *seen.lock().expect("lock"),
        [
            "BeforeRun",
            "BeforeEach 1 a none",
            "AfterEach 1 a applied",
            "BeforeEach 2 a_idx none",
            "AfterEach 2 a_idx applied",
            "BeforeEach 3 b none",
            "AfterEach 3 b applied",
            "AfterRun",
        ]
    );
    // Nothing pending: no hook runs.
    seen.lock().expect("lock").clear();
    migrator.run(&pool).await.expect("nothing to do");
    assert!(seen.lock().expect("lock").is_empty());
}

// -------------------------------------------------------------------------------------------
// Audit log and offline SQL
// -------------------------------------------------------------------------------------------

/// Every action appends to `<table>_log`, read back through `history()`.
#[tokio::test]
async fn log_rows_for_every_action() {
    let db = test_db("op_log").await;
    let pool = db.pool(2);
    let client = db.client().await;
    let first = rev(1, "a", "CREATE TABLE a (id int);", "DROP TABLE a;");
    let second = rev(2, "b", "CREATE TABLE b (id int);", "DROP TABLE b;");
    let broken = of(vec![
        first.clone(),
        second.clone(),
        mig_nt(3, "c", "SELECT 1 / 0;"),
    ]);
    let fixed = of(vec![
        first,
        second,
        rev_nt(3, "c", "SELECT 1;", "SELECT 2;"),
    ]);
    assert!(Migrator::new(&broken)
        .history(&pool)
        .await
        .expect("no log table yet")
        .is_empty());
    client
        .batch_execute("CREATE TABLE a (id int)")
        .await
        .expect("the schema before its history");

    Migrator::new(&broken)
        .baseline(&pool, 1)
        .await
        .expect("baseline");
    broken.run(&pool).await.expect_err("3 fails");
    Migrator::new(&broken)
        .repair(&pool, &Repair::Versions(vec![3]))
        .await
        .expect("repair");
    fixed.run(&pool).await.expect("apply 3");
    Migrator::new(&fixed)
        .down(&pool, Rollback::Steps(2))
        .await
        .expect("roll back 3 and 2");

    let events = Migrator::new(&fixed).history(&pool).await.expect("history");
    let actions: Vec<(i64, &str)> = events
        .iter()
        .map(|event| (event.version, event.action.as_str()))
        .collect();
    assert_eq!(
        actions,
        [
            (1, "baseline"),
            (2, "apply"),
            (3, "fail"),
            (3, "repair"),
            (3, "apply"),
            (3, "rollback"),
            (2, "rollback"),
        ]
    );
    let user = scalar(&client, "SELECT current_user").await.expect("user");
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|name| name.trim().to_owned())
        .ok();
    for event in &events {
        assert_eq!(event.by, user, "{event:?}");
        assert!(
            event.host.as_deref().is_some_and(|h| !h.is_empty()),
            "{event:?}"
        );
        if let Some(host) = &host {
            assert_eq!(event.host.as_ref(), Some(host), "{event:?}");
        }
        // `2025-01-31T12:34:56.789Z`
        assert_eq!(event.at.len(), 24, "{event:?}");
        assert!(event.at.ends_with('Z') && event.at.as_bytes()[10] == b'T');
        assert!(event.duration_ms.is_some_and(|ms| ms >= 0), "{event:?}");
        match event.action.as_str() {
            "fail" => assert!(
                event
                    .error
                    .as_deref()
                    .is_some_and(|e| e.starts_with("SQLSTATE 22012")),
                "{event:?}"
            ),
            "repair" => assert!(
                event
                    .error
                    .as_deref()
                    .is_some_and(|e| e.starts_with("cleared a failed record (SQLSTATE 22012")),
                "{event:?}"
            ),
            _ => assert_eq!(event.error, None, "{event:?}"),
        }
    }
    assert!(
        events.windows(2).all(|pair| pair[0].at <= pair[1].at),
        "oldest first"
    );
}

/// Runs `file` with `psql -X -v ON_ERROR_STOP=1 -f` on `db`; panics with psql's output on failure.
fn psql_file(db: &TestDb, file: &std::path::Path) {
    let psql = server_binary("psql").expect("psql next to the server binaries");
    let output = Command::new(psql)
        .args(["-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", &db.url, "-f"])
        .arg(file)
        .output()
        .expect("psql runs");
    assert!(
        output.status.success(),
        "psql failed ({}):\n{}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// The offline script runs cleanly through psql on a fresh database (and on one with some of
/// the migrations applied) and leaves what a run leaves: every migration applied with its
/// checksum, the same schema, the same history rows.
#[tokio::test]
async fn script_through_psql_leaves_the_state_of_a_run() {
    if server_binary("psql").is_none() {
        eprintln!("skipped: no psql next to the server binaries");
        return;
    }
    let migrations = of(vec![
        rev(
            1,
            "users",
            "CREATE TABLE users (id int PRIMARY KEY, name text NOT NULL);\n\
             CREATE FUNCTION shout(t text) RETURNS text LANGUAGE plpgsql AS $body$\n\
             BEGIN\n  RETURN upper(t) || '!'; -- a ; inside a dollar body\nEND;\n$body$;",
            "DROP FUNCTION shout(text);\nDROP TABLE users;",
        ),
        rev_nt(
            2,
            "users_name_idx",
            "CREATE INDEX CONCURRENTLY users_name_idx ON users (name);\n\
             CREATE INDEX CONCURRENTLY users_lower_idx ON users (lower(name))",
            "DROP INDEX CONCURRENTLY users_lower_idx;\nDROP INDEX CONCURRENTLY users_name_idx;",
        ),
        mig(
            3,
            "seed",
            "INSERT INTO users VALUES (1, 'it''s; fine'), (2, shout('x')) -- no newline at the end",
        ),
    ]);
    let scripted = test_db("op_script").await;
    let ran = test_db("op_script_run").await;
    let (scripted_pool, scripted_client) = (scripted.pool(2), scripted.client().await);
    let ran_client = ran.client().await;

    let script = Migrator::new(&migrations)
        .script(&scripted_pool)
        .await
        .expect("script");
    assert!(script.starts_with("-- 3 pending migration(s)"), "{script}");
    assert!(
        !exists(&scripted_client, "public.schema_migrations").await,
        "script writes nothing"
    );
    let file = scratch_path("script", "sql");
    std::fs::write(&file, &script).expect("write the script");
    psql_file(&scripted, &file);

    migrations.run(&ran.pool(2)).await.expect("run");
    let statuses = Migrator::new(&migrations)
        .status(&scripted_pool)
        .await
        .expect("status");
    for status in &statuses {
        assert_eq!(status.state, State::Applied, "{status:?}");
        assert_eq!(status.applied_checksum, status.checksum, "{status:?}");
    }
    assert_eq!(
        history_rows(&scripted_client).await,
        history_rows(&ran_client).await
    );
    assert_eq!(
        schema_lines(&scripted_client).await,
        schema_lines(&ran_client).await
    );
    assert_eq!(schema_dump(&scripted), schema_dump(&ran));
    assert_eq!(
        column(&scripted_client, "SELECT name FROM users ORDER BY id").await,
        ["it's; fine", "X!"]
    );
    let hosts = column(
        &scripted_client,
        "SELECT action || ' ' || version || ' ' || host FROM public.schema_migrations_log ORDER BY at",
    )
    .await;
    assert_eq!(hosts, ["apply 1 psql", "apply 2 psql", "apply 3 psql"]);
    let report = migrations.run(&scripted_pool).await.expect("nothing left");
    assert!(report.applied.is_empty());

    // With the history table there and one migration applied: only the rest.
    let partial = test_db("op_script_partial").await;
    let partial_pool = partial.pool(2);
    Migrator::new(&migrations)
        .target(1)
        .run(&partial_pool)
        .await
        .expect("up to 1");
    let script = Migrator::new(&migrations)
        .script(&partial_pool)
        .await
        .expect("script");
    assert!(script.starts_with("-- 2 pending migration(s)"), "{script}");
    let file = scratch_path("script_partial", "sql");
    std::fs::write(&file, &script).expect("write the script");
    psql_file(&partial, &file);
    let states: Vec<State> = Migrator::new(&migrations)
        .status(&partial_pool)
        .await
        .expect("status")
        .iter()
        .map(|s| s.state)
        .collect();
    assert_eq!(states, [State::Applied; 3]);
    let _ = std::fs::remove_file(file);
}
