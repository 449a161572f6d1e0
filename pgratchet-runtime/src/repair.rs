//! Repair: clears `failed` and `running` records (the migration is pending again, once the
//! operator has cleaned up what it left), and re-stamps the checksums of applied files that were
//! deliberately edited.

use deadpool_postgres::Pool;
use serde::Serialize;
use tokio_postgres::Client;

use crate::events::Action;
use crate::failure::invalid_indexes;
use crate::history::{self, write};
use crate::runner::Runner;
use crate::status::merge;
use crate::{Error, Migrator, State, Status};

/// Which records a repair touches.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Repair {
    /// These versions only.
    Versions(Vec<i64>),
    /// Every `failed`, `running` and `modified` migration.
    All,
}

impl Repair {
    /// Whether a repair with this scope changes the record of this migration: a `failed`,
    /// `running` or `modified` one it covers.
    pub fn covers(&self, status: &Status) -> bool {
        matches!(
            status.state,
            State::Failed | State::Running | State::Modified
        ) && match self {
            Repair::All => true,
            Repair::Versions(versions) => versions.contains(&status.version),
        }
    }
}

/// What a repair did.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct Repaired {
    /// `failed` and `running` records removed (the migration is pending again), as they were.
    pub cleared: Vec<Status>,
    /// Applied migrations whose stored checksum was replaced by the file's, as they were.
    pub restamped: Vec<Status>,
    /// Versions asked for that needed no repair.
    pub untouched: Vec<i64>,
    /// INVALID indexes in the database, which a half-done no-transaction migration may have left
    /// (and, named so, those another session is building right now).
    pub invalid_indexes: Vec<String>,
}

/// Repairs what `scope` covers on `client` (the runner's own), in one transaction, under the
/// lock.
pub(crate) async fn on(
    config: &Migrator<'_>,
    client: &Client,
    pool: Option<&Pool>,
    scope: &Repair,
) -> Result<Repaired, Error> {
    let runner = Runner::locked(config, client, pool).await?;
    let result = run(&runner, scope).await;
    runner.finish(result).await
}

async fn run(runner: &Runner<'_>, scope: &Repair) -> Result<Repaired, Error> {
    let (client, table) = (runner.client, &runner.table);
    runner.ensure_history().await?;
    let rows = history::read::rows(client, table).await?;
    let statuses = merge(runner.migrations(), &rows);
    let mut repaired = Repaired {
        invalid_indexes: invalid_indexes(client)
            .await
            .iter()
            .map(|index| index.describe())
            .collect(),
        ..Repaired::default()
    };
    let mut sql = String::from("BEGIN;\n");
    for status in &statuses {
        let version = status.version;
        if !scope.covers(status) {
            if matches!(scope, Repair::Versions(versions) if versions.contains(&version)) {
                repaired.untouched.push(version);
            }
            continue;
        }
        if status.state == State::Modified {
            let Some(migration) = runner.migration(version) else {
                continue;
            };
            let note = format!(
                "re-stamped checksum {} -> {}",
                status.applied_checksum.as_deref().unwrap_or_default(),
                migration.checksum()
            );
            sql.push_str(&write::restamp(table, migration, runner.host, &note));
            repaired.restamped.push(status.clone());
        } else {
            let note = format!(
                "cleared a {} record{}",
                status.state,
                status
                    .error
                    .as_ref()
                    .map(|error| format!(" ({error})"))
                    .unwrap_or_default()
            );
            sql.push_str(&write::remove(
                table,
                version,
                Action::Repair,
                runner.host,
                0,
                Some(&note),
            ));
            repaired.cleared.push(status.clone());
        }
    }
    if let Repair::Versions(versions) = scope {
        for version in versions {
            if !statuses.iter().any(|status| status.version == *version) {
                repaired.untouched.push(*version);
            }
        }
    }
    sql.push_str("COMMIT;");
    client
        .batch_execute(&sql)
        .await
        .map_err(|e| Error::db("could not repair the history table", e))?;
    runner.committed_maybe_async();
    for status in &repaired.cleared {
        tracing::warn!(version = status.version, name = %status.name, state = %status.state, "repair cleared the record; the migration is pending again");
    }
    Ok(repaired)
}
