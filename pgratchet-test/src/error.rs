//! [`Error`]: why a test database could not be made.

use std::fmt;

/// Why a test database could not be made (or dropped).
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// No server: the throwaway cluster could not be started, or `DATABASE_URL`'s is unusable.
    Server(pgratchet_harness::Error),
    /// Under cargo-nextest, which runs every test in a process of its own, without
    /// `DATABASE_URL`.
    NextestWithoutDatabaseUrl,
    /// The migrations failed to apply to the template.
    Migrations(pgratchet_runtime::Error),
    /// A fixture's SQL failed.
    Fixture {
        /// The fixture's name (`fixtures/<name>.sql`).
        name: String,
        /// The server's error.
        source: tokio_postgres::Error,
    },
    /// A statement of the kit's own failed.
    Postgres {
        /// What the kit was doing.
        context: String,
        /// The server's error.
        source: tokio_postgres::Error,
    },
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Server(_) => f.write_str("no PostgreSQL server for the tests"),
            Error::NextestWithoutDatabaseUrl => f.write_str(
                "cargo-nextest runs every test in a process of its own, and a throwaway cluster \
                 per process would cost seconds per test: set DATABASE_URL to a server whose \
                 role may CREATE DATABASE (the migrated templates are shared across processes \
                 there), or run the tests with `cargo test`",
            ),
            Error::Migrations(_) => f.write_str("the migrations failed to apply to the template"),
            Error::Fixture { name, .. } => write!(f, "fixture `{name}` failed"),
            Error::Postgres { context, .. } => f.write_str(context),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Server(source) => Some(source),
            Error::Migrations(source) => Some(source),
            Error::Fixture { source, .. } | Error::Postgres { source, .. } => Some(source),
            Error::NextestWithoutDatabaseUrl => None,
        }
    }
}

impl Error {
    pub(crate) fn postgres(
        context: impl Into<String>,
    ) -> impl FnOnce(tokio_postgres::Error) -> Error {
        let context = context.into();
        move |source| Error::Postgres { context, source }
    }
}
