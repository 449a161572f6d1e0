//! The history table: adoption of a pybmpmon table, refusal of foreign shapes, quoted names.

use pgratchet_harness::test_db;
use pgratchet_runtime::{Error, Migrator};

use crate::support::*;

const PYBMPMON: &str = "CREATE TABLE schema_migrations (\
    version INTEGER PRIMARY KEY, \
    name TEXT NOT NULL, \
    checksum TEXT NOT NULL, \
    applied_at TIMESTAMPTZ NOT NULL DEFAULT now(), \
    execution_time_ms INTEGER)";

/// The columns of a table, `name type` in order.
async fn columns(client: &tokio_postgres::Client, table: &str) -> Vec<String> {
    column(
        client,
        &format!(
            "SELECT attname || ' ' || format_type(atttypid, atttypmod) FROM pg_attribute \
             WHERE attrelid = '{table}'::regclass AND attnum > 0 AND NOT attisdropped ORDER BY attnum"
        ),
    )
    .await
}

#[tokio::test]
async fn pybmpmon_table_is_adopted_with_its_rows() {
    let db = test_db("pybmpmon_adopted").await;
    let pool = db.pool(2);
    let migrations = set(&[
        (1, "a", "CREATE TABLE a (id int);"),
        (2, "b", "CREATE TABLE b (id int);"),
        (3, "c", "CREATE TABLE c (id int);"),
    ]);
    let client = db.client().await;
    client
        .batch_execute(PYBMPMON)
        .await
        .expect("pybmpmon table");
    // pybmpmon applied migration 1 (and created its table).
    client
        .batch_execute(&format!(
            "CREATE TABLE a (id int); \
             INSERT INTO schema_migrations (version, name, checksum, applied_at, execution_time_ms) \
             VALUES (1, 'a', '{}', '2024-01-02 03:04:05+00', 12)",
            migrations.get(1).expect("1").checksum()
        ))
        .await
        .expect("pybmpmon row");

    let report = migrations.run(&pool).await.expect("adopted");
    assert_eq!(applied(&report), vec![2, 3]);

    let recorded = rows(
        &client,
        "SELECT version, name, applied_at = '2024-01-02 03:04:05+00', execution_time_ms, state \
         FROM schema_migrations ORDER BY version",
    )
    .await;
    assert_eq!(recorded.len(), 3);
    assert_eq!(
        recorded[0],
        vec![
            Some("1".to_owned()),
            Some("a".to_owned()),
            Some("t".to_owned()),
            Some("12".to_owned()),
            Some("applied".to_owned())
        ],
        "the adopted row is kept as it was"
    );
    assert_eq!(recorded[1][4].as_deref(), Some("applied"));
    let columns = columns(&client, "schema_migrations").await;
    assert_eq!(columns[0], "version integer", "version stays INTEGER");
    for added in [
        "state text",
        "applied_by text",
        "down_sql text",
        "error text",
    ] {
        assert!(
            columns.iter().any(|c| c == added),
            "{added} missing: {columns:?}"
        );
    }
    assert!(exists(&client, "schema_migrations_log").await);
    assert_eq!(
        log(&client).await,
        vec![(2, "apply".to_owned()), (3, "apply".to_owned())]
    );

    let report = migrations.run(&pool).await.expect("second run");
    assert!(report.applied.is_empty());
    assert!(!report.took_lock);
}

#[tokio::test]
async fn version_above_i32_is_refused_for_an_adopted_table() {
    let db = test_db("pybmpmon_too_large").await;
    let pool = db.pool(2);
    let big = 3_000_000_000_i64;
    let migrations = set(&[
        (1, "a", "CREATE TABLE a (id int);"),
        (2, "b", "CREATE TABLE b (id int);"),
        (big, "big", "CREATE TABLE big (id int);"),
    ]);
    let client = db.client().await;
    client
        .batch_execute(PYBMPMON)
        .await
        .expect("pybmpmon table");
    client
        .batch_execute(&format!(
            "CREATE TABLE a (id int); INSERT INTO schema_migrations (version, name, checksum) VALUES (1, 'a', '{}')",
            migrations.get(1).expect("1").checksum()
        ))
        .await
        .expect("pybmpmon row");

    let error = migrations.run(&pool).await.expect_err("too large");
    let Error::VersionTooLarge { version, table } = &error else {
        panic!("expected Error::VersionTooLarge, got {error:?}");
    };
    assert_eq!(*version, big);
    assert_eq!(table, "public.schema_migrations");
    assert!(error.to_string().contains("bigint"), "{error}");
    // Refused before applying anything: a run that cannot finish does not start.
    assert_eq!(history(&client).await, vec![1]);
    assert!(!exists(&client, "b").await);
    assert!(!exists(&client, "big").await);

    // Up to a version that fits, it works.
    let report = Migrator::new(&migrations)
        .target(2)
        .run(&pool)
        .await
        .expect("target 2");
    assert_eq!(applied(&report), vec![2]);
    assert_eq!(
        columns(&client, "schema_migrations").await[0],
        "version integer"
    );
}

