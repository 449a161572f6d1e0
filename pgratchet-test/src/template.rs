//! The template: the migrations applied once into a database named after their fingerprint,
//! which every test database is a copy of.
//!
//! Built under a temporary name on a connection that is then closed, renamed when complete and
//! closed to connections (`ALLOW_CONNECTIONS false`: `CREATE DATABASE ... TEMPLATE` needs nobody
//! connected), so a build killed half-way is never copied. Builds are serialised, across
//! processes, by an advisory lock; the leftovers of killed builds and the templates of other
//! fingerprints unused for a day are dropped under it.

use std::collections::BTreeSet;
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use pgratchet_harness::{quote_ident, Cluster};
use pgratchet_runtime::Migrator;
use sha2::{Digest, Sha256};
use tokio_postgres::error::SqlState;

use crate::Error;

/// Every template's name starts with this.
const PREFIX: &str = "pgratchet_tpl_";
/// A template being built: `<template>_building_<pid>`.
const BUILDING: &str = "_building_";
/// The advisory lock that serialises template builds: the first 8 bytes of
/// sha256("pgratchet-test:templates"), pinned by a test.
pub(crate) const LOCK_KEY: i64 = 0x002d_d748_7bc4_d066;
/// Templates of other fingerprints unused this long are dropped.
const UNUSED_FOR: Duration = Duration::from_secs(24 * 60 * 60);

/// The templates this process built or found, by name: later tests copy them directly.
static READY: Mutex<BTreeSet<String>> = Mutex::new(BTreeSet::new());
/// One build at a time in this process (the advisory lock serialises processes); a lock, not a
/// connection, so it is fine in a static.
static BUILD: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The template's name for `migrator`: its set's checksums, its schema and table, and this kit's
/// version, hashed. Anything that changes what a migrated database holds changes the name.
pub(crate) fn name(migrator: &Migrator<'_>) -> String {
    let mut hasher = Sha256::new();
    hasher.update(concat!("pgratchet-test ", env!("CARGO_PKG_VERSION"), "\n"));
    hasher.update(format!(
        "schema {:?}\ntable {:?}\n",
        migrator.schema_name(),
        migrator.table_name()
    ));
    for migration in migrator.migrations() {
        hasher.update(format!(
            "{} {}\n",
            migration.version(),
            migration.checksum()
        ));
    }
    let hex: String = hasher.finalize()[..8]
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect();
    format!("{PREFIX}{hex}")
}

/// The template for `migrator` on `cluster`, built if it does not exist yet.
pub(crate) async fn ensure(cluster: &Cluster, migrator: &Migrator<'_>) -> Result<String, Error> {
    let name = name(migrator);
    if is_ready(&name) {
        return Ok(name);
    }
    let _one_build = BUILD.lock().await;
    if is_ready(&name) {
        return Ok(name);
    }
    let (client, task) = cluster.maintenance().await.map_err(Error::Server)?;
    client
        .query_one("SELECT pg_advisory_lock($1)", &[&LOCK_KEY])
        .await
        .map_err(Error::postgres("cannot take the template lock"))?;
    let built = build_if_missing(cluster, &client, migrator, &name).await;
    let unlocked = client
        .query_one("SELECT pg_advisory_unlock($1)", &[&LOCK_KEY])
        .await
        .map_err(Error::postgres("cannot release the template lock"));
    drop(client);
    let _ = task.await;
    built?;
    unlocked?;
    READY
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .insert(name.clone());
    Ok(name)
}

fn is_ready(name: &str) -> bool {
    READY
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .contains(name)
}

