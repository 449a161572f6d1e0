//! Applying migrations: the normal path, the fast path, plans, targets, statement splitting,
//! no-transaction files and session settings.

use std::time::Duration;

use pgratchet_harness::test_db;
use pgratchet_runtime::{Error, Migration, Migrator, Script};

use crate::support::*;

#[tokio::test]
async fn fresh_database_applies_all_in_order_then_nothing() {
    let db = test_db("fresh_applies_all").await;
    let pool = db.pool(2);
    let migrations = of(vec![
        mig(1, "create_a", "CREATE TABLE a (id int PRIMARY KEY);"),
        Migration::new(
            2,
            "create_b",
            Script::new("2_create_b.up.sql", "CREATE TABLE b (id int);", false),
            Some(Script::new("2_create_b.down.sql", "DROP TABLE b;", false)),
        ),
        // Gaps are normal (timestamps); the order is numeric, not textual.
        mig(10, "fill_a", "INSERT INTO a VALUES (1), (2), (3);"),
    ]);

    let report = migrations.run(&pool).await.expect("first run");
    assert_eq!(applied(&report), vec![1, 2, 10]);
    assert!(report.took_lock);
    assert!(report.warnings.is_empty(), "{:?}", report.warnings);
    assert!(report.applied_by_others.is_empty());
    assert!(report.applied.iter().all(|applied| !applied.no_transaction));
    assert_eq!(report.applied[1].name, "create_b");

    let client = db.client().await;
    let user = scalar(&client, "SELECT current_user").await.expect("user");
    let recorded = rows(
        &client,
        "SELECT version, name, checksum, state, applied_by, down_sql, error, execution_time_ms \
         FROM public.schema_migrations ORDER BY version",
    )
    .await;
    assert_eq!(recorded.len(), 3);
    for (row, migration) in recorded.iter().zip(migrations.iter()) {
        assert_eq!(
            row[0].as_deref(),
            Some(migration.version().to_string().as_str())
        );
        assert_eq!(row[1].as_deref(), Some(migration.name()));
        assert_eq!(row[2].as_deref(), Some(migration.checksum()));
        assert_eq!(row[2].as_ref().map(String::len), Some(64), "sha-256 hex");
        assert_eq!(row[3].as_deref(), Some("applied"));
        assert_eq!(row[4].as_deref(), Some(user.as_str()));
        assert_eq!(row[5].as_deref(), migration.down_sql());
        assert_eq!(row[6], None);
        assert!(row[7]
            .as_deref()
            .is_some_and(|ms| ms.parse::<i64>().is_ok()));
    }
    assert_eq!(
        scalar(
            &client,
            "SELECT bool_and(applied_at <= next) FROM (SELECT applied_at, \
             lead(applied_at, 1, 'infinity') OVER (ORDER BY version) AS next FROM public.schema_migrations) s"
        )
        .await
        .as_deref(),
        Some("t"),
        "applied in version order"
    );
    assert_eq!(
        log(&client).await,
        vec![
            (1, "apply".to_owned()),
            (2, "apply".to_owned()),
            (10, "apply".to_owned())
        ]
    );
    assert_eq!(
        rows(
            &client,
            "SELECT DISTINCT by, host <> '', duration_ms IS NOT NULL, error IS NULL FROM public.schema_migrations_log"
        )
        .await,
        vec![vec![
            Some(user.clone()),
            Some("t".to_owned()),
            Some("t".to_owned()),
            Some("t".to_owned())
        ]]
    );
    assert_eq!(number(&client, "SELECT count(*) FROM a").await, 3);
    assert_eq!(
        scalar(
            &client,
            "SELECT bool_and(l.duration_ms = h.execution_time_ms) FROM public.schema_migrations h \
             JOIN public.schema_migrations_log l USING (version)"
        )
        .await
        .as_deref(),
        Some("t"),
        "the history and the log record the same duration"
    );

    // The second run reads, finds nothing pending, and writes nothing.
    let snapshot = "SELECT (SELECT max(xmin::text::bigint) FROM public.schema_migrations)::text || '/' || \
                    (SELECT string_agg(version || ' ' || applied_at || ' ' || execution_time_ms || ' ' || state, ',' ORDER BY version) FROM public.schema_migrations) || '/' || \
                    (SELECT count(*) FROM public.schema_migrations_log) || '/' || \
                    (SELECT max(xmin::text::bigint) FROM public.schema_migrations_log)::text";
    let before = scalar(&client, snapshot).await;
    let report = migrations.run(&pool).await.expect("second run");
    assert!(report.applied.is_empty(), "{report:?}");
    assert!(!report.took_lock, "nothing pending must not take the lock");
    assert!(report.warnings.is_empty());
    assert_eq!(scalar(&client, snapshot).await, before);
    assert_eq!(number(&client, "SELECT count(*) FROM a").await, 3);
}

