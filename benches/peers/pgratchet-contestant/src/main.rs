//! `pgratchet` (this repository): `embed_migrations!` of the generated set, applied with
//! `Migrations::run` on a deadpool pool of size 1, the way a service does at start-up.
//!
//! `open` is `pgratchet::connect`, the product's pool constructor (compiled in the product, so this
//! crate, rebuilt at every migration edit, does not compile tokio-postgres's connect): it opens
//! one connection and puts it back, so the connection exists (and `connect_ms` measures it).
//! `apply` is `MIGRATIONS.run(&pool)`. When nothing is pending, that is one query on the pooled
//! connection, which goes back to the pool: the reused-pool check (`noop_reuse_ms`) is that fast
//! path. When something is pending, the runner takes the connection out of the pool for good (it
//! holds the session lock) and closes it at the end.
use anyhow::Result;
use bench_peers::Runner;
use pgratchet::deadpool_postgres::Pool;

static MIGRATIONS: pgratchet::Migrations = pgratchet::embed_migrations!("../migrations/pgratchet");

struct Pgratchet;

impl Runner for Pgratchet {
    const NAME: &'static str = "pgratchet";
    type Handle = Pool;

    fn known(&self) -> usize {
        MIGRATIONS.len()
    }

    async fn open(&self, url: &str) -> Result<Pool> {
        Ok(pgratchet::connect(url, 1).await?)
    }

    async fn apply(&self, pool: &mut Pool) -> Result<Option<usize>> {
        let report = MIGRATIONS.run(pool).await?;
        Ok(Some(report.applied.len()))
    }

    async fn shut(&self, pool: Pool) -> Result<()> {
        pool.close();
        drop(pool);
        // Let the connection task deadpool spawned send Terminate before we go on.
        tokio::task::yield_now().await;
        Ok(())
    }
}

fn main() {
    bench_peers::main(|_| Ok(Pgratchet))
}