async fn build_if_missing(
    cluster: &Cluster,
    client: &tokio_postgres::Client,
    migrator: &Migrator<'_>,
    name: &str,
) -> Result<(), Error> {
    let exists = client
        .query_opt("SELECT 1 FROM pg_database WHERE datname = $1", &[&name])
        .await
        .map_err(Error::postgres("cannot look for the template"))?
        .is_some();
    if !exists {
        collect_garbage(client, name).await?;
        let building = format!("{name}{BUILDING}{}", std::process::id());
        execute(
            client,
            &format!("CREATE DATABASE {}", quote_ident(&building)),
        )
        .await?;
        if let Err(error) = migrate(cluster, migrator, &building).await {
            let _ = execute(
                client,
                &format!(
                    "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                    quote_ident(&building)
                ),
            )
            .await;
            return Err(error);
        }
        rename(client, &building, name).await?;
        execute(
            client,
            &format!(
                "ALTER DATABASE {} ALLOW_CONNECTIONS false",
                quote_ident(name)
            ),
        )
        .await?;
    }
    // When it was last used, for the clean-up of other fingerprints' templates.
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs();
    execute(
        client,
        &format!(
            "COMMENT ON DATABASE {} IS 'pgratchet-test template, last used {now}'",
            quote_ident(name)
        ),
    )
    .await
}

/// Applies the migrations to `database` on a connection of its own, closed before returning.
async fn migrate(cluster: &Cluster, migrator: &Migrator<'_>, database: &str) -> Result<(), Error> {
    let config: tokio_postgres::Config = cluster
        .url(database)
        .parse()
        .map_err(Error::postgres("the template's URL does not parse"))?;
    let (client, connection) = config
        .connect(tokio_postgres::NoTls)
        .await
        .map_err(Error::postgres(format!("cannot connect to {database}")))?;
    let task = tokio::spawn(async move {
        let _ = connection.await;
    });
    // `run_client` closes the client when done; awaiting the connection task makes sure the
    // session has ended before the database is renamed.
    let result = migrator.run_client(client).await;
    let _ = task.await;
    result.map(drop).map_err(Error::Migrations)
}

/// Renames the finished template; the server may still be ending the session that built it.
async fn rename(client: &tokio_postgres::Client, from: &str, to: &str) -> Result<(), Error> {
    let sql = format!(
        "ALTER DATABASE {} RENAME TO {}",
        quote_ident(from),
        quote_ident(to)
    );
    let mut tries = 0;
    loop {
        match client.batch_execute(&sql).await {
            Err(error) if error.code() == Some(&SqlState::OBJECT_IN_USE) && tries < 200 => {
                tries += 1;
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            result => return result.map_err(Error::postgres(format!("{sql} failed"))),
        }
    }
}

/// Drops, under the build lock: every half-built template (nobody else builds now), and the
/// templates of other fingerprints unused for a day.
async fn collect_garbage(client: &tokio_postgres::Client, keep: &str) -> Result<(), Error> {
    let rows = client
        .query(
            "SELECT datname, coalesce(shobj_description(oid, 'pg_database'), '') \
             FROM pg_database WHERE starts_with(datname, $1)",
            &[&PREFIX],
        )
        .await
        .map_err(Error::postgres("cannot list the templates"))?;
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs();
    for row in rows {
        let name: String = row.get(0);
        let comment: String = row.get(1);
        let last_used = comment
            .rsplit(' ')
            .next()
            .and_then(|word| word.parse::<u64>().ok())
            .unwrap_or(0);
        let stale = name != keep && now.saturating_sub(last_used) > UNUSED_FOR.as_secs();
        if name.contains(BUILDING) || stale {
            execute(
                client,
                &format!(
                    "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                    quote_ident(&name)
                ),
            )
            .await?;
        }
    }
    Ok(())
}

async fn execute(client: &tokio_postgres::Client, sql: &str) -> Result<(), Error> {
    client
        .batch_execute(sql)
        .await
        .map_err(Error::postgres(format!("{sql} failed")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_lock_key_is_the_documented_hash() {
        let digest = Sha256::digest(b"pgratchet-test:templates");
        let key = i64::from_be_bytes(digest[..8].try_into().expect("8 bytes"));
        assert_eq!(LOCK_KEY, key);
    }
}
