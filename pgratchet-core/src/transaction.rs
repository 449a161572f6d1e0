//! Statements that cannot run the way a file asks to be run.
//!
//! A transactional file (the default) runs in one transaction, so statements PostgreSQL refuses in
//! a transaction block, and statements that end or start a transaction themselves, are errors at
//! build time rather than at deploy time. psql meta-commands and `COPY ... FROM STDIN` are errors
//! in any file: the server does not understand the former, and a migration cannot stream data for
//! the latter. Statements are matched by the shape of their top-level keywords, so a word in a
//! string, a comment, a dollar-quoted body or a parenthesis never matches.

use crate::lexer::{self, significant_tokens, TokenKind};
use crate::Problem;

const NO_TRANSACTION_FIX: &str = "put `-- migrate:no-transaction` on the file's first line \
                                  (each statement then runs on its own)";

/// Every problem of `sql` (BOM-stripped text of `file`, relative to the migrations directory),
/// run inside a transaction unless `no_transaction`.
pub fn check(file: &str, sql: &str, no_transaction: bool) -> Vec<Problem> {
    let mut problems = Vec::new();
    // A BOM left on by a caller would glue itself to the first keyword.
    let sql = crate::checksum::strip_bom(sql);
    for statement in lexer::split(sql) {
        let words = top_level_words(statement.text);
        let at = |message: String| {
            Problem::at_line(
                file,
                statement.line,
                format!("`{file}` line {}: {message}", statement.line),
            )
        };
        let body = statement.sql();
        if body.starts_with('\\') {
            problems.push(at(meta_command_message(body)));
        } else if let Some(message) = copy_message(&words) {
            problems.push(at(message.to_string()));
        } else if let Some(message) = lock_release_message(statement.text, &words) {
            problems.push(at(message.to_string()));
        } else if no_transaction {
            continue;
        } else if let Some((shape, extra_fix)) = refused_in_transaction(&words) {
            problems.push(at(format!(
                "`{shape}` cannot run inside a transaction block; {NO_TRANSACTION_FIX}{extra_fix}"
            )));
        } else if let Some(shape) = transaction_control(&words) {
            problems.push(at(format!(
                "`{shape}` would control the transaction this migration already runs in (each \
                 migration is one transaction, committed when the file succeeds); remove it, or \
                 put `-- migrate:no-transaction` on the file's first line to manage transactions \
                 yourself"
            )));
        }
    }
    problems
}

/// The statement's tokens outside parentheses: bare words uppercased, anything else (including
/// the parentheses themselves) as `""`, so that `FROM (x) STDIN` never reads as `FROM STDIN`.
fn top_level_words(text: &str) -> Vec<String> {
    let mut depth = 0usize;
    let mut words = Vec::new();
    for token in significant_tokens(text) {
        let outside = depth == 0;
        match token.kind {
            TokenKind::Punct(b'(') => depth += 1,
            TokenKind::Punct(b')') => depth = depth.saturating_sub(1),
            _ => {}
        }
        if outside || depth == 0 {
            words.push(match token.kind {
                TokenKind::Word => text[token.start..token.end].to_ascii_uppercase(),
                _ => String::new(),
            });
        }
    }
    words
}

fn starts(words: &[String], shape: &[&str]) -> bool {
    words.len() >= shape.len() && words.iter().zip(shape).all(|(word, want)| word == want)
}

fn contains(words: &[String], shape: &[&str]) -> bool {
    (0..words.len()).any(|i| starts(&words[i..], shape))
}

fn meta_command_message(body: &str) -> String {
    let command = body.split_whitespace().next().unwrap_or(body);
    let fix = match command {
        "\\i" | "\\ir" | "\\include" | "\\include_relative" => {
            "; to include another file, copy its statements into this migration"
        }
        "\\c" | "\\connect" => "; a migration runs on the connection the runner was given",
        _ => "",
    };
    format!(
        "`{command}` is a psql meta-command, which the server does not understand (migrations are \
         sent to the server as plain SQL, not run through psql); remove it{fix}"
    )
}

fn copy_message(words: &[String]) -> Option<&'static str> {
    if !starts(words, &["COPY"]) {
        None
    } else if contains(words, &["FROM", "STDIN"]) {
        Some(
            "`COPY ... FROM STDIN` needs the client to stream the data, which a migration cannot \
             do; write the rows as `INSERT ... VALUES`, or use `COPY ... FROM '<file on the \
             database server>'`",
        )
    } else if contains(words, &["TO", "STDOUT"]) {
        Some(
            "`COPY ... TO STDOUT` sends rows to the client, which a migration cannot receive; \
             remove it, or use `COPY ... TO '<file on the database server>'`",
        )
    } else {
        None
    }
}

