//! Tests against a real PostgreSQL database with your migrations applied, a database of its own
//! per test, ready in milliseconds, with no server to install or start by hand.
//!
//! ```no_run
//! static MIGRATIONS: pgratchet::Migrations = pgratchet::embed_migrations!("migrations");
//!
//! #[pgratchet_test::test(migrations = MIGRATIONS)]
//! async fn routers_are_unique(pool: deadpool_postgres::Pool) {
//!     let client = pool.get().await.unwrap();
//!     client.execute("INSERT INTO routers (name) VALUES ('r1')", &[]).await.unwrap();
//! }
//! # fn main() {}
//! ```
//!
//! # The attribute
//!
//! `#[pgratchet_test::test(...)]` makes a `#[test]` of an `async fn` that takes a
//! `deadpool_postgres::Pool` or a `tokio_postgres::Client` and returns `()` or a `Result`
//! (`Err` fails the test). Its arguments:
//!
//! * `migrations = MIGRATIONS`: a `static` [`Migrations`](pgratchet_runtime::Migrations), run
//!   with the default settings; or `migrator = expr`, an expression giving a configured
//!   `Migrator<'static>` (schema, table), evaluated for each test;
//! * `fixtures("users", "orders")`: `fixtures/<name>.sql` beside the crate's `Cargo.toml`,
//!   embedded at build time and applied in that order after the migrations;
//! * `flavor = "multi_thread"` (and `worker_threads = N`): the test's runtime, as with
//!   `#[tokio::test]`; current-thread by default.
//!
//! Without the attribute, [`TestDatabase`] does the same for tests that build their own
//! runtime.
//!
//! # How it works
//!
//! * **Server**: the one `DATABASE_URL` names (its role needs `CREATEDB`); otherwise a throwaway
//!   cluster per test binary, started on first use (`initdb`, as the `postgres` user when
//!   running as root; 127.0.0.1 on a free port; fsync off) and stopped when the test process
//!   ends, however it ends (see `pgratchet-harness`). Without server binaries the error says
//!   what to install. Under cargo-nextest, which runs each test in a process of its own,
//!   `DATABASE_URL` is required: the templates are shared across processes there.
//! * **Template**: the migrations are applied once, into a database named after the
//!   fingerprint of the set's checksums, the runner's schema and table, and this crate's
//!   version. It is built under a temporary name and renamed when complete, then closed to
//!   connections, so a build killed half-way is never copied; builds are serialised across
//!   processes by an advisory lock. Templates of other fingerprints unused for a day are
//!   dropped.
//! * **Per test**: `CREATE DATABASE ... TEMPLATE`, with `STRATEGY FILE_COPY` on the throwaway
//!   cluster of PostgreSQL 15 or newer (never on a `DATABASE_URL` server: it forces a
//!   checkpoint there).
//! * **After the test**: the database is dropped when the test passes. When it fails, it is
//!   kept: on `DATABASE_URL`'s server its URL is printed; on the throwaway cluster the whole
//!   cluster is kept (shut down cleanly when the tests end) and the `pg_ctl` and `psql`
//!   commands to look at it are printed; a later run removes it after a day.
//! * No connection or pool lives in a static: each test connects on its own runtime, so
//!   current-thread and multi-thread runtimes both work and tests run in parallel.
//!
//! Unix only: the throwaway cluster is started with unix process APIs; on Windows, run the
//! tests in WSL.
#![warn(missing_docs, unreachable_pub)]

mod database;
mod error;
mod run;
mod template;

pub use database::TestDatabase;
pub use error::Error;

/// Makes an `async fn` taking a pool or a client a test with a migrated database of its own;
/// see the [crate docs](crate).
pub use pgratchet_macros::test;

/// Not public API: what `#[pgratchet_test::test]` expands to refers to these.
#[doc(hidden)]
pub mod __private {
    pub use crate::run::{run, Flavor, FromDatabase, Outcome, Setup};
}
