//! What `#[pgratchet_test::test]` expands to calls: build the test's runtime and database, run
//! the body, drop the database when it passes, keep it when it fails. Not public API.

use std::fmt::Debug;
use std::future::Future;

use pgratchet_runtime::{Migrations, Migrator};

use crate::TestDatabase;

/// What migrates the test's database: a set with the default settings, or a configured runner.
#[derive(Debug)]
pub enum Setup {
    /// `migrations = MIGRATIONS`.
    Migrations(&'static Migrations),
    /// `migrator = <expr>`.
    Migrator(Migrator<'static>),
}

impl From<&'static Migrations> for Setup {
    fn from(migrations: &'static Migrations) -> Self {
        Setup::Migrations(migrations)
    }
}

impl From<Migrator<'static>> for Setup {
    fn from(migrator: Migrator<'static>) -> Self {
        Setup::Migrator(migrator)
    }
}

/// The test's runtime, as `#[tokio::test]` spells it.
#[derive(Clone, Copy, Debug)]
pub enum Flavor {
    /// `flavor = "current_thread"` (the default).
    CurrentThread,
    /// `flavor = "multi_thread"`, with this many workers (0: tokio's default).
    MultiThread(usize),
}

/// What a test body may take: a pool or a client of its database.
pub trait FromDatabase: Sized {
    /// Made from the test's database, on the test's runtime.
    fn from_database(database: &TestDatabase) -> impl Future<Output = Self>;
}

impl FromDatabase for deadpool_postgres::Pool {
    async fn from_database(database: &TestDatabase) -> Self {
        database.pool()
    }
}

impl FromDatabase for tokio_postgres::Client {
    async fn from_database(database: &TestDatabase) -> Self {
        database
            .client()
            .await
            .unwrap_or_else(|error| panic!("pgratchet-test: {error}"))
    }
}

/// What a test body may return: `()` or a `Result` whose error fails the test.
pub trait Outcome {
    /// `Err` with the message the test fails with.
    fn into_result(self) -> Result<(), String>;
}

impl Outcome for () {
    fn into_result(self) -> Result<(), String> {
        Ok(())
    }
}

impl<E: Debug> Outcome for Result<(), E> {
    fn into_result(self) -> Result<(), String> {
        self.map_err(|error| format!("the test returned Err({error:?})"))
    }
}

/// Runs one test: its database (the template copied, `fixtures` applied), then `body` on it.
/// `should_panic`: the test has `#[should_panic]`, so a panic drops the database.
pub fn run<A, F, Fut, O>(
    test: &str,
    setup: Setup,
    fixtures: &[(&str, &str)],
    flavor: Flavor,
    should_panic: bool,
    body: F,
) where
    A: FromDatabase,
    F: FnOnce(A) -> Fut,
    Fut: Future<Output = O>,
    O: Outcome,
{
    let runtime = match flavor {
        Flavor::CurrentThread => tokio::runtime::Builder::new_current_thread(),
        Flavor::MultiThread(workers) => {
            let mut builder = tokio::runtime::Builder::new_multi_thread();
            if workers > 0 {
                builder.worker_threads(workers);
            }
            builder
        }
    }
    .enable_all()
    .build()
    .unwrap_or_else(|error| panic!("pgratchet-test: cannot start the test's runtime: {error}"));
    let label = test.rsplit("::").next().unwrap_or(test);
    let mut database = runtime
        .block_on(async {
            match &setup {
                Setup::Migrations(migrations) => {
                    TestDatabase::create(&Migrator::new(migrations), label, fixtures).await
                }
                Setup::Migrator(migrator) => TestDatabase::create(migrator, label, fixtures).await,
            }
        })
        .unwrap_or_else(|error| panic!("pgratchet-test: {test}: {}", chain(&error)));
    if should_panic {
        // Its panic is a pass: nothing to look at afterwards.
        database.drop_on_panic();
    }
    let outcome = runtime.block_on(async {
        let argument = A::from_database(&database).await;
        body(argument).await
    });
    // The test's connections end with its runtime, before the database is dropped.
    drop(runtime);
    if let Err(message) = outcome.into_result() {
        // Unwinding drops `database` while panicking: it is kept.
        panic!("{message}");
    }
    drop(database);
}

/// The error and its causes on one line.
fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
