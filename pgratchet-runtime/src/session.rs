//! The session a migration runs on: what its SQL may do to it (pure text checks), and how the
//! runner puts it back afterwards ([`Setup`]), with no I/O here.

use pgratchet_core::lexer;
use tokio_postgres::SimpleQueryMessage;

use crate::ident::{literal, quote};

/// The caller's own session setup as the runner found it when it took the connection: a pool
/// hook's `SET search_path`, `SET ROLE`, timeouts, `TimeZone`, `application_name`. `RESET ALL`
/// and `RESET ROLE` after a migration would undo them, so later migrations would land in
/// another schema or with another owner; they are put back after every reset.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Snapshot {
    session_user: String,
    current_user: String,
    /// `pg_settings` rows set in this session (`source = 'session'`), as `(name, setting)`.
    settings: Vec<(String, String)>,
}

impl Snapshot {
    /// Two statements: the users, then the settings (the role and the session authorization are
    /// put back through the users).
    pub(crate) const SQL: &'static str = "SELECT session_user, current_user;\n\
         SELECT name, setting FROM pg_catalog.pg_settings WHERE source = 'session' \
         AND name NOT IN ('role', 'session_authorization') ORDER BY name;\n";

    /// From the messages of [`SQL`](Self::SQL): the first row has the users, the rest the
    /// settings. `None` if the users are missing.
    pub(crate) fn parse(messages: &[SimpleQueryMessage]) -> Option<Snapshot> {
        let mut rows = messages.iter().filter_map(|message| match message {
            SimpleQueryMessage::Row(row) => Some(row),
            _ => None,
        });
        let users = rows.next()?;
        Some(Snapshot {
            session_user: users.get(0)?.to_owned(),
            current_user: users.get(1)?.to_owned(),
            settings: rows
                .filter_map(|row| Some((row.get(0)?.to_owned(), row.get(1)?.to_owned())))
                .collect(),
        })
    }
}

/// How the runner puts its connection back after a migration that may have changed it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Setup {
    /// The caller's session (`None` behind a transaction pooler, where a session is not the
    /// caller's: the server connection is shared).
    pub(crate) snapshot: Option<Snapshot>,
    /// The runner's own `client_connection_check_interval` in milliseconds, when the server
    /// takes it (PostgreSQL 14 and later, on platforms that support it).
    pub(crate) check_interval_ms: Option<u128>,
}

impl Setup {
    /// After a migration (outside any transaction): every setting back to the session's
    /// defaults, then the caller's setup and the runner's own setting again. `RESET ALL` leaves
    /// the role and the session authorization alone, so they are reset too (a migration's `SET
    /// SESSION AUTHORIZATION` survives `RESET ROLE` as well). Never `DISCARD ALL`, which would
    /// release the migration lock.
    pub(crate) fn reset_sql(&self) -> String {
        let mut sql = String::from("RESET ALL;\n");
        match &self.snapshot {
            Some(snapshot) => {
                // Also sets the current user to the session user.
                sql.push_str(&format!(
                    "SET SESSION AUTHORIZATION {};\n",
                    quote(&snapshot.session_user)
                ));
                if !snapshot.settings.is_empty() {
                    let values: Vec<String> = snapshot
                        .settings
                        .iter()
                        .map(|(name, value)| format!("({}, {})", literal(name), literal(value)))
                        .collect();
                    // set_config parses the value as SET would read it unquoted, so a list
                    // (search_path, DateStyle) stays a list.
                    sql.push_str(&format!(
                        "SELECT set_config(name, value, false) FROM (VALUES {}) AS setting (name, value);\n",
                        values.join(", ")
                    ));
                }
                if snapshot.current_user != snapshot.session_user {
                    sql.push_str(&format!("SET ROLE {};\n", quote(&snapshot.current_user)));
                }
            }
            None => sql.push_str("RESET SESSION AUTHORIZATION;\nRESET ROLE;\n"),
        }
        if let (Some(ms), Some(_)) = (self.check_interval_ms, &self.snapshot) {
            sql.push_str(&format!("SET client_connection_check_interval = {ms};\n"));
        }
        sql
    }