#[tokio::test]
async fn nothing_pending_is_decided_from_one_server_computed_row() {
    // The fast path compares a hash sum the server computes over (version, checksum) with the
    // one the runner computes over its set, instead of reading every row. A role that may read
    // only the three columns it sums shows which path decided: everything else needs more.
    let db = test_db("fingerprint").await;
    let migrations = set(&[
        (1, "create_a", "CREATE TABLE a (id int);"),
        (2, "fill_a", "INSERT INTO a VALUES (1);"),
        (7, "create_b", "CREATE TABLE b (id int);"),
    ]);
    migrations
        .run(&db.pool(1))
        .await
        .expect("apply as the owner");
    let reader = format!("reader_{}", db.name);
    db.client()
        .await
        .batch_execute(&format!(
            "CREATE ROLE \"{reader}\" LOGIN;\n\
             GRANT SELECT (version, checksum, state, tableoid) ON schema_migrations TO \"{reader}\";"
        ))
        .await
        .expect("reader role");
    let as_reader = || async {
        let (client, connection) = db
            .config()
            .user(&reader)
            .connect(tokio_postgres::NoTls)
            .await
            .expect("connect as the reader");
        tokio::spawn(connection);
        client
    };

    let report = migrations
        .run_client(as_reader().await)
        .await
        .expect("up to date, decided from the three columns");
    assert!(report.applied.is_empty() && !report.took_lock, "{report:?}");

    // An edited file, or one more migration, changes the sum: then every column is read, which
    // this role may not do.
    let edited = set(&[
        (1, "create_a", "CREATE TABLE a (id int);"),
        (2, "fill_a", "INSERT INTO a VALUES (2);"),
        (7, "create_b", "CREATE TABLE b (id int);"),
    ]);
    let more = set(&[
        (1, "create_a", "CREATE TABLE a (id int);"),
        (2, "fill_a", "INSERT INTO a VALUES (1);"),
        (7, "create_b", "CREATE TABLE b (id int);"),
        (8, "create_c", "CREATE TABLE c (id int);"),
    ]);
    for changed in [&edited, &more] {
        let error = changed
            .run_client(as_reader().await)
            .await
            .expect_err("the full read is refused");
        assert_eq!(
            error.code().map(tokio_postgres::error::SqlState::code),
            Some("42501"),
            "{error}"
        );
    }
}

#[tokio::test]
async fn only_the_last_commit_of_a_run_waits_for_the_disk() {
    // Each migration is still its own transaction, but only the run's last commit waits for the
    // WAL flush, which covers every commit before it. Each migration notes the setting it ran
    // under.
    let db = test_db("last_commit_durable").await;
    let client = db.client().await;
    // The harness's cluster commits asynchronously; this database does not.
    client
        .batch_execute(&format!(
            "ALTER DATABASE \"{}\" SET synchronous_commit = on",
            db.name
        ))
        .await
        .expect("synchronous commits");
    let pool = db.pool(1);
    let noting = |version: i64| {
        mig(
            version,
            &format!("note_{version}"),
            &format!(
                "INSERT INTO notes VALUES ({version}, current_setting('synchronous_commit'));"
            ),
        )
    };
    let first = of(vec![
        mig(
            1,
            "create_notes",
            "CREATE TABLE notes (version int, sync text);",
        ),
        noting(2),
        noting(3),
    ]);
    first.run(&pool).await.expect("first run");
    let later = of(vec![
        mig(
            1,
            "create_notes",
            "CREATE TABLE notes (version int, sync text);",
        ),
        noting(2),
        noting(3),
        noting(4),
    ]);
    later.run(&pool).await.expect("a run of one migration");
    assert_eq!(
        rows(
            &client,
            "SELECT version::text, sync FROM notes ORDER BY version"
        )
        .await,
        [("2", "off"), ("3", "on"), ("4", "on")]
            .iter()
            .map(|(version, sync)| vec![Some((*version).to_owned()), Some((*sync).to_owned())])
            .collect::<Vec<_>>()
    );
}

