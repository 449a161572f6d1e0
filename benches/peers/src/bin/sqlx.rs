//! sqlx 0.8 `migrate!` on one `PgConnection`.
use anyhow::Result;
use bench_peers::Runner;
use sqlx::{Connection, PgConnection};

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("migrations/sqlx");

struct Sqlx;

impl Runner for Sqlx {
    const NAME: &'static str = "sqlx";
    type Handle = PgConnection;

    fn known(&self) -> usize {
        MIGRATOR.iter().count()
    }

    async fn open(&self, url: &str) -> Result<PgConnection> {
        Ok(PgConnection::connect(url).await?)
    }

    async fn apply(&self, conn: &mut PgConnection) -> Result<Option<usize>> {
        MIGRATOR.run(&mut *conn).await?;
        // sqlx does not say how many it applied.
        Ok(None)
    }

    async fn shut(&self, conn: PgConnection) -> Result<()> {
        Ok(conn.close().await?)
    }
}

fn main() {
    bench_peers::main(|_| Ok(Sqlx))
}
