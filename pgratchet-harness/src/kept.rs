//! [`Kept`]: a throwaway cluster left behind after a failed test, and how to look at it.

use std::fmt;
use std::path::PathBuf;

use crate::cluster::{Cluster, Kind};
use crate::error::Error;
use crate::names::quote_literal;
use crate::os::{run_as, KEEP_MARKER};

/// A throwaway cluster kept when the process ends: shut down cleanly, its directory left in
/// place, its settings written into the data directory so that `pg_ctl start` brings it back on
/// the same port. A later run removes it after a day unless its server is running.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Kept {
    /// The cluster's directory (data in `data/`, the server log in `postgres.log`).
    pub dir: PathBuf,
    /// Its port on 127.0.0.1.
    pub port: u16,
    /// The server binaries (`pg_ctl`, `psql`).
    pub bin_dir: PathBuf,
    /// The user the server runs as when this process is root (`postgres`); `None` otherwise.
    pub user: Option<String>,
}

impl Kept {
    /// The commands that start the kept cluster again and open `dbname` in psql.
    pub fn instructions(&self, dbname: &str) -> String {
        let as_user = self
            .user
            .as_ref()
            .map(|user| format!("runuser -u {user} -- "))
            .unwrap_or_default();
        format!(
            "  {as_user}{pg_ctl} -D {data} -l {log} start\n  {psql} 'postgres://postgres@127.0.0.1:{port}/{dbname}'\n\
             (stop it with `{as_user}{pg_ctl} -D {data} stop`; a later test run removes it after a day \
             unless it is running)",
            pg_ctl = self.bin_dir.join("pg_ctl").display(),
            psql = self.bin_dir.join("psql").display(),
            data = self.dir.join("data").display(),
            log = self.dir.join("postgres.log").display(),
            port = self.port,
        )
    }
}

impl fmt::Display for Kept {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "the cluster in {}", self.dir.display())
    }
}

impl Cluster {
    /// Keeps this throwaway cluster when the process ends, so that a failed test's database can
    /// be looked at; `Ok(None)` for `DATABASE_URL`'s server, which this crate never stops.
    pub async fn keep(&self) -> Result<Option<Kept>, Error> {
        let Kind::Owned(server) = &self.kind else {
            return Ok(None);
        };
        let (client, task) = self.maintenance().await?;
        // What the harness passes on the command line, so that `pg_ctl start` alone finds it.
        let settings = [
            ("port", server.port.to_string()),
            ("listen_addresses", "127.0.0.1".to_owned()),
            ("unix_socket_directories", server.dir.display().to_string()),
            ("fsync", "off".to_owned()),
            ("synchronous_commit", "off".to_owned()),
            ("full_page_writes", "off".to_owned()),
            ("max_connections", "300".to_owned()),
        ];
        for (name, value) in settings {
            // ALTER SYSTEM takes no parameters; `name` is ours, `value` a quoted literal.
            let sql = format!("ALTER SYSTEM SET {name} = {}", quote_literal(&value));
            client
                .batch_execute(&sql)
                .await
                .map_err(|source| Error::Postgres {
                    context: format!("{sql} failed"),
                    source,
                })?;
        }
        drop(client);
        let _ = task.await;
        let run_as = run_as()?;
        if let Some(user) = run_as {
            // The server log was opened by this process (root); `pg_ctl -l` appends to it as the
            // server's user.
            let log = server.dir.join("postgres.log");
            std::os::unix::fs::chown(&log, Some(user.uid), Some(user.gid)).map_err(|source| {
                Error::Io {
                    context: format!("cannot hand {} to postgres", log.display()),
                    source,
                }
            })?;
        }
        let marker = server.dir.join(KEEP_MARKER);
        std::fs::write(&marker, b"kept after a failed test\n").map_err(|source| Error::Io {
            context: format!("cannot write {}", marker.display()),
            source,
        })?;
        Ok(Some(Kept {
            dir: server.dir.clone(),
            port: server.port,
            bin_dir: server.bin_dir.clone(),
            user: run_as.map(|_| "postgres".to_owned()),
        }))
    }
}
