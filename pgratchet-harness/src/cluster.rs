//! [`Cluster`]: a running server (a throwaway one, or `DATABASE_URL`'s), and [`TestDb`]: a fresh
//! database of it for one test.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use tokio_postgres::config::Host;
use tokio_postgres::NoTls;

use crate::error::Error;
use crate::names::{percent_encode, quote_ident, redact, replace_url_dbname, unique_db_name};
use crate::os::find_bin_dir;
use crate::server::Server;

/// A running PostgreSQL server: a throwaway one started by this crate, or the server named by
/// `DATABASE_URL`.
#[derive(Debug)]
pub struct Cluster {
    host: String,
    pub(crate) port: u16,
    bin_dir: Option<PathBuf>,
    pub(crate) kind: Kind,
}

#[derive(Debug)]
pub(crate) enum Kind {
    /// A server this process started.
    Owned(Server),
    /// An external server (`DATABASE_URL`).
    External {
        url: String,
        maintenance: tokio_postgres::Config,
    },
}

impl Cluster {
    /// Starts a new private throwaway cluster (ignores `DATABASE_URL`). It is stopped and its
    /// directory removed when the value is dropped, and in any case within ~2 s of this
    /// process ending.
    pub fn start() -> Result<Cluster, Error> {
        Cluster::start_with(&[])
    }

    /// Like [`Cluster::start`], with server settings (`name`, `value`) applied on top of the
    /// harness's own (each as `-c name=value`), e.g. `("wal_writer_delay", "10s")` for a test
    /// that must see what reaches the disk when.
    pub fn start_with(settings: &[(&str, &str)]) -> Result<Cluster, Error> {
        let server = Server::start(settings)?;
        Ok(Cluster {
            host: "127.0.0.1".to_owned(),
            port: server.port,
            bin_dir: Some(server.bin_dir.clone()),
            kind: Kind::Owned(server),
        })
    }

