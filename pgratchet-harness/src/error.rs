//! [`Error`]: what can go wrong while starting a server or creating a database.

use std::fmt;
use std::io;

/// Everything that can go wrong while starting a cluster or creating a database.
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// No `initdb`/`postgres` binaries were found.
    NoServerBinaries(String),
    /// No `pgbouncer` binary was found.
    NoPgBouncer(String),
    /// An I/O operation (spawning a process, creating a directory, ...) failed.
    Io {
        /// What was being done.
        context: String,
        /// The underlying error.
        source: io::Error,
    },
    /// The environment does not allow starting a server (e.g. root without a `postgres` user).
    Setup(String),
    /// `initdb` failed or the server did not start; `log` holds its output.
    Start {
        /// What failed.
        message: String,
        /// The output of `initdb` or the server log.
        log: String,
    },
    /// `DATABASE_URL` (or a URL given to [`Cluster::from_url`](crate::Cluster::from_url)) is unusable.
    InvalidUrl(String),
    /// A query or connection to the server failed.
    Postgres {
        /// What was being done.
        context: String,
        /// The underlying error.
        source: tokio_postgres::Error,
    },
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::NoServerBinaries(m)
            | Error::NoPgBouncer(m)
            | Error::Setup(m)
            | Error::InvalidUrl(m) => f.write_str(m),
            Error::Io { context, source } => write!(f, "{context}: {source}"),
            Error::Start { message, log } => {
                write!(f, "{message}")?;
                if !log.trim().is_empty() {
                    write!(
                        f,
                        "\n--- output ---\n{}\n--- end of output ---",
                        log.trim_end()
                    )?;
                }
                Ok(())
            }
            Error::Postgres { context, source } => match source.as_db_error() {
                Some(db) => write!(f, "{context}: {}: {}", db.severity(), db.message()),
                None => write!(f, "{context}: {source}"),
            },
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Io { source, .. } => Some(source),
            Error::Postgres { source, .. } => Some(source),
            _ => None,
        }
    }
}

pub(crate) fn io_err(context: impl Into<String>) -> impl FnOnce(io::Error) -> Error {
    let context = context.into();
    move |source| Error::Io { context, source }
}
