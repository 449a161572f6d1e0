//! [`TestDatabase`]: one test's database, a copy of the migrated template.

use pgratchet_harness::{redact, Cluster, TestDb};
use pgratchet_runtime::{Migrations, Migrator};

use crate::{template, Error};

/// A database of its own for one test, with every migration applied (copied from a template, so
/// in milliseconds after the first). Dropped by [`close`](Self::close), or when the value is
/// dropped; kept, with a message saying how to look at it, when it is dropped while the test
/// panics.
///
/// ```no_run
/// static MIGRATIONS: pgratchet::Migrations = pgratchet::embed_migrations!("migrations");
///
/// # async fn example() -> Result<(), Box<dyn std::error::Error>> {
/// let db = pgratchet_test::TestDatabase::new(&MIGRATIONS).await?;
/// let client = db.client().await?;
/// client.execute("INSERT INTO routers (name) VALUES ('r1')", &[]).await?;
/// db.close().await?;
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct TestDatabase {
    cluster: &'static Cluster,
    database: TestDb,
    template: String,
    closed: bool,
    /// Whether a panic keeps it (not for a `#[should_panic]` test, whose panic is a pass).
    keep_on_panic: bool,
}

impl TestDatabase {
    /// A database with `migrations` applied, on the default settings (`Migrator::new`).
    pub async fn new(migrations: &Migrations) -> Result<TestDatabase, Error> {
        TestDatabase::with_migrator(&Migrator::new(migrations)).await
    }

    /// A database migrated by `migrator` (its schema and table settings are part of the
    /// template's name).
    pub async fn with_migrator(migrator: &Migrator<'_>) -> Result<TestDatabase, Error> {
        TestDatabase::create(migrator, "test", &[]).await
    }

    /// The database for the test `label`, with `fixtures` (name, SQL) applied in order.
    pub(crate) async fn create(
        migrator: &Migrator<'_>,
        label: &str,
        fixtures: &[(&str, &str)],
    ) -> Result<TestDatabase, Error> {
        let cluster = cluster()?;
        let template = template::ensure(cluster, migrator).await?;
        let database = cluster
            .create_database_from(label, Some(&template))
            .await
            .map_err(Error::Server)?;
        let db = TestDatabase {
            cluster,
            database,
            template,
            closed: false,
            keep_on_panic: true,
        };
        if !fixtures.is_empty() {
            let client = db.client().await?;
            for (name, sql) in fixtures {
                client
                    .batch_execute(sql)
                    .await
                    .map_err(|source| Error::Fixture {
                        name: (*name).to_owned(),
                        source,
                    })?;
            }
        }
        Ok(db)
    }

    /// The database's name.
    pub fn name(&self) -> &str {
        &self.database.name
    }

    /// The template it is a copy of: `pgratchet_tpl_<fingerprint>`, named after the migrations'
    /// checksums, the runner's schema and table, and this crate's version.
    pub fn template(&self) -> &str {
        &self.template
    }

    /// Its connection URL (`postgres://...`).
    pub fn url(&self) -> &str {
        &self.database.url
    }

    /// A pool of at most 8 connections to it, on the current Tokio runtime.
    pub fn pool(&self) -> deadpool_postgres::Pool {
        self.database.pool(8)
    }

    /// A connected client; its connection runs on the current Tokio runtime.
    pub async fn client(&self) -> Result<tokio_postgres::Client, Error> {
        let (client, connection) = self
            .database
            .config()
            .connect(tokio_postgres::NoTls)
            .await
            .map_err(Error::postgres(format!(
                "cannot connect to {}",
                self.name()
            )))?;
        tokio::spawn(async move {
            // Errors surface through the client; a dropped client ends the task.
            let _ = connection.await;
        });
        Ok(client)
    }

    /// Drops the database, ending its sessions first.
    pub async fn close(mut self) -> Result<(), Error> {
        self.closed = true;
        self.cluster
            .drop_database(&self.database.name)
            .await
            .map_err(Error::Server)
    }

    /// Makes a panic drop the database rather than keep it: the test expects to panic.
    pub(crate) fn drop_on_panic(&mut self) {
        self.keep_on_panic = false;
    }

    /// Drops the database from synchronous code: on a thread of its own with its own runtime,
    /// so it works inside and outside any runtime.
    fn drop_now(&self) -> Result<(), Error> {
        let (cluster, name) = (self.cluster, self.database.name.clone());
        on_own_runtime(async move { cluster.drop_database(&name).await }).map_err(Error::Server)
    }

    /// Keeps the database after a failure and says how to look at it.
    fn keep(&self) {
        let name = self.database.name.clone();
        if !self.cluster.is_throwaway() {
            eprintln!(
                "pgratchet-test: the test failed; its database `{name}` is kept: {}",
                redact(&self.database.url)
            );
            return;
        }
        let cluster = self.cluster;
        match on_own_runtime(async move { cluster.keep().await }) {
            Ok(Some(kept)) => eprintln!(
                "pgratchet-test: the test failed; its database `{name}` is kept with {kept}, \
                 stopped when the tests end. To look at it:\n{}",
                kept.instructions(&name)
            ),
            Ok(None) => {}
            Err(error) => eprintln!(
                "pgratchet-test: the test failed, and its database `{name}` could not be kept: {error}"
            ),
        }
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        if self.closed {
            return;
        }
        if std::thread::panicking() && self.keep_on_panic {
            self.keep();
        } else if let Err(error) = self.drop_now() {
            eprintln!(
                "pgratchet-test: cannot drop the test database `{}`: {error}",
                self.database.name
            );
        }
    }
}

/// The server of this process's tests: `DATABASE_URL`'s, or a throwaway cluster started on
/// first use and stopped when the process ends (the harness's shared one, so a test binary that
/// also uses the harness has one cluster). Not a connection: each test connects anew, on its own
/// runtime.
fn cluster() -> Result<&'static Cluster, Error> {
    let has_url = std::env::var("DATABASE_URL").is_ok_and(|url| !url.trim().is_empty());
    if !has_url && std::env::var_os("NEXTEST_RUN_ID").is_some() {
        return Err(Error::NextestWithoutDatabaseUrl);
    }
    Cluster::try_shared().map_err(Error::Server)
}

/// Runs `future` to completion on a new current-thread runtime on a new thread.
fn on_own_runtime<T, F>(future: F) -> Result<T, pgratchet_harness::Error>
where
    F: std::future::Future<Output = Result<T, pgratchet_harness::Error>> + Send + 'static,
    T: Send + 'static,
{
    std::thread::spawn(move || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|error| {
                pgratchet_harness::Error::Setup(format!("cannot start a runtime: {error}"))
            })?
            .block_on(future)
    })
    .join()
    .unwrap_or_else(|_| {
        Err(pgratchet_harness::Error::Setup(
            "the thread dropping the database panicked".to_owned(),
        ))
    })
}
