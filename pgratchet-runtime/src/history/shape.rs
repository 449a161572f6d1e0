//! The shape of a history table as the runner finds it (missing, ours, a pybmpmon one to adopt,
//! or someone else's), and the DDL that creates or adopts it.

use tokio_postgres::{Client, SimpleQueryMessage};

use crate::ident::{literal, quote};
use crate::table::Table;
use crate::Error;

/// What the history table looks like before the runner touches it.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Shape {
    Missing,
    /// Ours, possibly without the log table yet.
    Ours {
        version_is_integer: bool,
    },
    /// A pybmpmon table: the core columns are there, ours are to be added.
    Pybmpmon,
}

const OUR_COLUMNS: [&str; 9] = [
    "version",
    "name",
    "checksum",
    "applied_at",
    "execution_time_ms",
    "state",
    "applied_by",
    "down_sql",
    "error",
];
const PYBMPMON_COLUMNS: [&str; 5] = [
    "version",
    "name",
    "checksum",
    "applied_at",
    "execution_time_ms",
];

/// Looks at the table's columns in the catalog.
pub(crate) async fn inspect(client: &Client, table: &Table) -> Result<Shape, Error> {
    // The key: a primary key or unique index whose only key column is `version`, on all rows
    // (not partial), on the column itself (not an expression), and usable (valid).
    let sql = format!(
        "SELECT a.attname, format_type(a.atttypid, a.atttypmod), c.relkind, \
         EXISTS (SELECT 1 FROM pg_catalog.pg_index i JOIN pg_catalog.pg_attribute k \
                 ON k.attrelid = i.indrelid AND k.attnum = i.indkey[0] AND k.attname = 'version' \
                 WHERE i.indrelid = c.oid AND i.indisunique AND i.indisvalid AND i.indnkeyatts = 1 \
                 AND i.indpred IS NULL AND i.indexprs IS NULL) \
         FROM pg_catalog.pg_class c \
         JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
         LEFT JOIN pg_catalog.pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped \
         WHERE n.nspname = {} AND c.relname = {} ORDER BY a.attnum",
        literal(&table.schema),
        literal(&table.name)
    );
    let messages = client
        .simple_query(&sql)
        .await
        .map_err(|e| Error::db(format!("could not inspect {}", table.display()), e))?;
    let mut columns: Vec<(String, String)> = Vec::new();
    let mut relkind = None;
    let mut keyed = false;
    for message in &messages {
        if let SimpleQueryMessage::Row(row) = message {
            relkind = row.get(2).map(str::to_owned);
            keyed = row.get(3) == Some("t");
            if let (Some(name), Some(kind)) = (row.get(0), row.get(1)) {
                columns.push((name.to_owned(), kind.to_owned()));
            }
        }
    }
    let Some(relkind) = relkind else {
        return Ok(Shape::Missing);
    };
    let has = |name: &str| columns.iter().any(|(column, _)| column == name);
    let version_type = columns
        .iter()
        .find(|(column, _)| column == "version")
        .map(|(_, kind)| kind.as_str());
    let version_is_integer = version_type == Some("integer");
    let numeric_version = matches!(version_type, Some("integer" | "bigint"));
    if (relkind == "r" || relkind == "p") && numeric_version {
        let shape = if OUR_COLUMNS.iter().all(|column| has(column)) {
            Some(Shape::Ours { version_is_integer })
        } else if PYBMPMON_COLUMNS.iter().all(|column| has(column))
            && !OUR_COLUMNS[5..].iter().any(|column| has(column))
        {
            // Only a table that has none of our own columns yet is adopted: a half-ours table is
            // something else, and adding to it could hide a real problem.
            Some(Shape::Pybmpmon)
        } else {
            None
        };
        if let Some(shape) = shape {
            // Behind a pooler the key on `version` is all that keeps a migration from being
            // applied twice; a partitioned table's rows carry their partitions' tableoids,
            // which the one-row check never matches.
            if relkind == "p" {
                return Err(Error::PartitionedHistory {
                    table: table.display(),
                });
            }
            if !keyed {
                return Err(Error::HistoryWithoutKey {
                    table: table.display(),
                });
            }
            return Ok(shape);
        }
    }
    let found = if columns.is_empty() {
        format!("a relation of kind {relkind:?} with no columns")
    } else {
        columns
            .iter()
            .map(|(name, kind)| format!("{name} {kind}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    Err(Error::ForeignTable {
        table: table.display(),
        found,
    })
}

/// Whether the table's schema exists.
pub(crate) async fn schema_exists(client: &Client, table: &Table) -> Result<bool, Error> {
    let sql = format!(
        "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_namespace WHERE nspname = {})",
        literal(&table.schema)
    );
    let messages = client
        .simple_query(&sql)
        .await
        .map_err(|e| Error::db(format!("could not look up schema {}", table.schema), e))?;
    Ok(crate::batch::first_value(&messages).as_deref() == Some("t"))
}

/// How [`ensure_sql`] writes its DDL.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Creation {
    /// For a run, which looked first: create the schema when `true` (it is configured and
    /// missing), and exactly what is missing.
    Run { create_schema: bool },
    /// For an offline script, which may run later, after another runner created things:
    /// `IF NOT EXISTS` everywhere (the schema when configured).
    Script { create_schema: bool },
}

/// DDL creating the schema, the table and the log; and for an adopted pybmpmon table, the
/// columns it lacks (with defaults, rewriting nothing).
pub(crate) fn ensure_sql(table: &Table, shape: &Shape, creation: Creation) -> String {
    let mut sql = String::new();
    let if_not_exists = match creation {
        Creation::Run { create_schema } => {
            if create_schema {
                sql.push_str(&format!("CREATE SCHEMA {};\n", quote(&table.schema)));
            }
            ""
        }
        Creation::Script { create_schema } => {
            if create_schema {
                sql.push_str(&format!(
                    "CREATE SCHEMA IF NOT EXISTS {};\n",
                    quote(&table.schema)
                ));
            }
            "IF NOT EXISTS "
        }
    };
    match shape {
        Shape::Missing => sql.push_str(&format!(
            "CREATE TABLE {if_not_exists}{} (\
             version BIGINT PRIMARY KEY, \
             name TEXT NOT NULL, \
             checksum TEXT NOT NULL, \
             applied_at TIMESTAMPTZ NOT NULL DEFAULT now(), \
             execution_time_ms INTEGER NOT NULL DEFAULT 0, \
             state TEXT NOT NULL DEFAULT 'applied' CHECK (state IN ('running','failed','applied')), \
             applied_by TEXT, \
             down_sql TEXT, \
             error TEXT);\n",
            table.qualified
        )),
        Shape::Pybmpmon => sql.push_str(&format!(
            "ALTER TABLE {} \
             ADD COLUMN state TEXT NOT NULL DEFAULT 'applied' CHECK (state IN ('running','failed','applied')), \
             ADD COLUMN applied_by TEXT, \
             ADD COLUMN down_sql TEXT, \
             ADD COLUMN error TEXT;\n",
            table.qualified
        )),
        Shape::Ours { .. } => {}
    }
    sql.push_str(&format!(
        "CREATE TABLE IF NOT EXISTS {} (\
         version BIGINT NOT NULL, \
         action TEXT NOT NULL, \
         at TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp(), \
         by TEXT NOT NULL DEFAULT current_user, \
         host TEXT, \
         duration_ms INTEGER, \
         error TEXT);\n",
        table.log
    ));
    sql
}
