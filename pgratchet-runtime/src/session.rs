//! What a migration's SQL may do to the session it runs on: pure text checks, no I/O.

use pgratchet_core::lexer;

/// Whether `sql` may change session settings that the runner's own statements depend on or
/// that would reach the next migration (`SET`, `RESET`, `set_config`, a role, a search_path, a
/// timeout, also inside dynamic SQL). A false positive only costs a few statements.
pub(crate) fn may_change_session(sql: &str) -> bool {
    let lower = sql.to_ascii_lowercase();
    [
        "set_config",
        "set role",
        "set session",
        "set local",
        "search_path",
        "_timeout",
        "read_only",
        "synchronous_commit",
    ]
    .iter()
    .any(|word| lower.contains(word))
        || lexer::split(sql).iter().any(|statement| {
            matches!(
                statement.keywords(1).first().map(String::as_str),
                Some("SET" | "RESET")
            )
        })
}

/// The first statement of a no-transaction script that changes session state (its line and
/// shape). Behind a transaction pooler each statement of such a script may run on another
/// server connection, so the change would stay on a connection the pooler lends to other
/// clients, and a `RESET` after it may reach yet another one: such a script is refused there.
/// Transaction-scoped forms (`SET LOCAL`, `SET TRANSACTION`, `SET CONSTRAINTS`) are fine.
pub(crate) fn pooler_leak(sql: &str) -> Option<(u32, &'static str)> {
    lexer::executed(sql).find_map(|statement| {
        let words = statement.keywords(3);
        let word = |index: usize| words.get(index).map(String::as_str);
        let shape = match (word(0), word(1), word(2)) {
            (Some("SET"), Some("LOCAL" | "TRANSACTION" | "CONSTRAINTS"), _) => None,
            (Some("SET"), Some("SESSION"), Some("AUTHORIZATION")) => {
                Some("SET SESSION AUTHORIZATION")
            }
            (Some("SET"), Some("ROLE"), _) | (Some("SET"), Some("SESSION"), Some("ROLE")) => {
                Some("SET ROLE")
            }
            (Some("SET"), Some("SESSION"), Some("CHARACTERISTICS")) => {
                Some("SET SESSION CHARACTERISTICS")
            }
            (Some("SET"), _, _) => Some("SET"),
            (Some("RESET"), _, _) => Some("RESET"),
            (Some("DISCARD"), _, _) => Some("DISCARD"),
            _ if calls_set_config(statement.text) => Some("set_config()"),
            _ => None,
        };
        shape.map(|shape| (statement.line, shape))
    })
}

/// Whether a statement calls `set_config` (which may set a value for the whole session).
fn calls_set_config(text: &str) -> bool {
    let lower = text.to_ascii_lowercase();
    lower.match_indices("set_config").any(|(at, _)| {
        lower[at + "set_config".len()..]
            .trim_start()
            .starts_with('(')
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_changes_are_found_with_their_line() {
        for (sql, found) in [
            ("SET search_path TO app;", Some((1, "SET"))),
            ("set work_mem = '1GB'", Some((1, "SET"))),
            ("SET SESSION statement_timeout = 0;", Some((1, "SET"))),
            ("SET ROLE app;", Some((1, "SET ROLE"))),
            ("SET SESSION ROLE app;", Some((1, "SET ROLE"))),
            (
                "SET SESSION AUTHORIZATION app;",
                Some((1, "SET SESSION AUTHORIZATION")),
            ),
            (
                "SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY;",
                Some((1, "SET SESSION CHARACTERISTICS")),
            ),
            ("RESET ALL;", Some((1, "RESET"))),
            ("RESET ROLE;", Some((1, "RESET"))),
            ("DISCARD TEMP;", Some((1, "DISCARD"))),
            (
                "CREATE INDEX CONCURRENTLY i ON t (a);\n\nSELECT set_config('search_path', 'x', false);",
                Some((3, "set_config()")),
            ),
            ("SET LOCAL lock_timeout = 0;", None),
            ("SET TRANSACTION ISOLATION LEVEL SERIALIZABLE;", None),
            ("SET CONSTRAINTS ALL DEFERRED;", None),
            ("CREATE INDEX CONCURRENTLY i ON t (a);", None),
            ("UPDATE t SET a = 1;", None),
            ("-- SET search_path TO x;\nSELECT 'RESET';", None),
            ("SELECT my_set_config_helper;", None),
        ] {
            assert_eq!(pooler_leak(sql), found, "{sql}");
        }
    }

    #[test]
    fn changes_that_need_a_reset_after_the_migration() {
        for sql in [
            "SET ROLE app;",
            "select set_config('a.b', '1', false);",
            "ALTER TABLE t SET (fillfactor = 70); SET statement_timeout = 0;",
            "SET LOCAL synchronous_commit = off;",
            "RESET ALL;",
        ] {
            assert!(may_change_session(sql), "{sql}");
        }
        for sql in ["CREATE TABLE t (id int);", "UPDATE t SET a = 1;"] {
            assert!(!may_change_session(sql), "{sql}");
        }
    }
}