/// Runs `migrations` against a pre-created foreign `schema_migrations` and checks that it is
/// refused and nothing at all changed.
async fn assert_foreign_refused(label: &str, ddl: &str, expect_in_found: &str) {
    let db = test_db(label).await;
    let pool = db.pool(2);
    let client = db.client().await;
    client.batch_execute(ddl).await.expect("foreign table");
    let catalog_before = catalog(&client).await;
    let columns_before = columns(&client, "schema_migrations").await;
    let rows_before = rows(&client, "SELECT * FROM schema_migrations").await;
    assert_eq!(rows_before.len(), 1);

    let migrations = set(&[(1, "a", "CREATE TABLE a (id int);")]);
    let error = migrations
        .run(&pool)
        .await
        .expect_err("foreign table refused");
    let Error::ForeignTable { table, found } = &error else {
        panic!("expected Error::ForeignTable, got {error:?}");
    };
    assert_eq!(table, "public.schema_migrations");
    assert!(found.contains(expect_in_found), "{found}");
    let message = error.to_string();
    assert!(
        message.contains("untouched") && message.contains(".table("),
        "{message}"
    );

    assert_eq!(catalog(&client).await, catalog_before, "nothing created");
    assert!(!exists(&client, "schema_migrations_log").await);
    assert!(!exists(&client, "a").await);
    assert_eq!(columns(&client, "schema_migrations").await, columns_before);
    assert_eq!(
        rows(&client, "SELECT * FROM schema_migrations").await,
        rows_before
    );
    // plan() and status() refuse to guess too... or at least write nothing.
    let _ = Migrator::new(&migrations).plan(&pool).await;
    let _ = Migrator::new(&migrations).status(&pool).await;
    assert_eq!(catalog(&client).await, catalog_before);

    // The advice works: another table name.
    let report = Migrator::new(&migrations)
        .table("app_migrations")
        .run(&pool)
        .await
        .expect("another table name");
    assert_eq!(applied(&report), vec![1]);
    assert!(exists(&client, "app_migrations_log").await);
    assert_eq!(
        rows(&client, "SELECT * FROM schema_migrations").await,
        rows_before
    );
}

#[tokio::test]
async fn golang_migrate_table_is_refused_and_untouched() {
    assert_foreign_refused(
        "foreign_golang_migrate",
        "CREATE TABLE schema_migrations (version bigint NOT NULL PRIMARY KEY, dirty boolean NOT NULL); \
         INSERT INTO schema_migrations VALUES (20240101, false);",
        "dirty",
    )
    .await;
}

#[tokio::test]
async fn rails_table_is_refused_and_untouched() {
    assert_foreign_refused(
        "foreign_rails",
        "CREATE TABLE schema_migrations (version character varying NOT NULL PRIMARY KEY); \
         INSERT INTO schema_migrations VALUES ('20240101000000');",
        "character varying",
    )
    .await;
}

#[tokio::test]
async fn names_that_need_quoting() {
    let db = test_db("quoted_names").await;
    let pool = db.pool(2);
    let migrations = set(&[
        (1, "a", "CREATE TABLE a (id int);"),
        (2, "b", "CREATE TABLE b (id int);"),
    ]);
    let runner = || {
        Migrator::new(&migrations)
            .schema("My Schema")
            .table("odd\"name")
    };
    let report = runner().run(&pool).await.expect("quoted names");
    assert_eq!(applied(&report), vec![1, 2]);

    let client = db.client().await;
    assert!(exists(&client, "\"My Schema\".\"odd\"\"name\"").await);
    assert!(exists(&client, "\"My Schema\".\"odd\"\"name_log\"").await);
    assert!(!exists(&client, "public.schema_migrations").await);
    assert!(
        exists(&client, "public.a").await,
        "migrations still run in the current schema"
    );
    assert_eq!(
        column(
            &client,
            "SELECT version FROM \"My Schema\".\"odd\"\"name\" ORDER BY version"
        )
        .await,
        vec!["1", "2"]
    );

    let report = runner().run(&pool).await.expect("second run finds them");
    assert!(report.applied.is_empty());
    assert!(!report.took_lock);
    let status = runner().status(&pool).await.expect("status");
    assert_eq!(status.len(), 2);

    let too_long = "t".repeat(64);
    let error = Migrator::new(&migrations)
        .table(too_long.as_str())
        .run(&pool)
        .await
        .expect_err("64 bytes");
    assert!(
        matches!(&error, Error::InvalidIdentifier { what: "table", value, .. } if *value == too_long),
        "{error:?}"
    );
    // The log table's name (`<table>_log`) must fit too.
    let error = Migrator::new(&migrations)
        .table("l".repeat(60))
        .run(&pool)
        .await
        .expect_err("60 + 4 bytes");
    assert!(
        matches!(error, Error::InvalidIdentifier { .. }),
        "{error:?}"
    );
    let error = Migrator::new(&migrations)
        .schema("s".repeat(64))
        .run(&pool)
        .await
        .expect_err("schema of 64 bytes");
    assert!(
        matches!(error, Error::InvalidIdentifier { what: "schema", .. }),
        "{error:?}"
    );
    assert!(!exists(&client, &format!("public.{too_long}")).await);
}

