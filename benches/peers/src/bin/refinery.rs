//! refinery 0.10 on tokio-postgres, migrations compiled in with `embed_migrations!`.
use anyhow::Result;
use bench_peers::{pg, Runner};

mod embedded {
    refinery::embed_migrations!("migrations/refinery");
}

struct Refinery {
    runner: refinery::Runner,
}

impl Runner for Refinery {
    const NAME: &'static str = "refinery";
    type Handle = pg::Conn;

    fn known(&self) -> usize {
        self.runner.get_migrations().len()
    }

    async fn open(&self, url: &str) -> Result<pg::Conn> {
        pg::connect(url).await
    }

    async fn apply(&self, conn: &mut pg::Conn) -> Result<Option<usize>> {
        let report = self.runner.run_async(&mut conn.client).await?;
        Ok(Some(report.applied_migrations().len()))
    }

    async fn shut(&self, conn: pg::Conn) -> Result<()> {
        pg::close(conn).await
    }
}

fn main() {
    bench_peers::main(|_| {
        Ok(Refinery {
            runner: embedded::migrations::runner(),
        })
    })
}