#[tokio::test]
async fn plain_client_is_consumed_and_closed() {
    let db = test_db("plain_client").await;
    let migrations = set(&[
        (1, "create_a", "CREATE TABLE a (id int);"),
        (2, "fill_a", "INSERT INTO a VALUES (7);"),
    ]);
    let runner = db.client().await;
    let report = Migrator::new(&migrations)
        .run_client(runner)
        .await
        .expect("run on a client");
    assert_eq!(applied(&report), vec![1, 2]);

    let client = db.client().await;
    assert_eq!(history(&client).await, vec![1, 2]);
    assert_eq!(number(&client, "SELECT sum(id) FROM a").await, 7);
    // The runner owned the client and closed it: no other session is left in this database
    // (a session left open could hold the migration lock).
    wait_for(
        &client,
        "SELECT 1 WHERE NOT EXISTS (SELECT 1 FROM pg_stat_activity \
         WHERE datname = current_database() AND pid <> pg_backend_pid())",
        Duration::from_secs(10),
    )
    .await;

    // And `Migrations::run_client` with nothing pending.
    let report = migrations
        .run_client(db.client().await)
        .await
        .expect("second run on a client");
    assert!(report.applied.is_empty());
    assert!(!report.took_lock);
}

#[tokio::test]
async fn dollar_quotes_and_do_blocks_with_semicolons() {
    let db = test_db("dollar_quotes").await;
    let pool = db.pool(2);
    let function = "CREATE FUNCTION add_one(i int) RETURNS int LANGUAGE plpgsql AS $fn$\n\
                    BEGIN\n\
                    \x20 -- a comment; with a semicolon\n\
                    \x20 RETURN i + 1;\n\
                    END;\n\
                    $fn$;\n\
                    DO $$ BEGIN CREATE TABLE from_do (v text); INSERT INTO from_do VALUES ('a;b'); END $$;\n\
                    CREATE FUNCTION semi() RETURNS text LANGUAGE sql AS $$ SELECT 'x;y' $$;\n\
                    CREATE FUNCTION atomic_two() RETURNS int LANGUAGE sql BEGIN ATOMIC SELECT 1; SELECT 2; END;\n\
                    /* a /* nested */ comment; */ CREATE TABLE quoted (v text DEFAULT E'it\\'s; fine');\n";
    // The same kind of text in a no-transaction file, where the runner must split it itself:
    // a wrong split would send half a function body.
    let no_transaction = "CREATE FUNCTION nt_fn() RETURNS text LANGUAGE plpgsql AS $body$\n\
                          DECLARE s text := 'p;q';\n\
                          BEGIN RETURN s; END;\n\
                          $body$;\n\
                          DO $do$ BEGIN PERFORM 1; CREATE TABLE nt_do (id int); END $do$;\n\
                          CREATE INDEX CONCURRENTLY nt_do_id ON nt_do (id)";
    let migrations = of(vec![
        mig(1, "functions", function),
        mig_nt(2, "no_tx_functions", no_transaction),
    ]);
    let report = migrations.run(&pool).await.expect("run");
    assert_eq!(applied(&report), vec![1, 2]);

    let client = db.client().await;
    assert_eq!(number(&client, "SELECT add_one(41)").await, 42);
    assert_eq!(
        scalar(&client, "SELECT v FROM from_do").await.as_deref(),
        Some("a;b")
    );
    assert_eq!(
        scalar(&client, "SELECT semi()").await.as_deref(),
        Some("x;y")
    );
    assert_eq!(number(&client, "SELECT atomic_two()").await, 2);
    assert_eq!(
        scalar(
            &client,
            "SELECT column_default FROM information_schema.columns WHERE table_name = 'quoted'"
        )
        .await
        .as_deref(),
        Some("'it''s; fine'::text")
    );
    assert_eq!(
        scalar(&client, "SELECT nt_fn()").await.as_deref(),
        Some("p;q")
    );
    assert!(exists(&client, "public.nt_do").await);
    assert_eq!(
        scalar(
            &client,
            "SELECT indisvalid FROM pg_index WHERE indexrelid = 'nt_do_id'::regclass"
        )
        .await
        .as_deref(),
        Some("t")
    );
    assert_eq!(
        column(
            &client,
            "SELECT state FROM schema_migrations ORDER BY version"
        )
        .await,
        vec!["applied", "applied"]
    );
}

