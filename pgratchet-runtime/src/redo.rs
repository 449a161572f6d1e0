//! Redo: the round-trip check. On a scratch database, each migration goes up, down and up again,
//! and the schema after its down must equal the schema before its up.

use std::collections::BTreeSet;

use serde::Serialize;
use tokio_postgres::{Client, SimpleQueryMessage};

use crate::apply;
use crate::ident::literal;
use crate::read;
use crate::rollback::{self, Rollback};
use crate::table::Table;
use crate::{Error, Migrator};

/// A down that did not restore the schema.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct RedoMismatch {
    /// The migration's version.
    pub version: i64,
    /// Its name.
    pub name: String,
    /// Objects present before the up and missing after the down.
    pub missing: Vec<String>,
    /// Objects present after the down that were not there before the up (e.g. an index the down
    /// forgot to drop).
    pub left_behind: Vec<String>,
}

/// The result of a redo.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct Redo {
    /// Versions whose up/down/up round trip restored the schema.
    pub restored: Vec<i64>,
    /// Versions without down SQL (applied, not round-tripped).
    pub irreversible: Vec<i64>,
    /// Downs that did not restore the schema.
    pub mismatches: Vec<RedoMismatch>,
}

impl Redo {
    /// Whether every down restored the schema.
    pub fn is_ok(&self) -> bool {
        self.mismatches.is_empty()
    }
}

/// The round-trip check on `client` (a connection of the runner's own, on a scratch database:
/// it applies and reverts everything): for each migration in order, up, snapshot, down, compare
/// with the schema before, up again. When the up after a down that did not restore the schema
/// fails (on what the down left behind), the redo stops there and reports what it found so far.
pub(crate) async fn on(config: &Migrator<'_>, client: &Client) -> Result<Redo, Error> {
    let mut redo = Redo::default();
    let mut previous: Option<i64> = None;
    for migration in config.migrations.iter() {
        let version = migration.version();
        let up = config.clone().target(version);
        let before = schema_of(config, client).await?;
        apply::run_on(&up, client, None).await?;
        if migration.down().is_none() {
            redo.irreversible.push(version);
            previous = Some(version);
            continue;
        }
        let back_to = Rollback::To(previous.unwrap_or(version - 1));
        rollback::on(config, client, None, back_to).await?;
        let after_down = schema_of(config, client).await?;
        if after_down == before {
            redo.restored.push(version);
            apply::run_on(&up, client, None).await?;
        } else {
            redo.mismatches.push(RedoMismatch {
                version,
                name: migration.name().to_owned(),
                missing: before.difference(&after_down).cloned().collect(),
                left_behind: after_down.difference(&before).cloned().collect(),
            });
            // What the down left behind usually makes the up fail (`CREATE INDEX` of an index
            // that is still there): the mismatch is the finding, not that error, and the
            // migrations after it cannot be checked on this schema.
            if let Err(error) = apply::run_on(&up, client, None).await {
                tracing::warn!(version, %error, "redo stopped: the up after a down that did not restore the schema failed");
                return Ok(redo);
            }
        }
        previous = Some(version);
    }
    Ok(redo)
}

/// The schema of the database `client` is on, without the history table and its log.
async fn schema_of(config: &Migrator<'_>, client: &Client) -> Result<BTreeSet<String>, Error> {
    let first = read::first(config, client).await?;
    let table = Table::new(&first.schema, &config.table);
    snapshot(client, &table, config.schema.as_deref()).await
}

/// The schema as a set of lines, one per object (relations, columns, indexes, constraints,
/// functions, types, triggers, schemas, extensions), leaving out the history table and its log,
/// and the runner's own `schema` when it is configured: the runner creates it at the first up,
/// so it is there after any down. What migrations put in it is compared like the rest.
async fn snapshot(
    client: &Client,
    table: &Table,
    runner_schema: Option<&str>,
) -> Result<BTreeSet<String>, Error> {
    let skip = format!(
        "(array_remove(ARRAY[to_regclass({}), to_regclass({})]::oid[], NULL))",
        literal(&table.qualified),
        literal(&table.log)
    );
    let user = "NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg\\_toast%' AND n.nspname NOT LIKE 'pg\\_temp%'";
    let sql = format!(
        "SELECT 'relation ' || n.nspname || '.' || c.relname || ' kind ' || c.relkind::text \
           FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
           WHERE n.nspname {user} AND c.relkind <> 't' AND c.oid <> ALL {skip} \
             AND NOT EXISTS (SELECT 1 FROM pg_index i WHERE i.indexrelid = c.oid AND i.indrelid = ANY {skip}) \
         UNION ALL \
         SELECT 'column ' || n.nspname || '.' || c.relname || '.' || a.attname || ' ' || format_type(a.atttypid, a.atttypmod) \
                || CASE WHEN a.attnotnull THEN ' not null' ELSE '' END \
                || coalesce(' default ' || pg_get_expr(d.adbin, d.adrelid), '') \
           FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace \
           LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum \
           WHERE n.nspname {user} AND a.attnum > 0 AND NOT a.attisdropped AND c.relkind IN ('r','p','v','m','f','c') AND c.oid <> ALL {skip} \
         UNION ALL \
         SELECT 'index ' || pg_get_indexdef(i.indexrelid) FROM pg_index i JOIN pg_class c ON c.oid = i.indrelid JOIN pg_namespace n ON n.oid = c.relnamespace \
           WHERE n.nspname {user} AND i.indrelid <> ALL {skip} \
         UNION ALL \
         SELECT 'constraint ' || n.nspname || '.' || co.conname || ' ' || pg_get_constraintdef(co.oid) \
           FROM pg_constraint co JOIN pg_namespace n ON n.oid = co.connamespace \
           WHERE n.nspname {user} AND co.conrelid <> ALL {skip} \
         UNION ALL \
         SELECT 'function ' || p.oid::regprocedure::text || ' ' || md5(coalesce(p.prosrc, '')) \
           FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace \
           WHERE n.nspname {user} AND NOT EXISTS (SELECT 1 FROM pg_depend dep WHERE dep.objid = p.oid AND dep.deptype = 'e') \
         UNION ALL \
         SELECT 'type ' || n.nspname || '.' || t.typname || ' ' || t.typtype::text || coalesce(' ' || (SELECT string_agg(e.enumlabel, ',' ORDER BY e.enumsortorder) FROM pg_enum e WHERE e.enumtypid = t.oid), '') \
           FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace \
           WHERE n.nspname {user} AND t.typtype IN ('e','d','r','m') \
         UNION ALL \
         SELECT 'trigger ' || pg_get_triggerdef(tg.oid) FROM pg_trigger tg WHERE NOT tg.tgisinternal \
         UNION ALL \
         SELECT 'view ' || c.oid::regclass::text || ' ' || md5(pg_get_viewdef(c.oid)) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
           WHERE n.nspname {user} AND c.relkind IN ('v','m') \
         UNION ALL \
         SELECT 'schema ' || n.nspname FROM pg_namespace n WHERE n.nspname {user} \
         UNION ALL \
         SELECT 'extension ' || extname FROM pg_extension"
    );
    let messages = client
        .simple_query(&sql)
        .await
        .map_err(|e| Error::db("could not snapshot the schema", e))?;
    let runner_schema = runner_schema.map(|schema| format!("schema {schema}"));
    Ok(messages
        .iter()
        .filter_map(|message| match message {
            SimpleQueryMessage::Row(row) => row.get(0).map(str::to_owned),
            _ => None,
        })
        .filter(|line| Some(line) != runner_schema.as_ref())
        .collect())
}