    /// Uses an existing server given by a `postgres://` URL; its database is the maintenance
    /// database used to create per-test databases. Nothing is connected until
    /// [`Cluster::create_database`].
    pub fn from_url(url: &str) -> Result<Cluster, Error> {
        let url = url.trim();
        if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
            return Err(Error::InvalidUrl(format!(
                "database URL must start with postgres:// or postgresql://, got {:?}",
                redact(url)
            )));
        }
        let maintenance: tokio_postgres::Config = url.parse().map_err(|e| {
            Error::InvalidUrl(format!("cannot parse database URL {:?}: {e}", redact(url)))
        })?;
        let host = match maintenance.get_hosts().first() {
            Some(Host::Tcp(h)) => h.clone(),
            Some(Host::Unix(p)) => p.display().to_string(),
            None => "localhost".to_owned(),
        };
        let port = maintenance.get_ports().first().copied().unwrap_or(5432);
        Ok(Cluster {
            host,
            port,
            bin_dir: find_bin_dir().ok(),
            kind: Kind::External {
                url: url.to_owned(),
                maintenance,
            },
        })
    }

    /// `DATABASE_URL` when set and non-empty ([`Cluster::from_url`]), else a new private cluster
    /// ([`Cluster::start`]).
    pub fn from_env() -> Result<Cluster, Error> {
        match std::env::var("DATABASE_URL") {
            Ok(url) if !url.trim().is_empty() => Cluster::from_url(&url),
            _ => Cluster::start(),
        }
    }

    /// The cluster of this process, shared by all its tests: started on first use
    /// ([`Cluster::from_env`], so `DATABASE_URL` is honoured), never dropped; the watchdog
    /// stops it when the process ends.
    ///
    /// # Panics
    ///
    /// When the cluster cannot be started (every later call panics with the same message).
    /// For tests only: programs should use [`Cluster::start`] or [`Cluster::from_env`].
    pub fn shared() -> &'static Cluster {
        match Cluster::try_shared() {
            Ok(cluster) => cluster,
            Err(e) => {
                panic!("pgratchet-harness: cannot start the shared PostgreSQL test cluster: {e}")
            }
        }
    }

    /// [`Cluster::shared`], with the error instead of a panic (the same error on every call
    /// once starting failed).
    pub fn try_shared() -> Result<&'static Cluster, Error> {
        static SHARED: OnceLock<Result<Cluster, String>> = OnceLock::new();
        match SHARED.get_or_init(|| Cluster::from_env().map_err(|e| e.to_string())) {
            Ok(cluster) => Ok(cluster),
            Err(message) => Err(Error::Setup(message.clone())),
        }
    }

    /// The URL of database `dbname` on this server:
    /// `postgres://postgres@127.0.0.1:PORT/dbname` for a throwaway cluster, the
    /// `DATABASE_URL` with its database replaced otherwise.
    pub fn url(&self, dbname: &str) -> String {
        match &self.kind {
            Kind::Owned(s) => format!(
                "postgres://postgres@127.0.0.1:{}/{}",
                s.port,
                percent_encode(dbname)
            ),
            Kind::External { url, .. } => replace_url_dbname(url, dbname),
        }
    }

    /// The TCP port of the server.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The host of the server (`127.0.0.1` for a throwaway cluster).
    pub fn host(&self) -> String {
        self.host.clone()
    }

    /// The directory holding the server binaries (`psql`, `pg_dump`, ... too), when found.
    /// Always `Some` for a throwaway cluster; for `DATABASE_URL` it is looked up locally.
    pub fn bin_dir(&self) -> Option<&Path> {
        self.bin_dir.as_deref()
    }

    /// The pid of the postmaster of a throwaway cluster (`None` for `DATABASE_URL`).
    pub fn postmaster_pid(&self) -> Option<u32> {
        match &self.kind {
            Kind::Owned(s) => Some(s.postmaster.id()),
            Kind::External { .. } => None,
        }
    }

    /// The directory of a throwaway cluster (data directory in `data/`, server log in
    /// `postgres.log`); `None` for `DATABASE_URL`.
    pub fn dir(&self) -> Option<&Path> {
        match &self.kind {
            Kind::Owned(s) => Some(&s.dir),
            Kind::External { .. } => None,
        }
    }

    /// Creates a fresh, empty database with a unique name derived from `label` (sanitized to
    /// `[a-z0-9_]`, shortened) and returns its name and URL. Must be called within a Tokio
    /// runtime.
    pub async fn create_database(&self, label: &str) -> Result<TestDb, Error> {
        self.create_database_from(label, None).await
    }

    /// Like [`create_database`](Self::create_database), as a copy of database `template`
    /// (which nobody may be connected to). On a throwaway cluster of PostgreSQL 15 or newer the
    /// copy is made with `STRATEGY FILE_COPY`: its checkpoint costs nothing with fsync off, and it
    /// writes no WAL for the copy. On `DATABASE_URL`'s server, never: a checkpoint there is paid
    /// by everyone on it.
    pub async fn create_database_from(
        &self,
        label: &str,
        template: Option<&str>,
    ) -> Result<TestDb, Error> {
        let (client, conn_task) = self.maintenance().await?;
        let file_copy = matches!(self.kind, Kind::Owned(_)) && template.is_some() && {
            let version = client
                .query_one("SELECT current_setting('server_version_num')::int", &[])
                .await
                .map_err(|source| Error::Postgres {
                    context: "cannot read the server's version".to_owned(),
                    source,
                })?;
            version.get::<_, i32>(0) >= 150_000
        };
        let mut attempt = 0;
        let result = loop {
            let name = unique_db_name(label);
            let mut sql = format!("CREATE DATABASE {}", quote_ident(&name));
            if let Some(template) = template {
                sql.push_str(&format!(" TEMPLATE {}", quote_ident(template)));
            }
            if file_copy {
                sql.push_str(" STRATEGY FILE_COPY");
            }
            match client.batch_execute(&sql).await {
                Ok(()) => {
                    break Ok(TestDb {
                        url: self.url(&name),
                        name,
                    })
                }
                Err(e)
                    if attempt < 5
                        && e.code()
                            == Some(&tokio_postgres::error::SqlState::DUPLICATE_DATABASE) =>
                {
                    attempt += 1;
                }
                Err(source) => {
                    break Err(Error::Postgres {
                        context: format!("{sql} failed"),
                        source,
                    })
                }
            }
        };
        drop(client);
        let _ = conn_task.await;
        result
    }

    /// Drops database `name` if it exists, ending its sessions first (`WITH (FORCE)`).
    pub async fn drop_database(&self, name: &str) -> Result<(), Error> {
        let (client, conn_task) = self.maintenance().await?;
        let sql = format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", quote_ident(name));
        let result = client
            .batch_execute(&sql)
            .await
            .map_err(|source| Error::Postgres {
                context: format!("{sql} failed"),
                source,
            });
        drop(client);
        let _ = conn_task.await;
        result
    }

    /// A new connection to the maintenance database (`postgres` on a throwaway cluster, the
    /// URL's database on `DATABASE_URL`'s server), and its connection task: drop the client,
    /// then await the task, to be sure the session has ended.
    pub async fn maintenance(
        &self,
    ) -> Result<(tokio_postgres::Client, tokio::task::JoinHandle<()>), Error> {
        let config = match &self.kind {
            Kind::Owned(_) => self.url("postgres").parse().expect("valid URL"),
            Kind::External { maintenance, .. } => maintenance.clone(),
        };
        let (client, connection) =
            config
                .connect(NoTls)
                .await
                .map_err(|source| Error::Postgres {
                    context: format!(
                        "cannot connect to the maintenance database of {}:{}",
                        self.host, self.port
                    ),
                    source,
                })?;
        let task = tokio::spawn(async move {
            // Errors surface through the client; a dropped client ends the task.
            let _ = connection.await;
        });
        Ok((client, task))
    }

    /// Whether this is a throwaway cluster this process started (not `DATABASE_URL`'s server).
    pub fn is_throwaway(&self) -> bool {
        matches!(self.kind, Kind::Owned(_))
    }
}

