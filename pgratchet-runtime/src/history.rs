//! The history table and its audit log: their names, creation, adoption of a pybmpmon table,
//! refusal of foreign shapes, and reading the applied rows.

use tokio_postgres::{Client, SimpleQueryMessage, SimpleQueryRow};

use crate::ident::{literal, quote};
use crate::{Error, State};

/// The qualified, quoted names of the history table and its log, resolved once per run.
#[derive(Clone, Debug)]
pub(crate) struct Table {
    pub(crate) schema: String,
    pub(crate) name: String,
    /// `"schema"."table"`.
    pub(crate) qualified: String,
    /// `"schema"."table_log"`.
    pub(crate) log: String,
}

impl Table {
    pub(crate) fn new(schema: &str, name: &str) -> Self {
        Table {
            schema: schema.to_owned(),
            name: name.to_owned(),
            qualified: format!("{}.{}", quote(schema), quote(name)),
            log: format!("{}.{}", quote(schema), quote(&format!("{name}_log"))),
        }
    }

    /// The text form used for the lock key and in messages: `schema.table`.
    pub(crate) fn display(&self) -> String {
        format!("{}.{}", self.schema, self.name)
    }

    /// Reads the rows the policies and status need (not `down_sql`, which can be large).
    pub(crate) fn select_rows_sql(&self) -> String {
        rows_sql(&self.qualified)
    }
}

/// Reads every row of the history table named by the `from` clause.
pub(crate) fn rows_sql(from: &str) -> String {
    format!(
        "SELECT version, name, checksum, state, \
         to_char(applied_at::timestamptz AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"'), \
         execution_time_ms, error FROM {from} ORDER BY version"
    )
}

/// One row of the history table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Row {
    pub(crate) version: i64,
    pub(crate) name: String,
    pub(crate) checksum: String,
    pub(crate) state: State,
    pub(crate) applied_at: Option<String>,
    pub(crate) execution_time_ms: i64,
    pub(crate) error: Option<String>,
}

impl Row {
    fn parse(row: &SimpleQueryRow) -> Option<Row> {
        let state = match row.get(3)? {
            "applied" => State::Applied,
            "running" => State::Running,
            "failed" => State::Failed,
            _ => return None,
        };
        Some(Row {
            version: row.get(0)?.parse().ok()?,
            name: row.get(1)?.to_owned(),
            checksum: row.get(2)?.to_owned(),
            state,
            applied_at: row.get(4).map(str::to_owned),
            execution_time_ms: row.get(5).and_then(|ms| ms.parse().ok()).unwrap_or(0),
            error: row.get(6).map(str::to_owned),
        })
    }
}

/// Rows from a simple-query result, in order. A row this runner cannot read (a state it does not
/// know) is an error rather than something to skip.
pub(crate) fn parse_rows(
    table: &Table,
    messages: &[SimpleQueryMessage],
) -> Result<Vec<Row>, Error> {
    let mut rows = Vec::new();
    for message in messages {
        if let SimpleQueryMessage::Row(row) = message {
            match Row::parse(row) {
                Some(parsed) => rows.push(parsed),
                None => {
                    return Err(Error::ForeignTable {
                        table: table.display(),
                        found: format!(
                            "a row with version {:?} and state {:?} this tool cannot read",
                            row.get(0),
                            row.get(3)
                        ),
                    })
                }
            }
        }
    }
    Ok(rows)
}

/// Reads every row, on the slow path (the table is known to exist and to have our shape).
pub(crate) async fn read_rows(client: &Client, table: &Table) -> Result<Vec<Row>, Error> {
    let messages = client
        .simple_query(&table.select_rows_sql())
        .await
        .map_err(|e| {
            Error::db(
                format!("could not read the history table {}", table.display()),
                e,
            )
        })?;
    parse_rows(table, &messages)
}

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
    Ok(crate::lock::first_value(&messages).as_deref() == Some("t"))
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

/// Audit actions written to the log table.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Action {
    Apply,
    Fail,
    Rollback,
    Baseline,
    Repair,
}

impl Action {
    fn as_str(self) -> &'static str {
        match self {
            Action::Apply => "apply",
            Action::Fail => "fail",
            Action::Rollback => "rollback",
            Action::Baseline => "baseline",
            Action::Repair => "repair",
        }
    }
}

/// An `INSERT` into the log table. `duration_ms` is SQL (it may be computed by the server).
pub(crate) fn log_sql(
    table: &Table,
    version: i64,
    action: Action,
    host: &str,
    duration_ms: &str,
    error: Option<&str>,
) -> String {
    format!(
        "INSERT INTO {} (version, action, host, duration_ms, error) VALUES ({version}, '{}', {}, {duration_ms}, {});\n",
        table.log,
        action.as_str(),
        literal(host),
        crate::ident::literal_opt(error),
    )
}

/// The host name recorded in the audit log.
pub(crate) fn host_name() -> &'static str {
    // Read once per process: every runner (and the fast path) asks for it.
    static HOST: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    HOST.get_or_init(|| {
        std::fs::read_to_string("/proc/sys/kernel/hostname")
            .ok()
            .or_else(|| std::env::var("HOSTNAME").ok())
            .map(|name| name.trim().to_owned())
            .filter(|name| !name.is_empty())
            .unwrap_or_else(|| "unknown".to_owned())
    })
}