#[tokio::test]
async fn create_index_concurrently_in_a_no_transaction_file() {
    let db = test_db("cic_no_transaction").await;
    let pool = db.pool(2);
    let migrations = of(vec![
        mig(
            1,
            "items",
            "CREATE TABLE items (id int, v text);\n\
             INSERT INTO items SELECT g, g::text FROM generate_series(1, 1000) g;",
        ),
        mig_nt(
            2,
            "items_v_idx",
            "CREATE INDEX CONCURRENTLY items_v_idx ON items (v);\n\
             COMMENT ON INDEX items_v_idx IS 'made concurrently';\n",
        ),
        mig(3, "after", "CREATE TABLE after_idx (id int);"),
    ]);
    let report = migrations.run(&pool).await.expect("run");
    assert_eq!(applied(&report), vec![1, 2, 3]);
    assert_eq!(
        report
            .applied
            .iter()
            .map(|applied| applied.no_transaction)
            .collect::<Vec<_>>(),
        vec![false, true, false]
    );

    let client = db.client().await;
    assert_eq!(
        rows(
            &client,
            "SELECT indisvalid, indisready, obj_description(indexrelid, 'pg_class') \
             FROM pg_index WHERE indexrelid = 'items_v_idx'::regclass"
        )
        .await,
        vec![vec![
            Some("t".to_owned()),
            Some("t".to_owned()),
            Some("made concurrently".to_owned())
        ]]
    );
    assert_eq!(
        rows(
            &client,
            "SELECT state, checksum, error FROM schema_migrations WHERE version = 2"
        )
        .await,
        vec![vec![
            Some("applied".to_owned()),
            Some(migrations.get(2).expect("2").checksum().to_owned()),
            None
        ]]
    );
    assert!(exists(&client, "public.after_idx").await);
    assert_eq!(
        log(&client).await,
        vec![
            (1, "apply".to_owned()),
            (2, "apply".to_owned()),
            (3, "apply".to_owned())
        ]
    );
}

#[tokio::test]
async fn session_settings_of_a_migration_do_not_leak() {
    let db = test_db("settings_do_not_leak").await;
    let pool = db.pool(2);
    let migrations =
        of(vec![
        mig(
            1,
            "other_schema",
            "CREATE SCHEMA other;\nSET search_path = other;\nCREATE TABLE in_other (id int);",
        ),
        mig(2, "in_public", "CREATE TABLE in_public (id int);"),
        mig(3, "tight_timeout", "SET statement_timeout = '1ms';"),
        mig(
            4,
            "slow",
            "SELECT pg_sleep(0.05);\nCREATE TABLE after_timeout (id int);",
        ),
        mig_nt(
            5,
            "no_tx_settings",
            "SET search_path = other;\nSET statement_timeout = '1ms';\nSET lock_timeout = '1ms';",
        ),
        mig(
            6,
            "in_public_again",
            "SELECT pg_sleep(0.05);\nCREATE TABLE in_public_again (id int);",
        ),
        mig_nt(
            7,
            "no_tx_in_public",
            "SELECT pg_sleep(0.05);\nCREATE TABLE nt_in_public (id int);",
        ),
        // A setting that would make the runner's own bookkeeping fail if it still applied.
        mig_nt(8, "no_tx_read_only", "SET default_transaction_read_only = on;"),
        mig(9, "tx_read_only", "SET default_transaction_read_only = on;"),
        mig_nt(10, "writes_after", "CREATE TABLE writes_after (id int);"),
        mig(11, "writes_again", "INSERT INTO writes_after VALUES (1);"),
    ]);
    let report = migrations.run(&pool).await.expect("run");
    assert_eq!(applied(&report), (1..=11).collect::<Vec<_>>());

    let client = db.client().await;
    for table in [
        "other.in_other",
        "public.in_public",
        "public.after_timeout",
        "public.in_public_again",
        "public.nt_in_public",
        "public.schema_migrations",
        "public.schema_migrations_log",
    ] {
        assert!(exists(&client, table).await, "{table} is missing");
    }
    for table in [
        "other.in_public",
        "other.in_public_again",
        "other.nt_in_public",
        "other.schema_migrations",
    ] {
        assert!(!exists(&client, table).await, "{table} should not exist");
    }
    assert_eq!(history(&client).await, (1..=11).collect::<Vec<_>>());
    assert_eq!(
        number(&client, "SELECT count(*) FROM writes_after").await,
        1
    );
    assert_eq!(
        column(
            &client,
            "SELECT DISTINCT state FROM public.schema_migrations"
        )
        .await,
        vec!["applied"]
    );
    // The pooled connection (it went back to the pool only if nothing was pending, which is not
    // the case here) must not carry the settings either: a fresh run is the fast path.
    let report = migrations.run(&pool).await.expect("second run");
    assert!(!report.took_lock);
}

