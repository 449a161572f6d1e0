//! Baseline: a database whose schema predates its history gets the migrations up to a version
//! recorded as applied, without running them.

use crate::history::{self, write};
use crate::runner::Runner;
use deadpool_postgres::Pool;
use tokio_postgres::Client;

use crate::{Error, Migration, Migrator};

/// Records the migrations up to `version` as applied, on `client` (the runner's own), under the
/// lock; refused when anything is recorded already. Returns the versions recorded.
pub(crate) async fn on(
    config: &Migrator<'_>,
    client: &Client,
    pool: Option<&Pool>,
    version: i64,
) -> Result<Vec<i64>, Error> {
    let runner = Runner::locked(config, client, pool).await?;
    let result = run(&runner, version).await;
    runner.finish(result).await
}

async fn run(runner: &Runner<'_>, version: i64) -> Result<Vec<i64>, Error> {
    let (client, table) = (runner.client, &runner.table);
    runner.ensure_history().await?;
    let rows = history::read::rows(client, table).await?;
    if !rows.is_empty() {
        return Err(Error::BaselineOnHistory {
            recorded: rows.len(),
        });
    }
    let chosen: Vec<&Migration> = runner
        .migrations()
        .iter()
        .filter(|migration| migration.version() <= version)
        .collect();
    let mut sql = String::from("BEGIN;\n");
    for migration in &chosen {
        sql.push_str(&write::baseline(table, migration, runner.host));
    }
    sql.push_str("COMMIT;");
    client.batch_execute(&sql).await.map_err(|e| {
        Error::db(
            format!("could not record the baseline at version {version}"),
            e,
        )
    })?;
    runner.committed_maybe_async();
    Ok(chosen.iter().map(|migration| migration.version()).collect())
}
