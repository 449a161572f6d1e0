use super::*;

fn messages(sql: &str, no_transaction: bool) -> Vec<String> {
    check("5_idx.sql", sql, no_transaction)
        .into_iter()
        .map(|p| p.message)
        .collect()
}

fn flagged(sql: &str) -> bool {
    !check("5_idx.sql", sql, false).is_empty()
}

#[test]
fn concurrently_message_and_line() {
    let problems = check(
        "5_idx.sql",
        "SELECT 1;\n\nCREATE INDEX CONCURRENTLY i ON t (a);\n",
        false,
    );
    assert_eq!(problems.len(), 1);
    assert_eq!(problems[0].file, "5_idx.sql");
    assert_eq!(problems[0].line, Some(3));
    assert_eq!(
        problems[0].message,
        "`5_idx.sql` line 3: `CREATE INDEX CONCURRENTLY` cannot run inside a transaction block; put `-- migrate:no-transaction` on the file's first line (each statement then runs on its own), or drop `CONCURRENTLY`"
    );
    assert!(messages("CREATE INDEX CONCURRENTLY i ON t (a);", true).is_empty());
}

#[test]
fn refused_shapes() {
    for sql in [
        "create index concurrently i on t (a)",
        "CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS i ON t (a);",
        "DROP INDEX CONCURRENTLY i;",
        "REINDEX INDEX CONCURRENTLY x;",
        "REINDEX (VERBOSE) TABLE CONCURRENTLY t;",
        "REINDEX DATABASE d;",
        "ALTER TABLE p DETACH PARTITION p1 CONCURRENTLY;",
        "ALTER TABLE IF EXISTS ONLY p DETACH PARTITION p1 CONCURRENTLY;",
        "VACUUM;",
        "VACUUM (ANALYZE) t;",
        "/* c */ vacuum full t;",
        "CREATE DATABASE d;",
        "DROP DATABASE IF EXISTS d;",
        "CREATE TABLESPACE s LOCATION '/x';",
        "DROP TABLESPACE s;",
        "ALTER SYSTEM SET work_mem = '64MB';",
        "ALTER DATABASE d SET TABLESPACE s;",
        "BEGIN;",
        "begin transaction isolation level serializable;",
        "START TRANSACTION;",
        "COMMIT;",
        "COMMIT AND CHAIN;",
        "END;",
        "ROLLBACK;",
        "ROLLBACK WORK;",
        "ABORT;",
        "PREPARE TRANSACTION 'x';",
        "\u{feff}VACUUM;",
    ] {
        assert!(flagged(sql), "{sql}");
        assert!(messages(sql, true).is_empty(), "{sql}");
    }
}

#[test]
fn allowed_shapes() {
    for sql in [
        "REFRESH MATERIALIZED VIEW CONCURRENTLY v;",
        "CREATE INDEX i ON t (a);",
        "CREATE INDEX concurrently_idx ON t (a);",
        "REINDEX INDEX x;",
        "REINDEX TABLE t;",
        "ALTER TABLE p DETACH PARTITION p1;",
        "ALTER TABLE p ADD COLUMN concurrently int;",
        "ANALYZE t;",
        "DISCARD PLANS;",
        "ALTER DATABASE d SET work_mem = '64MB';",
        "SAVEPOINT s;",
        "RELEASE SAVEPOINT s;",
        "ROLLBACK TO SAVEPOINT s;",
        "ROLLBACK TO s;",
        "ROLLBACK TRANSACTION TO SAVEPOINT s;",
        "CREATE FUNCTION f() RETURNS int LANGUAGE sql BEGIN ATOMIC SELECT 1; END;",
        "SELECT 'VACUUM; COMMIT';",
        "-- VACUUM;\nSELECT 1;",
        "/* COMMIT; */ SELECT 1;",
        "DO $$ BEGIN EXECUTE 'VACUUM'; COMMIT; END $$;",
        "SELECT \"begin\" FROM t;",
        "COPY t FROM '/srv/data.csv';",
        "COPY (SELECT * FROM stdin) TO '/tmp/x';",
        "INSERT INTO log VALUES ('COPY t FROM STDIN');",
        "",
        "-- only a comment",
    ] {
        assert!(!flagged(sql), "{sql}");
    }
}