#[tokio::test]
async fn target_applies_up_to_it_and_a_later_run_the_rest() {
    let db = test_db("target").await;
    let pool = db.pool(2);
    let migrations = set(&[
        (1, "a", "CREATE TABLE a (id int);"),
        (2, "b", "CREATE TABLE b (id int);"),
        (3, "c", "CREATE TABLE c (id int);"),
        (4, "d", "CREATE TABLE d (id int);"),
    ]);
    let report = Migrator::new(&migrations)
        .target(2)
        .run(&pool)
        .await
        .expect("run to 2");
    assert_eq!(applied(&report), vec![1, 2]);
    let client = db.client().await;
    assert_eq!(history(&client).await, vec![1, 2]);
    assert!(exists(&client, "b").await);
    assert!(!exists(&client, "c").await);

    // At the target already: nothing to do, on the fast path.
    let report = Migrator::new(&migrations)
        .target(2)
        .run(&pool)
        .await
        .expect("run to 2 again");
    assert!(report.applied.is_empty());
    assert!(!report.took_lock);

    let report = migrations.run(&pool).await.expect("run all");
    assert_eq!(applied(&report), vec![3, 4]);
    assert_eq!(history(&client).await, vec![1, 2, 3, 4]);
    assert!(exists(&client, "d").await);
}

#[tokio::test]
async fn plan_writes_nothing() {
    let db = test_db("plan").await;
    let pool = db.pool(2);
    let migrations = of(vec![
        mig(1, "a", "CREATE TABLE a (id int);"),
        mig_nt(2, "a_idx", "CREATE INDEX CONCURRENTLY a_idx ON a (id);"),
        mig(3, "b", "CREATE TABLE b (id int);"),
    ]);
    let client = db.client().await;
    let catalog_before = catalog(&client).await;

    let plan = Migrator::new(&migrations).plan(&pool).await.expect("plan");
    assert_eq!(plan.len(), 3);
    for (planned, migration) in plan.iter().zip(migrations.iter()) {
        assert_eq!(planned.version, migration.version());
        assert_eq!(planned.name, migration.name());
        assert_eq!(planned.checksum, migration.checksum());
        assert_eq!(planned.sql, migration.up_sql());
        assert_eq!(planned.no_transaction, migration.no_transaction());
    }
    assert!(plan[1].no_transaction);
    assert_eq!(
        scalar(&client, "SELECT to_regclass('schema_migrations') IS NULL")
            .await
            .as_deref(),
        Some("t")
    );
    assert_eq!(catalog(&client).await, catalog_before);
    let json = serde_json::to_value(&plan).expect("plan as JSON");
    assert_eq!(
        json[0]["checksum"],
        migrations.get(1).expect("1").checksum()
    );

    // On a client, after part of the set was applied: only what is pending.
    Migrator::new(&migrations)
        .target(1)
        .run(&pool)
        .await
        .expect("run to 1");
    let plan = Migrator::new(&migrations)
        .plan_client(&client)
        .await
        .expect("plan on a client");
    assert_eq!(
        plan.iter().map(|p| p.version).collect::<Vec<_>>(),
        vec![2, 3]
    );
    assert_eq!(history(&client).await, vec![1]);
    assert!(!exists(&client, "a_idx").await);
}

