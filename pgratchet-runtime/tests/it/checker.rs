//! The build-time transaction check against the server itself: each statement runs inside
//! `BEGIN ... ROLLBACK` on PostgreSQL, and the check must refuse exactly the statements the
//! server refuses there (SQLSTATE 25001), but for the few the server decides from its catalog.

use pgratchet_core::transaction;
use pgratchet_harness::test_db;
use tokio_postgres::error::SqlState;

use crate::support::*;

/// How the check and the server compare on a statement.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Expect {
    /// Both refuse it, or both accept it.
    Same,
    /// The server refuses it depending on the catalog (a partitioned table); the check, which
    /// sees only the text, accepts it, and the migration fails at run time, rolled back.
    ServerOnly,
    /// The check refuses what the server accepts here, because elsewhere the server would not
    /// (a subscription that has a replication slot).
    CheckOnly,
}

#[tokio::test]
async fn the_check_refuses_what_the_server_refuses_in_a_transaction() {
    let db = test_db("checker").await;
    let client = db.client().await;
    client
        .batch_execute(
            "CREATE TABLE t (a int);\n\
             CREATE INDEX t_idx ON t (a);\n\
             CREATE TABLE p (a int) PARTITION BY RANGE (a);\n\
             CREATE TABLE p1 PARTITION OF p FOR VALUES FROM (0) TO (10);\n\
             CREATE INDEX p_idx ON p (a);\n\
             CREATE SCHEMA s;\n\
             CREATE MATERIALIZED VIEW v AS SELECT 1 AS x;\n\
             CREATE UNIQUE INDEX v_x ON v (x);",
        )
        .await
        .expect("the objects the statements name");
    // PostgreSQL 15 wants the database's name (16 made it optional).
    let reindex_database = format!("REINDEX DATABASE \"{}\"", db.name);
    let reindex_system = format!("REINDEX SYSTEM \"{}\"", db.name);
    use Expect::*;
    let cases: &[(&str, Expect)] = &[
        ("VACUUM t", Same),
        ("VACUUM (ANALYZE) t", Same),
        ("ANALYZE t", Same),
        ("CLUSTER", Same),
        ("CLUSTER VERBOSE", Same),
        ("CLUSTER t USING t_idx", Same),
        ("CLUSTER p USING p_idx", ServerOnly),
        ("REINDEX SCHEMA s", Same),
        ("REINDEX (VERBOSE) SCHEMA s", Same),
        (&reindex_system, Same),
        (&reindex_database, Same),
        ("REINDEX (CONCURRENTLY) TABLE t", Same),
        ("REINDEX INDEX CONCURRENTLY t_idx", Same),
        ("REINDEX (CONCURRENTLY false) TABLE t", Same),
        ("REINDEX TABLE t", Same),
        ("REINDEX TABLE p", ServerOnly),
        ("CREATE INDEX CONCURRENTLY t_idx2 ON t (a)", Same),
        ("CREATE UNIQUE INDEX CONCURRENTLY t_idx3 ON t (a)", Same),
        ("DROP INDEX CONCURRENTLY t_idx", Same),
        ("ALTER TABLE p DETACH PARTITION p1 CONCURRENTLY", Same),
        ("ALTER TABLE p DETACH PARTITION p1", Same),
        ("DISCARD ALL", Same),
        ("DISCARD PLANS", Same),
        ("ALTER SYSTEM SET work_mem = '4MB'", Same),
        ("CREATE DATABASE never_made", Same),
        ("DROP DATABASE IF EXISTS never_made", Same),
        ("CREATE TABLESPACE never_made LOCATION '/nonexistent'", Same),
        ("DROP TABLESPACE IF EXISTS never_made", Same),
        ("COMMIT PREPARED 'never_made'", Same),
        ("ROLLBACK PREPARED 'never_made'", Same),
        ("REFRESH MATERIALIZED VIEW CONCURRENTLY v", Same),
        (
            "CREATE SUBSCRIPTION never_made CONNECTION 'host=127.0.0.1 port=1' PUBLICATION p",
            Same,
        ),
        (
            "CREATE SUBSCRIPTION never_made CONNECTION 'host=127.0.0.1 port=1' PUBLICATION p \
             WITH (connect = false)",
            Same,
        ),
        ("DROP SUBSCRIPTION IF EXISTS never_made", CheckOnly),
    ];
    for (sql, expect) in cases {
        client.batch_execute("BEGIN").await.expect("BEGIN");
        let server_refuses = match client.simple_query(sql).await {
            Ok(_) => false,
            Err(error) => error.code() == Some(&SqlState::ACTIVE_SQL_TRANSACTION),
        };
        client.batch_execute("ROLLBACK").await.expect("ROLLBACK");
        let check_refuses = !transaction::check("1_x.sql", sql, false).is_empty();
        let seen = match (server_refuses, check_refuses) {
            (true, false) => ServerOnly,
            (false, true) => CheckOnly,
            _ => Same,
        };
        assert_eq!(
            seen, *expect,
            "{sql}: the server refuses it: {server_refuses}; the check: {check_refuses}"
        );
    }
    assert_eq!(history_tables(&client).await, 0);
}

/// Nothing above may have left a history table (or anything else) behind.
async fn history_tables(client: &tokio_postgres::Client) -> i64 {
    number(
        client,
        "SELECT count(*) FROM pg_class WHERE relname LIKE 'schema_migrations%'",
    )
    .await
}