#[test]
fn any_file_refuses_meta_commands_and_copy_stdin() {
    for no_transaction in [false, true] {
        assert_eq!(
            messages("SELECT 1;\n\\i other.sql\n", no_transaction),
            ["`5_idx.sql` line 2: `\\i` is a psql meta-command, which the server does not understand (migrations are sent to the server as plain SQL, not run through psql); remove it; to include another file, copy its statements into this migration"]
        );
        assert_eq!(
            messages("\\set ON_ERROR_STOP on\n", no_transaction),
            ["`5_idx.sql` line 1: `\\set` is a psql meta-command, which the server does not understand (migrations are sent to the server as plain SQL, not run through psql); remove it"]
        );
        assert_eq!(messages("\\connect db\n", no_transaction).len(), 1);
        assert_eq!(
            messages("COPY t (a, b) FROM stdin WITH (FORMAT csv);", no_transaction),
            ["`5_idx.sql` line 1: `COPY ... FROM STDIN` needs the client to stream the data, which a migration cannot do; write the rows as `INSERT ... VALUES`, or use `COPY ... FROM '<file on the database server>'`"]
        );
        assert_eq!(messages("COPY t TO STDOUT;", no_transaction).len(), 1);
    }
}

#[test]
fn concurrent_builds_are_told_apart() {
    for sql in [
        "CREATE INDEX CONCURRENTLY i ON t (a);",
        "create unique index concurrently if not exists i on t (a)",
        "DROP INDEX CONCURRENTLY i;",
        "REINDEX INDEX CONCURRENTLY i;",
        "ALTER TABLE p DETACH PARTITION p1 CONCURRENTLY;",
    ] {
        assert!(runs_concurrently(sql), "{sql}");
    }
    for sql in [
        "CREATE INDEX i ON t (a);",
        "REFRESH MATERIALIZED VIEW CONCURRENTLY v;",
        "VACUUM t;",
        "SELECT 'CREATE INDEX CONCURRENTLY';",
    ] {
        assert!(!runs_concurrently(sql), "{sql}");
    }
}

#[test]
fn releasing_every_advisory_lock_is_refused_in_any_file() {
    for no_transaction in [false, true] {
        for sql in [
            "DISCARD ALL;",
            "discard all",
            "SELECT pg_advisory_unlock_all();",
            "SELECT 1 FROM (SELECT PG_ADVISORY_UNLOCK_ALL()) s;",
            "SELECT pg_catalog.pg_advisory_unlock_all();",
            "DO $$ BEGIN PERFORM pg_advisory_unlock_all(); END $$;",
            "DO $$ BEGIN EXECUTE 'SELECT pg_advisory_unlock_all()'; END $$;",
        ] {
            let found = messages(sql, no_transaction);
            assert_eq!(found.len(), 1, "{sql}: {found:?}");
            assert!(
                found[0].contains("releases every session advisory lock"),
                "{sql}: {found:?}"
            );
        }
        for sql in [
            "SELECT pg_advisory_unlock(42);",
            "SELECT pg_advisory_unlock_shared(42);",
            "DISCARD PLANS;",
            "-- pg_advisory_unlock_all()\nSELECT 1;",
        ] {
            assert!(messages(sql, no_transaction).is_empty(), "{sql}");
        }
    }
}

#[test]
fn transaction_control_message() {
    assert_eq!(
        messages("CREATE TABLE t ();\nCOMMIT;", false),
        ["`5_idx.sql` line 2: `COMMIT` would control the transaction this migration already runs in (each migration is one transaction, committed when the file succeeds); remove it, or put `-- migrate:no-transaction` on the file's first line to manage transactions yourself"]
    );
    assert!(messages("BEGIN;\nCREATE TABLE t ();\nCOMMIT;", true).is_empty());
}

#[test]
fn every_statement_is_reported() {
    let problems = check(
        "5_idx.sql",
        "BEGIN;\nCREATE INDEX CONCURRENTLY a ON t (x);\nVACUUM;\nCOMMIT;\n",
        false,
    );
    assert_eq!(
        problems.iter().map(|p| p.line).collect::<Vec<_>>(),
        [Some(1), Some(2), Some(3), Some(4)]
    );
}

