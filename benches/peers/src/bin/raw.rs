//! The lower bound: tokio-postgres and nothing else, with the same safety as a real runner
//! (a session advisory lock, one transaction per migration with its history row).
//!
//! * Nothing pending: one query (`SELECT version FROM raw_history`), no lock.
//! * Otherwise: one round trip for lock + history table + re-read, then one simple-query batch
//!   `BEGIN; <sql>; INSERT INTO raw_history ...; COMMIT` per pending migration, then unlock.
//!
//! Migrations are read at start-up (in `setup_ms`) from `--dir`, default `migrations/raw`
//! (`<version>_<name>.sql`), so it needs no rebuild when files change.
use std::collections::BTreeSet;

use anyhow::{anyhow, Context, Result};
use bench_peers::{pg, Runner};
use tokio_postgres::error::SqlState;
use tokio_postgres::SimpleQueryMessage;

const LOCK: i64 = 0x6265_6e63_685f_7261; // "bench_ra"

struct Raw {
    migrations: Vec<(i64, String, String)>,
}

fn read_dir(dir: &str) -> Result<Raw> {
    let mut migrations = Vec::new();
    for entry in std::fs::read_dir(dir).with_context(|| format!("reading {dir}"))? {
        let path = entry?.path();
        let Some(file) = path.file_name().and_then(|f| f.to_str()) else {
            continue;
        };
        let Some((version, name)) = file.strip_suffix(".sql").and_then(|s| s.split_once('_'))
        else {
            continue;
        };
        let Ok(version) = version.parse::<i64>() else {
            continue;
        };
        migrations.push((version, name.to_owned(), std::fs::read_to_string(&path)?));
    }
    migrations.sort_by_key(|m| m.0);
    Ok(Raw { migrations })
}

fn versions(messages: &[SimpleQueryMessage]) -> Result<BTreeSet<i64>> {
    messages
        .iter()
        .filter_map(|m| match m {
            SimpleQueryMessage::Row(row) => row.get("version").map(str::parse::<i64>),
            _ => None,
        })
        .map(|v| v.map_err(Into::into))
        .collect()
}

impl Raw {
    fn pending(&self, applied: &BTreeSet<i64>) -> usize {
        self.migrations
            .iter()
            .filter(|m| !applied.contains(&m.0))
            .count()
    }

    async fn apply_locked(&self, client: &tokio_postgres::Client) -> Result<usize> {
        let messages = client
            .simple_query(
                "CREATE TABLE IF NOT EXISTS raw_history (version bigint PRIMARY KEY, \
                 name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now());\n\
                 SELECT version FROM raw_history",
            )
            .await?;
        let applied = versions(&messages)?;
        let mut count = 0;
        for (version, name, sql) in &self.migrations {
            if applied.contains(version) {
                continue;
            }
            let batch = format!(
                "BEGIN;\n{sql}\n;\nINSERT INTO raw_history (version, name) VALUES ({version}, '{}');\nCOMMIT;",
                name.replace('\'', "''")
            );
            if let Err(e) = client.batch_execute(&batch).await {
                let _ = client.batch_execute("ROLLBACK").await;
                return Err(anyhow!("migration {version}_{name}: {e}"));
            }
            count += 1;
        }
        Ok(count)
    }
}

impl Runner for Raw {
    const NAME: &'static str = "raw";
    type Handle = pg::Conn;

    fn known(&self) -> usize {
        self.migrations.len()
    }

    async fn open(&self, url: &str) -> Result<pg::Conn> {
        pg::connect(url).await
    }

    async fn apply(&self, conn: &mut pg::Conn) -> Result<Option<usize>> {
        let client = &conn.client;
        match client.simple_query("SELECT version FROM raw_history").await {
            Ok(messages) if self.pending(&versions(&messages)?) == 0 => return Ok(Some(0)),
            Ok(_) => {}
            Err(e) if e.code() == Some(&SqlState::UNDEFINED_TABLE) => {}
            Err(e) => return Err(e.into()),
        }
        client
            .batch_execute(&format!("SELECT pg_advisory_lock({LOCK})"))
            .await?;
        let result = self.apply_locked(client).await;
        // On error the connection is closed by the caller, which releases the lock too.
        client
            .batch_execute(&format!("SELECT pg_advisory_unlock({LOCK})"))
            .await?;
        Ok(Some(result?))
    }

    async fn shut(&self, conn: pg::Conn) -> Result<()> {
        pg::close(conn).await
    }
}

fn main() {
    bench_peers::main(|opts| {
        let dir = opts
            .dir
            .clone()
            .unwrap_or_else(|| concat!(env!("CARGO_MANIFEST_DIR"), "/migrations/raw").to_owned());
        read_dir(&dir)
    })
}
