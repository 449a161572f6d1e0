//! Reading where things stand, without the lock and without writing: the one-row check, the
//! first read of a run (schema, server version, every row), status and plan.

use tokio_postgres::{Client, SimpleQueryMessage};

use crate::batch;
use crate::failure::is_missing_history;
use crate::fingerprint;
use crate::history::read::{self as history, Row};
use crate::ident::{literal, quote};
use crate::status::{judge, merge};
use crate::table::Table;
use crate::{Error, Migrator, Planned, Status};

/// The first read of a run: where the table is and what it holds.
pub(crate) struct FirstRead {
    pub(crate) schema: String,
    pub(crate) server_version: i32,
    /// `None` when there is no (readable) history table yet.
    pub(crate) rows: Option<Vec<Row>>,
}

/// The one-row check, one round trip: is every known migration applied with its checksum, and
/// nothing else recorded? The server sums a hash of each row's checksum and version, the runner
/// compares the sum with its own set's (see [`fingerprint`]); unlike reading every row, this
/// costs less than a runner that reads versions only.
///
/// Anything but a match (no table yet, a table of another shape, something pending, an edited
/// file, a newer release's rows) is `false`: the slow path reads every row and says which. Only a
/// failed connection is an error.
pub(crate) async fn up_to_date(
    config: &Migrator<'_>,
    client: &Client,
) -> Result<bool, tokio_postgres::Error> {
    if config.target.is_some() {
        return Ok(false);
    }
    let sql = format!(
        "SELECT count(*), {}, bool_and(state = 'applied') FROM {}",
        fingerprint::SQL,
        history_from(config)
    );
    let messages = match client.simple_query(&sql).await {
        Ok(messages) => messages,
        Err(error) if error.as_db_error().is_some() => return Ok(false),
        Err(error) => return Err(error),
    };
    let Some(row) = messages.iter().find_map(|message| match message {
        SimpleQueryMessage::Row(row) => Some(row),
        _ => None,
    }) else {
        return Ok(false);
    };
    let migrations = config.migrations;
    let count = row.get(0).and_then(|count| count.parse::<usize>().ok());
    // An empty table sums to NULL.
    let sum = row.get(1).map_or(Some(0), |sum| sum.parse::<i128>().ok());
    let all_applied = row.get(2) != Some("f");
    Ok(count == Some(migrations.len()) && sum == Some(migrations.fingerprint()) && all_applied)
}

/// One round trip: the schema, the server version and every row.
pub(crate) async fn first(config: &Migrator<'_>, client: &Client) -> Result<FirstRead, Error> {
    let schema = match &config.schema {
        Some(schema) => literal(schema),
        None => "current_schema()".to_owned(),
    };
    let sql = format!(
        "SELECT {schema}, current_setting('server_version_num');\n{}",
        history::rows_sql(&history_from(config))
    );
    let outcome = batch::run(client, &sql).await;
    let (head, tail) = split_first_statement(&outcome.messages);
    let (schema, server_version) = schema_and_version(head)?;
    let rows = match outcome.error {
        None => {
            let table = Table::new(&schema, &config.table);
            Some(history::parse_rows(&table, tail)?)
        }
        Some(error) if first_completed(head) && is_missing_history(&error) => None,
        Some(error) => {
            return Err(Error::db("could not read the migration history", error));
        }
    };
    Ok(FirstRead {
        schema,
        server_version,
        rows,
    })
}

/// Every migration's status, known or recorded, in version order.
pub(crate) async fn status(config: &Migrator<'_>, client: &Client) -> Result<Vec<Status>, Error> {
    let first = first(config, client).await?;
    Ok(merge(
        config.migrations.as_slice(),
        &first.rows.unwrap_or_default(),
    ))
}

/// What a run would apply now.
pub(crate) async fn plan(config: &Migrator<'_>, client: &Client) -> Result<Vec<Planned>, Error> {
    let first = first(config, client).await?;
    let statuses = merge(
        config.migrations.as_slice(),
        &first.rows.unwrap_or_default(),
    );
    let verdict = judge(&statuses, config.policy, config.target, false)?;
    Ok(verdict
        .pending
        .iter()
        .filter_map(|version| config.migrations.get(*version))
        .map(|migration| Planned {
            version: migration.version(),
            name: migration.name().to_owned(),
            checksum: migration.checksum().to_owned(),
            no_transaction: migration.no_transaction(),
            sql: migration.up_sql().to_owned(),
        })
        .collect())
}

/// The `FROM` of the history table. Without a configured schema the unqualified name goes
/// through the search_path; the filter keeps only a table in current_schema(), where the
/// runner would create it (evaluated once, not per row).
fn history_from(config: &Migrator<'_>) -> String {
    let table = &config.table;
    match &config.schema {
        Some(schema) => Table::new(schema, table).qualified,
        None => format!(
            "{} h WHERE h.tableoid = (SELECT to_regclass(quote_ident(current_schema()) || '.' || quote_ident({})))",
            quote(table),
            literal(table)
        ),
    }
}

/// The messages of a batch's first statement (its row and its completion) and the rest.
fn split_first_statement(
    messages: &[SimpleQueryMessage],
) -> (&[SimpleQueryMessage], &[SimpleQueryMessage]) {
    let split = messages
        .iter()
        .position(|message| matches!(message, SimpleQueryMessage::CommandComplete(_)))
        .map_or(messages.len(), |index| index + 1);
    messages.split_at(split)
}

fn first_completed(head: &[SimpleQueryMessage]) -> bool {
    matches!(head.last(), Some(SimpleQueryMessage::CommandComplete(_)))
}

/// The schema and server version from a read batch's first statement.
fn schema_and_version(head: &[SimpleQueryMessage]) -> Result<(String, i32), Error> {
    let row = head.iter().find_map(|message| match message {
        SimpleQueryMessage::Row(row) => Some((
            row.get(0).map(str::to_owned),
            row.get(1)
                .and_then(|version| version.parse().ok())
                .unwrap_or(0),
        )),
        _ => None,
    });
    match row {
        Some((Some(schema), version)) => Ok((schema, version)),
        // The first statement failed (the connection?): the caller reports the batch's error.
        None => Ok((String::new(), 0)),
        Some((None, _)) => Err(Error::NoCurrentSchema),
    }
}