    /// Inside a migration's transaction, before its record: what the migration's SQL may have
    /// changed that would make the runner's own statements fail (a `SET ROLE` to a role that may
    /// not write the history table, a tiny `statement_timeout`), with `timeouts` for the rest of
    /// the transaction. Not `RESET ALL`: that would also drop the transaction-local settings of a
    /// grouped run.
    pub(crate) fn restore_in_transaction_sql(&self, timeouts: &str) -> String {
        let mut sql = match &self.snapshot {
            Some(snapshot) => {
                let mut sql = format!(
                    "SET LOCAL SESSION AUTHORIZATION {};\n",
                    quote(&snapshot.session_user)
                );
                if snapshot.current_user != snapshot.session_user {
                    sql.push_str(&format!(
                        "SET LOCAL ROLE {};\n",
                        quote(&snapshot.current_user)
                    ));
                }
                sql
            }
            None => {
                String::from("SET LOCAL SESSION AUTHORIZATION DEFAULT;\nSET LOCAL ROLE NONE;\n")
            }
        };
        sql.push_str("SET LOCAL search_path TO DEFAULT;\n");
        sql.push_str(timeouts);
        sql
    }
}

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

    fn snapshot(current_user: &str, settings: &[(&str, &str)]) -> Snapshot {
        Snapshot {
            session_user: "app".to_owned(),
            current_user: current_user.to_owned(),
            settings: settings
                .iter()
                .map(|(name, value)| ((*name).to_owned(), (*value).to_owned()))
                .collect(),
        }
    }

    #[test]
    fn a_reset_puts_back_the_callers_session_and_the_runners_setting() {
        let setup = Setup {
            snapshot: Some(snapshot(
                "owner",
                &[("search_path", "app, public"), ("TimeZone", "Europe/Paris")],
            )),
            check_interval_ms: Some(2000),
        };
        assert_eq!(
            setup.reset_sql(),
            "RESET ALL;\n\
             SET SESSION AUTHORIZATION \"app\";\n\
             SELECT set_config(name, value, false) FROM (VALUES (E'search_path', E'app, public'), (E'TimeZone', E'Europe/Paris')) AS setting (name, value);\n\
             SET ROLE \"owner\";\n\
             SET client_connection_check_interval = 2000;\n"
        );
        let plain = Setup {
            snapshot: Some(snapshot("app", &[])),
            check_interval_ms: None,
        };
        assert_eq!(
            plain.reset_sql(),
            "RESET ALL;\nSET SESSION AUTHORIZATION \"app\";\n"
        );
    }

    #[test]
    fn behind_a_pooler_a_reset_goes_back_to_the_defaults() {
        let setup = Setup {
            snapshot: None,
            check_interval_ms: Some(2000),
        };
        assert_eq!(
            setup.reset_sql(),
            "RESET ALL;\nRESET SESSION AUTHORIZATION;\nRESET ROLE;\n"
        );
        assert_eq!(
            setup.restore_in_transaction_sql(""),
            "SET LOCAL SESSION AUTHORIZATION DEFAULT;\nSET LOCAL ROLE NONE;\nSET LOCAL search_path TO DEFAULT;\n"
        );
    }

    #[test]
    fn inside_a_transaction_the_role_comes_back_for_the_record() {
        let setup = Setup {
            snapshot: Some(snapshot("owner", &[("search_path", "app")])),
            check_interval_ms: None,
        };
        assert_eq!(
            setup.restore_in_transaction_sql("SET LOCAL lock_timeout = 500;\n"),
            "SET LOCAL SESSION AUTHORIZATION \"app\";\nSET LOCAL ROLE \"owner\";\n\
             SET LOCAL search_path TO DEFAULT;\nSET LOCAL lock_timeout = 500;\n"
        );
    }

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
