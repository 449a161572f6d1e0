//! diesel_migrations 2 `embed_migrations!` on diesel's (synchronous, libpq) `PgConnection`,
//! called from the same async harness as the others.
use anyhow::{anyhow, Result};
use bench_peers::Runner;
use diesel::migration::MigrationSource;
use diesel::pg::{Pg, PgConnection};
use diesel::Connection;
use diesel_migrations::{embed_migrations, EmbeddedMigrations, MigrationHarness};

const MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations/diesel");

struct Diesel;

impl Runner for Diesel {
    const NAME: &'static str = "diesel";
    type Handle = PgConnection;

    fn known(&self) -> usize {
        MigrationSource::<Pg>::migrations(&MIGRATIONS).map_or(0, |m| m.len())
    }

    async fn open(&self, url: &str) -> Result<PgConnection> {
        Ok(PgConnection::establish(url)?)
    }

    async fn apply(&self, conn: &mut PgConnection) -> Result<Option<usize>> {
        let versions = conn
            .run_pending_migrations(MIGRATIONS)
            .map_err(|e| anyhow!("{e}"))?;
        Ok(Some(versions.len()))
    }
}

fn main() {
    bench_peers::main(|_| Ok(Diesel))
}
