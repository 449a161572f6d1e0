//! The statements PostgreSQL refuses inside a transaction block (SQLSTATE 25001): one entry per
//! caller of `PreventInTransactionBlock` in PostgreSQL 15 whose refusal the statement's text
//! shows. `tests.rs` walks the whole list of callers, including the few that only the server can
//! decide (it must look at the catalog), and says for each why.
//!
//! `DISCARD ALL` is refused in every file, for a stronger reason (it releases the migration
//! lock), before this list is read; `COMMIT PREPARED` and `ROLLBACK PREPARED` are transaction
//! control, refused as such.

use super::words::Words;

/// A statement shape PostgreSQL refuses in a transaction block.
pub(super) struct Refusal {
    /// The shape as the message names it.
    pub(super) shape: &'static str,
    /// The fix besides `-- migrate:no-transaction`, starting with `, or`, or empty.
    pub(super) fix: &'static str,
    matches: fn(&Words) -> bool,
}

const DROP_CONCURRENTLY: &str = ", or drop `CONCURRENTLY`";
const REINDEX_EACH: &str = ", or reindex each table or index on its own";

/// What a `REINDEX` rebuilds (`INDEX`, `TABLE`, `SCHEMA`, ...), after its option list.
fn reindex_of(words: &Words) -> Option<&str> {
    if !words.starts(&["REINDEX"]) {
        return None;
    }
    words.top[1..]
        .iter()
        .find(|word| !word.is_empty())
        .map(String::as_str)
}

const REFUSALS: &[Refusal] = &[
    Refusal {
        shape: "CREATE INDEX CONCURRENTLY",
        fix: DROP_CONCURRENTLY,
        matches: |w| {
            w.starts(&["CREATE", "INDEX", "CONCURRENTLY"])
                || w.starts(&["CREATE", "UNIQUE", "INDEX", "CONCURRENTLY"])
        },
    },
    Refusal {
        shape: "DROP INDEX CONCURRENTLY",
        fix: DROP_CONCURRENTLY,
        matches: |w| w.starts(&["DROP", "INDEX", "CONCURRENTLY"]),
    },
    Refusal {
        shape: "REINDEX ... CONCURRENTLY",
        fix: DROP_CONCURRENTLY,
        // `REINDEX [ (option [, ...]) ] { INDEX | TABLE | SCHEMA | DATABASE | SYSTEM }
        // [ CONCURRENTLY ] name`, where an option may be `CONCURRENTLY [ boolean ]`.
        matches: |w| {
            w.starts(&["REINDEX"])
                && (w.top.iter().any(|word| word == "CONCURRENTLY")
                    || w.option("CONCURRENTLY") == Some(true))
        },
    },
    Refusal {
        shape: "REINDEX SCHEMA",
        fix: REINDEX_EACH,
        matches: |w| reindex_of(w) == Some("SCHEMA"),
    },
    Refusal {
        shape: "REINDEX DATABASE",
        fix: REINDEX_EACH,
        matches: |w| reindex_of(w) == Some("DATABASE"),
    },
    Refusal {
        shape: "REINDEX SYSTEM",
        fix: REINDEX_EACH,
        matches: |w| reindex_of(w) == Some("SYSTEM"),
    },
    Refusal {
        shape: "ALTER TABLE ... DETACH PARTITION ... CONCURRENTLY",
        fix: DROP_CONCURRENTLY,
        matches: |w| {
            w.starts(&["ALTER", "TABLE"])
                && w.top
                    .iter()
                    .position(|word| word == "DETACH")
                    .is_some_and(|at| w.top[at..].iter().any(|word| word == "CONCURRENTLY"))
        },
    },
    Refusal {
        shape: "VACUUM",
        fix: ", or remove it (autovacuum does this work; `ANALYZE` alone may run in a transaction)",
        matches: |w| w.starts(&["VACUUM"]),
    },
    Refusal {
        shape: "CLUSTER",
        fix: ", or name the table (`CLUSTER t USING i`): only `CLUSTER` of every table is refused",
        matches: |w| w.top == ["CLUSTER"] || w.top == ["CLUSTER", "VERBOSE"],
    },
    Refusal {
        shape: "CREATE DATABASE",
        fix: "",
        matches: |w| w.starts(&["CREATE", "DATABASE"]),
    },
    Refusal {
        shape: "DROP DATABASE",
        fix: "",
        matches: |w| w.starts(&["DROP", "DATABASE"]),
    },
    Refusal {
        shape: "ALTER DATABASE ... SET TABLESPACE",
        fix: "",
        // `SET TABLESPACE t`, or `[WITH] TABLESPACE t` among the options.
        matches: |w| w.starts(&["ALTER", "DATABASE"]) && w.contains(&["TABLESPACE"]),
    },
    Refusal {
        shape: "CREATE TABLESPACE",
        fix: "",
        matches: |w| w.starts(&["CREATE", "TABLESPACE"]),
    },
    Refusal {
        shape: "DROP TABLESPACE",
        fix: "",
        matches: |w| w.starts(&["DROP", "TABLESPACE"]),
    },
    Refusal {
        shape: "ALTER SYSTEM",
        fix: "",
        matches: |w| w.starts(&["ALTER", "SYSTEM"]),
    },
    Refusal {
        shape: "CREATE SUBSCRIPTION",
        fix: ", or create it without a replication slot (`WITH (create_slot = false)`, or \
              `connect = false`): creating one is what the server refuses in a transaction",
        // create_slot defaults to true, and to false with `connect = false`.
        matches: |w| {
            w.starts(&["CREATE", "SUBSCRIPTION"])
                && w.option("CREATE_SLOT") != Some(false)
                && w.option("CONNECT") != Some(false)
        },
    },
    Refusal {
        shape: "ALTER SUBSCRIPTION ... PUBLICATION",
        fix: ", or add `WITH (refresh = false)` (the refresh is what the server refuses in a \
              transaction) and refresh it in a no-transaction migration",
        // The server refuses it for an enabled subscription, which it looks up; from the text,
        // every `SET`/`ADD`/`DROP PUBLICATION` without `refresh = false` may be.
        matches: |w| {
            w.starts(&["ALTER", "SUBSCRIPTION"])
                && ["SET", "ADD", "DROP"]
                    .iter()
                    .any(|verb| w.contains(&[verb, "PUBLICATION"]))
                && w.option("REFRESH") != Some(false)
        },
    },
    Refusal {
        shape: "ALTER SUBSCRIPTION ... REFRESH PUBLICATION",
        fix: "",
        matches: |w| {
            w.starts(&["ALTER", "SUBSCRIPTION"]) && w.contains(&["REFRESH", "PUBLICATION"])
        },
    },
    Refusal {
        shape: "DROP SUBSCRIPTION",
        fix: " (the server refuses it when the subscription has a replication slot, which is the \
              default: from the file alone it cannot be told)",
        matches: |w| w.starts(&["DROP", "SUBSCRIPTION"]),
    },
];

/// The refusal a statement runs into, if any.
pub(super) fn refusal(words: &Words) -> Option<&'static Refusal> {
    REFUSALS.iter().find(|refusal| (refusal.matches)(words))
}