/// What the checker says of a statement in a transactional file.
#[derive(Debug, PartialEq, Eq)]
enum Verdict {
    /// Refused at build time, naming this shape.
    Refused(&'static str),
    /// Refused, as transaction control.
    TransactionControl,
    /// Refused, because it releases the migration lock.
    ReleasesTheLock,
    /// Accepted: whether the server refuses it depends on the catalog (why, in words); if it
    /// does, the migration fails at run time with SQLSTATE 25001 and nothing of it is kept.
    RunTime(&'static str),
}

fn verdict(sql: &str) -> Option<String> {
    let problems = messages(sql, false);
    assert!(problems.len() <= 1, "{sql}: {problems:?}");
    problems.into_iter().next()
}

/// Every caller of `PreventInTransactionBlock` in PostgreSQL 15.18 (a grep of its source; each
/// statement checked on a 15.18 server, which refuses it with SQLSTATE 25001), with a statement
/// that reaches it, and what the build-time check makes of it.
#[test]
fn every_statement_postgres_15_refuses_in_a_transaction_block() {
    use Verdict::*;
    let callers: &[(&str, &str, Verdict)] = &[
        ("utility.c COMMIT PREPARED", "COMMIT PREPARED 'x';", TransactionControl),
        ("utility.c ROLLBACK PREPARED", "ROLLBACK PREPARED 'x';", TransactionControl),
        ("utility.c CREATE TABLESPACE", "CREATE TABLESPACE ts LOCATION '/srv/ts';", Refused("CREATE TABLESPACE")),
        ("utility.c DROP TABLESPACE", "DROP TABLESPACE IF EXISTS ts;", Refused("DROP TABLESPACE")),
        ("utility.c CREATE DATABASE", "CREATE DATABASE d TEMPLATE template0;", Refused("CREATE DATABASE")),
        ("utility.c DROP DATABASE", "DROP DATABASE IF EXISTS d WITH (FORCE);", Refused("DROP DATABASE")),
        ("dbcommands.c SET TABLESPACE", "ALTER DATABASE d SET TABLESPACE ts;", Refused("ALTER DATABASE ... SET TABLESPACE")),
        ("dbcommands.c WITH TABLESPACE", "ALTER DATABASE d WITH TABLESPACE ts;", Refused("ALTER DATABASE ... SET TABLESPACE")),
        ("utility.c ALTER SYSTEM", "ALTER SYSTEM SET work_mem = '64MB';", Refused("ALTER SYSTEM")),
        ("utility.c ALTER SYSTEM", "ALTER SYSTEM RESET ALL;", Refused("ALTER SYSTEM")),
        ("discard.c DISCARD ALL", "DISCARD ALL;", ReleasesTheLock),
        ("vacuum.c VACUUM", "VACUUM;", Refused("VACUUM")),
        ("vacuum.c VACUUM", "VACUUM (ANALYZE, VERBOSE) t;", Refused("VACUUM")),
        ("vacuum.c VACUUM", "vacuum full freeze t;", Refused("VACUUM")),
        ("cluster.c CLUSTER of every table", "CLUSTER;", Refused("CLUSTER")),
        ("cluster.c CLUSTER of every table", "CLUSTER VERBOSE;", Refused("CLUSTER")),
        (
            "cluster.c CLUSTER of a partitioned table",
            "CLUSTER p USING p_idx;",
            RunTime("whether `p` is partitioned is in the catalog"),
        ),
        ("utility.c CREATE INDEX CONCURRENTLY", "CREATE INDEX CONCURRENTLY i ON t (a);", Refused("CREATE INDEX CONCURRENTLY")),
        ("utility.c CREATE INDEX CONCURRENTLY", "CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS i ON t (a);", Refused("CREATE INDEX CONCURRENTLY")),
        ("utility.c DROP INDEX CONCURRENTLY", "DROP INDEX CONCURRENTLY IF EXISTS i;", Refused("DROP INDEX CONCURRENTLY")),
        ("utility.c DETACH CONCURRENTLY", "ALTER TABLE IF EXISTS p DETACH PARTITION p1 CONCURRENTLY;", Refused("ALTER TABLE ... DETACH PARTITION ... CONCURRENTLY")),
        ("indexcmds.c REINDEX CONCURRENTLY", "REINDEX INDEX CONCURRENTLY i;", Refused("REINDEX ... CONCURRENTLY")),
        ("indexcmds.c REINDEX CONCURRENTLY", "REINDEX (CONCURRENTLY) TABLE t;", Refused("REINDEX ... CONCURRENTLY")),
        ("indexcmds.c REINDEX CONCURRENTLY", "REINDEX (VERBOSE, CONCURRENTLY true) SCHEMA s;", Refused("REINDEX ... CONCURRENTLY")),
        ("indexcmds.c REINDEX SCHEMA", "REINDEX SCHEMA s;", Refused("REINDEX SCHEMA")),
        ("indexcmds.c REINDEX SCHEMA", "REINDEX (VERBOSE) SCHEMA s;", Refused("REINDEX SCHEMA")),
        ("indexcmds.c REINDEX DATABASE", "REINDEX DATABASE d;", Refused("REINDEX DATABASE")),
        ("indexcmds.c REINDEX SYSTEM", "REINDEX SYSTEM;", Refused("REINDEX SYSTEM")),
        (
            "indexcmds.c REINDEX of a partitioned table or index",
            "REINDEX TABLE p;",
            RunTime("whether `p` is partitioned is in the catalog"),
        ),
        ("subscriptioncmds.c CREATE SUBSCRIPTION", "CREATE SUBSCRIPTION s CONNECTION 'host=x' PUBLICATION p;", Refused("CREATE SUBSCRIPTION")),
        ("subscriptioncmds.c CREATE SUBSCRIPTION", "CREATE SUBSCRIPTION s CONNECTION 'host=x' PUBLICATION p WITH (create_slot = true, enabled = false);", Refused("CREATE SUBSCRIPTION")),
        ("subscriptioncmds.c with refresh", "ALTER SUBSCRIPTION s SET PUBLICATION p;", Refused("ALTER SUBSCRIPTION ... PUBLICATION")),
        ("subscriptioncmds.c with refresh", "ALTER SUBSCRIPTION s ADD PUBLICATION p WITH (copy_data = false);", Refused("ALTER SUBSCRIPTION ... PUBLICATION")),
        ("subscriptioncmds.c with refresh", "ALTER SUBSCRIPTION s DROP PUBLICATION p;", Refused("ALTER SUBSCRIPTION ... PUBLICATION")),
        ("subscriptioncmds.c REFRESH", "ALTER SUBSCRIPTION s REFRESH PUBLICATION WITH (copy_data = false);", Refused("ALTER SUBSCRIPTION ... REFRESH PUBLICATION")),
        ("subscriptioncmds.c DROP SUBSCRIPTION", "DROP SUBSCRIPTION IF EXISTS s;", Refused("DROP SUBSCRIPTION")),
    ];
    for (caller, sql, expected) in callers {
        let found = verdict(sql);
        match expected {
            Refused(shape) => {
                let message = found.unwrap_or_else(|| panic!("{caller}: {sql} was accepted"));
                assert!(
                    message.contains(&format!("`{shape}` cannot run inside a transaction block")),
                    "{caller}: {sql}: {message}"
                );
                assert!(
                    messages(sql, true).is_empty(),
                    "{caller}: {sql} in a no-transaction file"
                );
            }
            TransactionControl => assert!(
                found.is_some_and(|m| m.contains("would control the transaction")),
                "{caller}: {sql}"
            ),
            ReleasesTheLock => assert!(
                found.is_some_and(|m| m.contains("releases every session advisory lock")),
                "{caller}: {sql}"
            ),
            RunTime(_) => assert_eq!(found, None, "{caller}: {sql}"),
        }
    }
}

/// Forms of the same commands that PostgreSQL 15 runs in a transaction block (checked on 15.18).
#[test]
fn what_postgres_15_runs_in_a_transaction_block_is_accepted() {
    for sql in [
        "ANALYZE t;",
        "ANALYZE (VERBOSE);",
        "CLUSTER t USING t_idx;",
        "CLUSTER t;",
        "REINDEX TABLE t;",
        "REINDEX (CONCURRENTLY false) TABLE t;",
        "REINDEX (VERBOSE, TABLESPACE ts) INDEX i;",
        "ALTER TABLE p DETACH PARTITION p1 FINALIZE;",
        "ALTER TABLESPACE ts RENAME TO ts2;",
        "ALTER DATABASE d SET default_tablespace = 'ts';",
        "ALTER DATABASE d CONNECTION LIMIT 10;",
        "DISCARD PLANS;",
        "DISCARD TEMP;",
        "REFRESH MATERIALIZED VIEW CONCURRENTLY v;",
        "CREATE SUBSCRIPTION s CONNECTION 'host=x' PUBLICATION p WITH (create_slot = false);",
        "CREATE SUBSCRIPTION s CONNECTION 'host=x' PUBLICATION p WITH (connect = false);",
        "CREATE SUBSCRIPTION s CONNECTION 'host=x' PUBLICATION p WITH (create_slot = 'off');",
        "ALTER SUBSCRIPTION s SET PUBLICATION p WITH (refresh = false);",
        "ALTER SUBSCRIPTION s ENABLE;",
        "ALTER SUBSCRIPTION s SET (slot_name = NONE);",
        "ALTER SUBSCRIPTION s CONNECTION 'host=y';",
    ] {
        assert_eq!(verdict(sql), None, "{sql}");
    }
}

/// A psql meta-command after a statement's start: `\gexec` runs the query's result as SQL in
/// psql, and the server sees a backslash it cannot parse.
#[test]
fn meta_commands_inside_a_statement_are_refused() {
    for (sql, command) in [
        (
            "SELECT format('CREATE TABLE t%s ()', i) FROM generate_series(1, 3) i \\gexec\n",
            "\\gexec",
        ),
        ("SELECT 1 \\g\n", "\\g"),
        ("SELECT 1 AS one \\gset\n", "\\gset"),
        ("SELECT 1 \\; SELECT 2;", "\\;"),
        ("CREATE TABLE t (id int)\n\\gexec", "\\gexec"),
    ] {
        for no_transaction in [false, true] {
            let found = messages(sql, no_transaction);
            assert_eq!(found.len(), 1, "{sql}: {found:?}");
            assert!(
                found[0].contains(&format!("`{command}` is a psql meta-command")),
                "{sql}: {found:?}"
            );
        }
    }
    // A backslash inside a string is data.
    assert!(messages("SELECT E'a\\\\b', '\\g';", false).is_empty());
}