#[tokio::test]
async fn set_role_in_a_migration_does_not_leak() {
    // Migrations often `SET ROLE` so that what they create belongs to the application's owner
    // role; the runner's own bookkeeping and the next migrations must not run as that role.
    let db = test_db("set_role").await;
    let pool = db.pool(2);
    let client = db.client().await;
    let owner = format!("owner_{}", db.name);
    client
        .batch_execute(&format!(
            "DO $$ BEGIN CREATE ROLE \"{owner}\" NOLOGIN; EXCEPTION WHEN duplicate_object THEN NULL; END $$;\n\
             GRANT CREATE ON SCHEMA public TO \"{owner}\";"
        ))
        .await
        .expect("owner role");
    let migrations = of(vec![
        mig(
            1,
            "owned",
            &format!("SET ROLE \"{owner}\";\nCREATE TABLE owned (id int);"),
        ),
        mig(2, "mine", "CREATE TABLE mine (id int);"),
        mig_nt(
            3,
            "owned_nt",
            &format!("SET ROLE \"{owner}\";\nCREATE TABLE owned_nt (id int);"),
        ),
        mig(4, "mine_too", "CREATE TABLE mine_too (id int);"),
    ]);
    let report = migrations.run(&pool).await.expect("run");
    assert_eq!(applied(&report), vec![1, 2, 3, 4]);
    let user = scalar(&client, "SELECT current_user").await.expect("user");
    let owners = rows(
        &client,
        "SELECT relname, pg_get_userbyid(relowner) FROM pg_class \
         WHERE relname IN ('owned', 'mine', 'owned_nt', 'mine_too', 'schema_migrations') ORDER BY relname",
    )
    .await;
    let owner_of = |name: &str| {
        owners
            .iter()
            .find(|row| row[0].as_deref() == Some(name))
            .and_then(|row| row[1].clone())
    };
    assert_eq!(owner_of("owned"), Some(owner.clone()));
    assert_eq!(owner_of("owned_nt"), Some(owner.clone()));
    assert_eq!(owner_of("mine"), Some(user.clone()));
    assert_eq!(owner_of("mine_too"), Some(user.clone()));
    assert_eq!(history(&client).await, vec![1, 2, 3, 4]);
    assert_eq!(
        column(&client, "SELECT DISTINCT applied_by FROM schema_migrations").await,
        vec![user]
    );
}

#[tokio::test]
async fn grouped_run_is_all_or_nothing_and_settings_stay_per_migration() {
    let db = test_db("grouped").await;
    let pool = db.pool(1);
    let client = db.client().await;
    let good = [
        (
            1,
            "other_schema",
            "CREATE SCHEMA other;\nSET search_path = other;\nCREATE TABLE in_other (id int);",
        ),
        (2, "in_public", "CREATE TABLE in_public (id int);"),
        (3, "tight_timeout", "SET statement_timeout = '1ms';"),
        (
            4,
            "slow",
            "SELECT pg_sleep(0.05);\nCREATE TABLE after_timeout (id int);",
        ),
    ];
    let mut broken = good.to_vec();
    broken.push((5, "five", "CREATE TABLE five (id int);"));
    broken.push((
        6,
        "broken",
        "CREATE TABLE six (id int);\nSELECT * FROM nope;",
    ));
    broken.push((7, "seven", "CREATE TABLE seven (id int);"));

    // One failing migration: nothing of the group is kept.
    let error = Migrator::new(&set(&broken))
        .grouped(true)
        .run(&pool)
        .await
        .expect_err("6 fails");
    let Error::Migration(failure) = &error else {
        panic!("expected Error::Migration, got {error:?}");
    };
    assert_eq!((failure.version, failure.line), (6, Some(2)));
    assert_eq!(failure.code.as_deref(), Some("42P01"));
    assert_eq!(history(&client).await, Vec::<i64>::new());
    assert!(!exists(&client, "public.in_public").await);
    assert!(!exists(&client, "public.five").await);

    // Each migration of a group starts from the session's settings, as in separate runs.
    let report = Migrator::new(&set(&good))
        .grouped(true)
        .run(&pool)
        .await
        .expect("grouped run");
    assert_eq!(applied(&report), vec![1, 2, 3, 4]);
    assert!(
        report.applied[3].duration_ms >= 40,
        "each migration's own duration: {:?}",
        report.applied
    );
    assert!(exists(&client, "other.in_other").await);
    assert!(exists(&client, "public.in_public").await);
    assert!(exists(&client, "public.after_timeout").await);
    assert_eq!(history(&client).await, vec![1, 2, 3, 4]);
    assert_eq!(log(&client).await.len(), 4);

    // A no-transaction migration cannot be part of a group.
    let with_no_transaction = of(vec![
        mig(1, "other_schema", good[0].2),
        mig(2, "in_public", good[1].2),
        mig(3, "tight_timeout", good[2].2),
        mig(4, "slow", good[3].2),
        mig(5, "five", "CREATE TABLE five (id int);"),
        mig_nt(6, "idx", "CREATE INDEX CONCURRENTLY five_id ON five (id);"),
    ]);
    let error = Migrator::new(&with_no_transaction)
        .grouped(true)
        .run(&pool)
        .await
        .expect_err("no-transaction in a group");
    assert!(
        matches!(error, Error::GroupedNoTransaction { version: 6, .. }),
        "{error:?}"
    );
    assert!(!exists(&client, "public.five").await);
}