/// A statement that releases every session advisory lock, the runner's migration lock with them,
/// so that a second starter could run at the same time: refused in any file. The function is
/// looked for in string and dollar-quoted bodies too (a `DO` block, dynamic SQL).
fn lock_release_message(text: &str, words: &[String]) -> Option<&'static str> {
    const UNLOCK_ALL: &str = "pg_advisory_unlock_all";
    if starts(words, &["DISCARD", "ALL"]) {
        return Some(
            "`DISCARD ALL` releases every session advisory lock, the migration lock included, so \
             a second starter could run at the same time; remove it (`DISCARD PLANS`, `DISCARD \
             SEQUENCES` and `DISCARD TEMP` reset the rest, and the runner resets the session after \
             a migration)",
        );
    }
    let calls_unlock_all = significant_tokens(text).any(|token| {
        let token_text = &text[token.start..token.end];
        match token.kind {
            TokenKind::Word => token_text.eq_ignore_ascii_case(UNLOCK_ALL),
            TokenKind::Quoted => token_text.to_ascii_lowercase().contains(UNLOCK_ALL),
            _ => false,
        }
    });
    calls_unlock_all.then_some(
        "`pg_advisory_unlock_all()` releases every session advisory lock, the migration lock \
         included, so a second starter could run at the same time; remove it (release a lock of \
         your own with `pg_advisory_unlock(key)`, or take it with `pg_advisory_xact_lock`, which \
         ends with the transaction)",
    )
}

/// The shape of a statement PostgreSQL refuses inside a transaction block, and the fix besides
/// `-- migrate:no-transaction`.
fn refused_in_transaction(words: &[String]) -> Option<(&'static str, &'static str)> {
    const DROP_CONCURRENTLY: &str = ", or drop `CONCURRENTLY`";
    if starts(words, &["CREATE", "INDEX", "CONCURRENTLY"]) {
        return Some(("CREATE INDEX CONCURRENTLY", DROP_CONCURRENTLY));
    }
    if starts(words, &["CREATE", "UNIQUE", "INDEX", "CONCURRENTLY"]) {
        return Some(("CREATE UNIQUE INDEX CONCURRENTLY", DROP_CONCURRENTLY));
    }
    if starts(words, &["DROP", "INDEX", "CONCURRENTLY"]) {
        return Some(("DROP INDEX CONCURRENTLY", DROP_CONCURRENTLY));
    }
    if starts(words, &["REINDEX"]) {
        // `REINDEX [ (options) ] { INDEX | TABLE | SCHEMA | DATABASE | SYSTEM } [ CONCURRENTLY ] name`
        let mut rest = words[1..].iter().skip_while(|word| word.is_empty());
        let object = rest.next().map(String::as_str);
        if rest.next().is_some_and(|word| word == "CONCURRENTLY") {
            return Some(("REINDEX ... CONCURRENTLY", DROP_CONCURRENTLY));
        }
        match object {
            Some("DATABASE") => return Some(("REINDEX DATABASE", "")),
            Some("SYSTEM") => return Some(("REINDEX SYSTEM", "")),
            _ => {}
        }
    }
    if starts(words, &["ALTER", "TABLE"]) {
        let detach = (0..words.len()).find(|&i| starts(&words[i..], &["DETACH", "PARTITION"]));
        if detach.is_some_and(|i| words[i..].iter().any(|word| word == "CONCURRENTLY")) {
            return Some((
                "ALTER TABLE ... DETACH PARTITION ... CONCURRENTLY",
                DROP_CONCURRENTLY,
            ));
        }
    }
    if starts(words, &["VACUUM"]) {
        return Some((
            "VACUUM",
            ", or remove it (autovacuum does this work; `ANALYZE` alone may run in a transaction)",
        ));
    }
    let plain: &[(&[&str], &'static str)] = &[
        (&["CREATE", "DATABASE"], "CREATE DATABASE"),
        (&["DROP", "DATABASE"], "DROP DATABASE"),
        (&["CREATE", "TABLESPACE"], "CREATE TABLESPACE"),
        (&["DROP", "TABLESPACE"], "DROP TABLESPACE"),
        (&["ALTER", "SYSTEM"], "ALTER SYSTEM"),
    ];
    if let Some((_, shape)) = plain.iter().find(|(shape, _)| starts(words, shape)) {
        return Some((shape, ""));
    }
    if starts(words, &["ALTER", "DATABASE"])
        && words
            .get(3..5)
            .is_some_and(|w| starts(w, &["SET", "TABLESPACE"]))
    {
        return Some(("ALTER DATABASE ... SET TABLESPACE", ""));
    }
    None
}

/// The shape of a statement that starts or ends a transaction itself.
fn transaction_control(words: &[String]) -> Option<&'static str> {
    let first = words.first().map(String::as_str)?;
    let second = words.get(1).map(String::as_str);
    match first {
        "BEGIN" if second != Some("ATOMIC") => Some("BEGIN"),
        "START" if second == Some("TRANSACTION") => Some("START TRANSACTION"),
        "COMMIT" => Some("COMMIT"),
        "END" => Some("END"),
        "ABORT" => Some("ABORT"),
        "PREPARE" if second == Some("TRANSACTION") => Some("PREPARE TRANSACTION"),
        "ROLLBACK" => {
            // `ROLLBACK [WORK | TRANSACTION] TO [SAVEPOINT] x` stays inside the transaction.
            let to = match second {
                Some("WORK" | "TRANSACTION") => words.get(2),
                _ => words.get(1),
            };
            (to.map(String::as_str) != Some("TO")).then_some("ROLLBACK")
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
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
}