/// A fresh database of a [`Cluster`], made for one test.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TestDb {
    /// The database's name.
    pub name: String,
    /// Its connection URL.
    pub url: String,
}

impl TestDb {
    /// A `tokio_postgres::Config` for this database.
    pub fn config(&self) -> tokio_postgres::Config {
        self.url
            .parse()
            .unwrap_or_else(|e| panic!("pgratchet-harness: invalid URL {}: {e}", redact(&self.url)))
    }

    /// A connected client; its connection task is spawned on the current Tokio runtime.
    ///
    /// # Panics
    ///
    /// When the connection fails (tests only) or outside a Tokio runtime.
    pub async fn client(&self) -> tokio_postgres::Client {
        let (client, connection) = self.config().connect(NoTls).await.unwrap_or_else(|e| {
            panic!(
                "pgratchet-harness: cannot connect to test database {}: {}",
                self.name,
                Error::Postgres {
                    context: redact(&self.url),
                    source: e
                }
            )
        });
        tokio::spawn(async move {
            // Errors surface through the client; a dropped client ends the task.
            let _ = connection.await;
        });
        client
    }

    /// A `deadpool-postgres` pool of at most `max_size` connections to this database (no
    /// connection is made until one is requested; fast recycling). Needs a Tokio runtime when
    /// used.
    pub fn pool(&self, max_size: usize) -> deadpool_postgres::Pool {
        let manager = deadpool_postgres::Manager::from_config(
            self.config(),
            NoTls,
            deadpool_postgres::ManagerConfig {
                recycling_method: deadpool_postgres::RecyclingMethod::Fast,
            },
        );
        deadpool_postgres::Pool::builder(manager)
            .max_size(max_size)
            .runtime(deadpool_postgres::Runtime::Tokio1)
            .build()
            .expect("pgratchet-harness: cannot build deadpool pool")
    }
}

/// A fresh database on [`Cluster::shared`] for one test.
///
/// # Panics
///
/// When the shared cluster cannot be started or the database cannot be created.
pub async fn test_db(label: &str) -> TestDb {
    Cluster::shared()
        .create_database(label)
        .await
        .unwrap_or_else(|e| {
            panic!("pgratchet-harness: cannot create a test database for {label:?}: {e}")
        })
}