/// Our columns (or pybmpmon's) but no key on `version`: behind a pooler that key is the only
/// thing between a migration and a second application, so such a table is refused, untouched,
/// with the statement that fixes it; a unique index does as well as a primary key.
#[tokio::test]
async fn a_history_table_without_a_key_on_version_is_refused() {
    let ours_without_key = "CREATE TABLE schema_migrations (version bigint NOT NULL, \
         name text NOT NULL, checksum text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now(), \
         execution_time_ms integer NOT NULL DEFAULT 0, state text NOT NULL DEFAULT 'applied', \
         applied_by text, down_sql text, error text)";
    let pybmpmon_without_key = PYBMPMON.replace("INTEGER PRIMARY KEY", "INTEGER NOT NULL");
    // A unique index on an expression, or a partial one, does not keep versions unique either.
    let expression_index =
        format!("{ours_without_key}; CREATE UNIQUE INDEX ON schema_migrations ((version + 0))");
    let partial_index = format!(
        "{ours_without_key}; CREATE UNIQUE INDEX ON schema_migrations (version) WHERE state = 'applied'"
    );
    for (label, ddl) in [
        ("ours", ours_without_key.to_owned()),
        ("pybmpmon", pybmpmon_without_key),
        ("expression", expression_index),
        ("partial", partial_index),
    ] {
        let db = test_db(&format!("keyless {label}")).await;
        let client = db.client().await;
        client.batch_execute(&ddl).await.expect("keyless table");
        let before = catalog(&client).await;
        let migrations = set(&[(1, "a", "CREATE TABLE a (id int);")]);
        for pooler in [false, true] {
            let error = Migrator::new(&migrations)
                .transaction_pooler(pooler)
                .run(&db.pool(1))
                .await
                .expect_err("refused");
            assert!(
                matches!(&error, Error::HistoryWithoutKey { table } if table == "public.schema_migrations"),
                "{label}: {error:?}"
            );
            assert!(
                error
                    .to_string()
                    .contains("ALTER TABLE public.schema_migrations ADD PRIMARY KEY (version)"),
                "{error}"
            );
            assert_eq!(catalog(&client).await, before, "{label}: untouched");
        }
    }

    // A plain unique index on `version` keeps it unique: adopted.
    let db = test_db("keyless unique index").await;
    let client = db.client().await;
    client
        .batch_execute(&format!(
            "{ours_without_key}; CREATE UNIQUE INDEX ON schema_migrations (version)"
        ))
        .await
        .expect("table with a unique index");
    let migrations = set(&[(1, "a", "CREATE TABLE a (id int);")]);
    let report = migrations.run(&db.pool(1)).await.expect("adopted");
    assert_eq!(applied(&report), vec![1]);
}

/// A partitioned history table would make the one-row fast path never match (each row's
/// tableoid is its partition's): refused.
#[tokio::test]
async fn a_partitioned_history_table_is_refused() {
    let db = test_db("partitioned history").await;
    let client = db.client().await;
    client
        .batch_execute(
            "CREATE TABLE schema_migrations (version bigint PRIMARY KEY, \
             name text NOT NULL, checksum text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now(), \
             execution_time_ms integer NOT NULL DEFAULT 0, state text NOT NULL DEFAULT 'applied', \
             applied_by text, down_sql text, error text) PARTITION BY RANGE (version); \
             CREATE TABLE schema_migrations_all PARTITION OF schema_migrations DEFAULT;",
        )
        .await
        .expect("partitioned table");
    let before = catalog(&client).await;
    let migrations = set(&[(1, "a", "CREATE TABLE a (id int);")]);
    let error = migrations.run(&db.pool(1)).await.expect_err("refused");
    assert!(
        matches!(&error, Error::PartitionedHistory { table } if table == "public.schema_migrations"),
        "{error:?}"
    );
    assert!(error.to_string().contains("partitioned"), "{error}");
    assert_eq!(catalog(&client).await, before);
}
