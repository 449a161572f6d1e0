//! Throwaway PostgreSQL for this workspace's tests (and for the collector example).
//!
//! # Model
//!
//! * A [`Cluster`] is a running PostgreSQL server. [`Cluster::shared`] is the one per test
//!   process: started lazily on first use (thread-safe), shared by every test of the test
//!   binary, never stopped explicitly (see *Cleanup*). [`Cluster::start`] starts a new private
//!   cluster that is stopped when the value is dropped (used by the collector example).
//! * Every test gets its own fresh database: [`test_db`] / [`Cluster::create_database`] run
//!   `CREATE DATABASE` with a unique name built from the test's label, the process id and a
//!   counter. Databases are never dropped: a private cluster is deleted as a whole.
//!
//! # Server binaries
//!
//! `initdb` and `postgres` are taken from `pg_config --bindir`, or else from the highest
//! `/usr/lib/postgresql/*/bin`. When neither has them the error says to install the
//! PostgreSQL server binaries (`apt-get install postgresql`). [`Cluster::bin_dir`] exposes that
//! directory, where `psql`, `pg_dump`, ... live too.
//!
//! The cluster is `initdb`-ed into a fresh directory under [`std::env::temp_dir`]
//! (`-A trust -U postgres`, so the URL is `postgres://postgres@127.0.0.1:PORT/DB`) and listens
//! on a free loopback port. Durability is switched off (`fsync`, `synchronous_commit`,
//! `full_page_writes`): never use it for data you want to keep. When the process runs as root
//! (PostgreSQL refuses to), `initdb` and `postgres` run as the `postgres` user taken from
//! `/etc/passwd`, which must exist, and the directory is handed to that user; the temporary
//! directory must then be reachable by that user (`/tmp` is).
//!
//! # `DATABASE_URL`
//!
//! When `DATABASE_URL` is set (non-empty) [`Cluster::shared`] (and [`Cluster::from_env`]) start
//! nothing and use that server instead: it must be a `postgres://` or `postgresql://` URL whose
//! role may `CREATE DATABASE`; the database in the URL (the user's name when absent) is the
//! maintenance database the harness connects to for creating the per-test databases, and
//! [`Cluster::url`] is that URL with the database replaced. TLS is not supported (`NoTls`).
//! Databases created there are left behind; their names carry the process id, a counter and
//! a time-derived salt so repeated runs do not collide. [`Cluster::start`] ignores
//! `DATABASE_URL`: it always starts a private server.
//!
//! # Cleanup
//!
//! libtest has no global teardown and a test process may panic, call `exit`, or be
//! `SIGKILL`-ed, so the server is never stopped by the test process itself. Instead, right
//! after `postgres` is spawned, a tiny detached watchdog (`sh`, in its own process group so a
//! signal sent to the test's process group does not reach it) is spawned whose standard input
//! is a pipe whose only writing end lives in the test process (close-on-exec, so no other
//! child inherits it). Whenever the test process ends, however it ends, the kernel closes that
//! end, the watchdog reads end-of-file, sends `SIGQUIT` (immediate shutdown) to the postmaster,
//! escalates to `SIGKILL` of its process group after ~2 s, and deletes the directory. The
//! postmaster is also in its own process group so it is stopped by the watchdog in an orderly
//! way rather than by a stray `SIGINT`. The watchdog checks that the pid is still our
//! postmaster (its command line names our data directory) before signalling it.
//!
//! A [`Cluster`] from [`Cluster::start`] additionally stops its server and removes its
//! directory synchronously on [`Drop`].
//!
//! # Environment
//!
//! * `DATABASE_URL`: see above.
//! * `PG_HARNESS_START_TIMEOUT`: seconds to wait for the server to accept connections
//!   (default 60).
//! * `PG_HARNESS_PGBOUNCER`: the `pgbouncer` binary (default: found on `PATH` or in `/usr/sbin`,
//!   `/usr/bin`, `/usr/local/sbin`, `/usr/local/bin`).
//!
//! # PgBouncer
//!
//! [`Cluster::pgbouncer`] starts a throwaway PgBouncer in front of a cluster (see [`Bouncer`]),
//! stopped on drop and by the same kind of watchdog when the process ends.

#![warn(missing_docs)]

use std::fmt;
use std::fs;
use std::io;
use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tokio_postgres::config::Host;
use tokio_postgres::NoTls;

mod bouncer;

pub use bouncer::{Bouncer, PoolMode};

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
    /// `DATABASE_URL` (or a URL given to [`Cluster::from_url`]) is unusable.
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

fn io_err(context: impl Into<String>) -> impl FnOnce(io::Error) -> Error {
    let context = context.into();
    move |source| Error::Io { context, source }
}

/// A running PostgreSQL server: a throwaway one started by this crate, or the server named by
/// `DATABASE_URL`.
#[derive(Debug)]
pub struct Cluster {
    host: String,
    port: u16,
    bin_dir: Option<PathBuf>,
    kind: Kind,
}

#[derive(Debug)]
enum Kind {
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
        static SHARED: OnceLock<Result<Cluster, String>> = OnceLock::new();
        match SHARED.get_or_init(|| Cluster::from_env().map_err(|e| e.to_string())) {
            Ok(cluster) => cluster,
            Err(e) => panic!("pg-harness: cannot start the shared PostgreSQL test cluster: {e}"),
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
        let conn_task = tokio::spawn(connection);
        let mut attempt = 0;
        let result = loop {
            let name = unique_db_name(label);
            let sql = format!("CREATE DATABASE {}", quote_ident(&name));
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
            .unwrap_or_else(|e| panic!("pg-harness: invalid URL {}: {e}", redact(&self.url)))
    }

    /// A connected client; its connection task is spawned on the current Tokio runtime.
    ///
    /// # Panics
    ///
    /// When the connection fails (tests only) or outside a Tokio runtime.
    pub async fn client(&self) -> tokio_postgres::Client {
        let (client, connection) = self.config().connect(NoTls).await.unwrap_or_else(|e| {
            panic!(
                "pg-harness: cannot connect to test database {}: {}",
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
            .expect("pg-harness: cannot build deadpool pool")
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
        .unwrap_or_else(|e| panic!("pg-harness: cannot create a test database for {label:?}: {e}"))
}

// ---------------------------------------------------------------------------------------------
// Owned server
// ---------------------------------------------------------------------------------------------

/// A postmaster started by this process, with its watchdog.
#[derive(Debug)]
struct Server {
    bin_dir: PathBuf,
    dir: PathBuf,
    port: u16,
    postmaster: Child,
    watchdog: Watchdog,
}

/// The user to run server processes as (when this process is root).
#[derive(Clone, Copy, Debug)]
struct RunAs {
    uid: u32,
    gid: u32,
}

impl Server {
    fn start(settings: &[(&str, &str)]) -> Result<Server, Error> {
        let bin_dir = find_bin_dir()?;
        let run_as = run_as()?;
        let dir = TempDir::create(run_as)?;
        let data = dir.path.join("data");

        // initdb
        let mut initdb = Command::new(bin_dir.join("initdb"));
        initdb
            .arg("-D")
            .arg(&data)
            .args([
                "-A",
                "trust",
                "-U",
                "postgres",
                "--no-sync",
                "-E",
                "UTF8",
                "--locale=C",
            ])
            .current_dir(&dir.path)
            .stdin(Stdio::null());
        server_env(&mut initdb, run_as);
        let out = initdb.output().map_err(io_err(format!(
            "cannot run {}",
            bin_dir.join("initdb").display()
        )))?;
        if !out.status.success() {
            let mut log = String::from_utf8_lossy(&out.stdout).into_owned();
            log.push_str(&String::from_utf8_lossy(&out.stderr));
            return Err(Error::Start {
                message: format!("initdb failed ({}) in {}", out.status, dir.path.display()),
                log,
            });
        }

        let timeout = std::env::var("PG_HARNESS_START_TIMEOUT")
            .ok()
            .and_then(|s| s.trim().parse::<u64>().ok())
            .map_or(Duration::from_secs(60), Duration::from_secs);
        let log_path = dir.path.join("postgres.log");
        let mut attempt = 0;
        loop {
            attempt += 1;
            let port = free_port()?;
            let log = fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&log_path)
                .map_err(io_err(format!("cannot open {}", log_path.display())))?;
            let log_err = log
                .try_clone()
                .map_err(io_err("cannot duplicate log file handle"))?;
            let mut cmd = Command::new(bin_dir.join("postgres"));
            cmd.arg("-D")
                .arg(&data)
                .arg("-p")
                .arg(port.to_string())
                .args([
                    "-c",
                    "listen_addresses=127.0.0.1",
                    "-c",
                    "fsync=off",
                    "-c",
                    "synchronous_commit=off",
                    "-c",
                    "full_page_writes=off",
                    "-c",
                    "max_connections=300",
                    "-c",
                    "shared_buffers=32MB",
                ])
                .arg("-c")
                .arg(format!("unix_socket_directories={}", dir.path.display()))
                .args(
                    settings
                        .iter()
                        .flat_map(|(name, value)| ["-c".to_owned(), format!("{name}={value}")]),
                )
                .current_dir(&dir.path)
                .stdin(Stdio::null())
                .stdout(log)
                .stderr(log_err)
                // Own process group: a SIGINT/SIGTERM sent to the test's group must not reach it;
                // the watchdog stops it.
                .process_group(0);
            server_env(&mut cmd, run_as);
            let mut postmaster = cmd.spawn().map_err(io_err(format!(
                "cannot run {}",
                bin_dir.join("postgres").display()
            )))?;
            let mut watchdog = match Watchdog::spawn(postmaster.id(), &data, &dir.path, "QUIT") {
                Ok(w) => w,
                Err(e) => {
                    stop_child(&mut postmaster);
                    return Err(e);
                }
            };
            let ready = wait_ready(&mut postmaster, &dir.path, timeout);
            if ready.is_ok() {
                let path = dir.path.clone();
                dir.keep();
                return Ok(Server {
                    bin_dir,
                    dir: path,
                    port,
                    postmaster,
                    watchdog,
                });
            }
            watchdog.disarm();
            stop_child(&mut postmaster);
            match ready {
                Ok(()) => unreachable!(),
                // Someone grabbed the port between our probe and the server's bind: retry.
                Err(Ready::PortTaken) if attempt < 5 => continue,
                Err(e) => {
                    let log = fs::read_to_string(&log_path).unwrap_or_default();
                    return Err(Error::Start {
                        message: match e {
                            Ready::Exited(status) => {
                                format!("PostgreSQL server exited during startup ({status})")
                            }
                            Ready::PortTaken => {
                                format!(
                                    "PostgreSQL server could not bind a port ({attempt} attempts)"
                                )
                            }
                            Ready::Timeout => format!(
                                "PostgreSQL server did not accept connections within {timeout:?} \
                                 (set PG_HARNESS_START_TIMEOUT to wait longer)"
                            ),
                            Ready::Io(e) => format!("waiting for PostgreSQL server: {e}"),
                        },
                        log,
                    });
                }
            }
        }
    }
}

/// Waits until `postmaster.pid` says `ready` (what `pg_ctl -w` checks).
fn wait_ready(postmaster: &mut Child, dir: &Path, timeout: Duration) -> Result<(), Ready> {
    let deadline = Instant::now() + timeout;
    let pid_file = dir.join("data").join("postmaster.pid");
    let pid = postmaster.id().to_string();
    loop {
        if let Some(status) = postmaster.try_wait().map_err(Ready::Io)? {
            let log = fs::read_to_string(dir.join("postgres.log")).unwrap_or_default();
            if log.contains("could not bind")
                || log.contains("could not create any TCP/IP sockets")
                || log.contains("Address already in use")
            {
                return Err(Ready::PortTaken);
            }
            return Err(Ready::Exited(status));
        }
        if let Ok(contents) = fs::read_to_string(&pid_file) {
            let lines: Vec<&str> = contents.lines().collect();
            if lines.len() >= 8 && lines[0].trim() == pid && lines[7].trim() == "ready" {
                return Ok(());
            }
        }
        if Instant::now() >= deadline {
            return Err(Ready::Timeout);
        }
        std::thread::sleep(Duration::from_millis(15));
    }
}

/// Stops a postmaster we spawned, if it still runs: SIGQUIT (immediate shutdown, no
/// checkpoint: it is a throwaway cluster), then SIGKILL of its process group after 5 s.
fn stop_child(child: &mut Child) {
    stop_child_with(child, libc::SIGQUIT, Duration::from_secs(5));
}

/// Stops a child we spawned that leads its own process group, if it still runs: `signal`, then
/// SIGKILL of its process group after `grace`.
fn stop_child_with(child: &mut Child, signal: libc::c_int, grace: Duration) {
    // Only signal a child not yet reaped: its pid cannot have been reused.
    if !matches!(child.try_wait(), Ok(None)) {
        return;
    }
    let pid = child.id() as libc::pid_t;
    // SAFETY: kill has no memory-safety preconditions; pid is our unreaped child.
    unsafe { libc::kill(pid, signal) };
    let deadline = Instant::now() + grace;
    while matches!(child.try_wait(), Ok(None)) {
        if Instant::now() >= deadline {
            // SAFETY: as above; the child leads its own process group.
            unsafe { libc::kill(-pid, libc::SIGKILL) };
            let _ = child.wait();
            return;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

impl Server {
    /// Stops the watchdog, then the server, and removes the directory.
    fn shutdown(&mut self) {
        self.watchdog.disarm();
        stop_child(&mut self.postmaster);
        let _ = fs::remove_dir_all(&self.dir);
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.shutdown();
    }
}

enum Ready {
    Exited(std::process::ExitStatus),
    PortTaken,
    Timeout,
    Io(io::Error),
}

/// The environment of `initdb`/`postgres`: as root, drop to the `postgres` user; no stray
/// `PG*` variables.
fn server_env(cmd: &mut Command, run_as: Option<RunAs>) {
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("PG") {
            cmd.env_remove(key);
        }
    }
    cmd.env("LC_ALL", "C");
    if let Some(RunAs { uid, gid }) = run_as {
        // std also clears supplementary groups when a root parent sets a uid.
        cmd.uid(uid).gid(gid);
        if let Some(home) = passwd_home("postgres") {
            cmd.env("HOME", home);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Watchdog
// ---------------------------------------------------------------------------------------------

/// The watchdog's script: `$1` pid of the process to stop (the postmaster, or a pgbouncer),
/// `$2` an argument on its command line that identifies it (the data directory, the
/// configuration file), `$3` directory to delete, `$4` the signal that stops it quickly
/// (`QUIT`: immediate shutdown of a postmaster; `TERM` for pgbouncer). It waits for end-of-file
/// on its stdin (the test process ending), then stops the process if it is still ours and
/// deletes the directory.
const WATCHDOG_SCRIPT: &str = r#"
trap '' INT TERM HUP
while read -r _; do :; done
ours() {
    if [ -r /proc/self/cmdline ]; then
        tr '\000' '\n' < "/proc/$1/cmdline" 2>/dev/null | grep -qxF -- "$2"
    else
        kill -0 "$1" 2>/dev/null
    fi
}
if ours "$1" "$2"; then
    kill -s "$4" "$1" 2>/dev/null
    i=0
    while [ "$i" -lt 20 ] && ours "$1" "$2"; do sleep 0.1; i=$((i + 1)); done
    if ours "$1" "$2"; then kill -s KILL -- "-$1" 2>/dev/null; kill -s KILL "$1" 2>/dev/null; fi
fi
rm -rf -- "$3"
"#;

#[derive(Debug)]
struct Watchdog {
    child: Option<Child>,
    /// The writing end of the watchdog's stdin; closed by the kernel when this process ends.
    _pipe: Option<ChildStdin>,
}

impl Watchdog {
    /// Watches process `pid`, identified by `arg` on its command line; see [`WATCHDOG_SCRIPT`].
    fn spawn(pid: u32, arg: &Path, dir: &Path, signal: &str) -> Result<Watchdog, Error> {
        let mut child = Command::new("sh")
            .arg("-c")
            .arg(WATCHDOG_SCRIPT)
            .arg("pg-harness-watchdog")
            .arg(pid.to_string())
            .arg(arg)
            .arg(dir)
            .arg(signal)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .current_dir("/")
            // Own process group: survives signals sent to the test's process group.
            .process_group(0)
            .spawn()
            .map_err(io_err("cannot spawn the pg-harness watchdog (sh)"))?;
        let pipe = child.stdin.take();
        Ok(Watchdog {
            child: Some(child),
            _pipe: pipe,
        })
    }

    /// Kills the watchdog without letting it act (the owner cleans up itself).
    fn disarm(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        self._pipe = None;
    }
}

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

/// A directory removed on drop unless kept.
struct TempDir {
    path: PathBuf,
    keep: bool,
}

impl TempDir {
    fn create(run_as: Option<RunAs>) -> Result<TempDir, Error> {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let base = std::env::temp_dir();
        for _ in 0..100 {
            let n = COUNTER.fetch_add(1, Ordering::Relaxed);
            let path = base.join(format!(
                "pg-harness-{}-{}-{}",
                std::process::id(),
                n,
                salt()
            ));
            match fs::create_dir(&path) {
                Ok(()) => {
                    let dir = TempDir { path, keep: false };
                    fs::set_permissions(&dir.path, fs::Permissions::from_mode(0o700))
                        .map_err(io_err(format!("cannot chmod {}", dir.path.display())))?;
                    if let Some(RunAs { uid, gid }) = run_as {
                        std::os::unix::fs::chown(&dir.path, Some(uid), Some(gid)).map_err(
                            io_err(format!("cannot chown {} to postgres", dir.path.display())),
                        )?;
                    }
                    return Ok(dir);
                }
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(e) => {
                    return Err(Error::Io {
                        context: format!("cannot create a directory in {}", base.display()),
                        source: e,
                    })
                }
            }
        }
        Err(Error::Setup(format!(
            "cannot create a unique directory in {}",
            base.display()
        )))
    }

    fn keep(mut self) {
        self.keep = true;
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if !self.keep {
            let _ = fs::remove_dir_all(&self.path);
        }
    }
}

/// The directory of `initdb`/`postgres`.
fn find_bin_dir() -> Result<PathBuf, Error> {
    let has_server = |dir: &Path| dir.join("initdb").is_file() && dir.join("postgres").is_file();
    let mut tried = Vec::new();
    if let Ok(out) = Command::new("pg_config")
        .arg("--bindir")
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
    {
        if out.status.success() {
            let dir = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
            if has_server(&dir) {
                return Ok(dir);
            }
            tried.push(dir.display().to_string());
        }
    }
    let mut versions: Vec<(u32, PathBuf)> = fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let version = e.file_name().to_str()?.parse::<u32>().ok()?;
            Some((version, e.path().join("bin")))
        })
        .collect();
    versions.sort();
    while let Some((_, dir)) = versions.pop() {
        if has_server(&dir) {
            return Ok(dir);
        }
        tried.push(dir.display().to_string());
    }
    Err(Error::NoServerBinaries(format!(
        "no PostgreSQL server binaries (initdb, postgres) found via `pg_config --bindir` or in \
         /usr/lib/postgresql/*/bin{}: install PostgreSQL server binaries, e.g. \
         `apt-get install postgresql`, or set DATABASE_URL to an existing server",
        if tried.is_empty() {
            String::new()
        } else {
            format!(" (tried {})", tried.join(", "))
        }
    )))
}

/// `Some(postgres user)` when running as root, which PostgreSQL refuses.
fn run_as() -> Result<Option<RunAs>, Error> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Ok(None);
    }
    let passwd = fs::read_to_string("/etc/passwd").map_err(io_err("cannot read /etc/passwd"))?;
    passwd_entry(&passwd, "postgres")
        .map(|(uid, gid, _)| Some(RunAs { uid, gid }))
        .ok_or_else(|| {
            Error::Setup(
                "running as root, and PostgreSQL refuses to run as root, but there is no \
                 `postgres` user in /etc/passwd to run it as: install the postgresql package \
                 (it creates that user), `useradd postgres`, or run as a normal user"
                    .to_owned(),
            )
        })
}

fn passwd_home(user: &str) -> Option<String> {
    let passwd = fs::read_to_string("/etc/passwd").ok()?;
    passwd_entry(&passwd, user).map(|(_, _, home)| home)
}

/// `(uid, gid, home)` of `user` in a passwd file's text.
fn passwd_entry(passwd: &str, user: &str) -> Option<(u32, u32, String)> {
    passwd.lines().find_map(|line| {
        let fields: Vec<&str> = line.split(':').collect();
        if fields.len() >= 6 && fields[0] == user {
            Some((
                fields[2].parse().ok()?,
                fields[3].parse().ok()?,
                fields[5].to_owned(),
            ))
        } else {
            None
        }
    })
}

/// A loopback port that was free a moment ago.
fn free_port() -> Result<u16, Error> {
    let listener = TcpListener::bind("127.0.0.1:0").map_err(io_err("cannot bind 127.0.0.1:0"))?;
    let port = listener
        .local_addr()
        .map_err(io_err("cannot read local address"))?
        .port();
    Ok(port)
}

/// A few time-derived base-36 digits, so names differ across runs reusing a pid.
fn salt() -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let mut n = (nanos / 1000) % 36u128.pow(4);
    let mut s = Vec::new();
    for _ in 0..4 {
        s.push(b"0123456789abcdefghijklmnopqrstuvwxyz"[(n % 36) as usize]);
        n /= 36;
    }
    String::from_utf8(s).expect("ascii")
}

/// `<label>_<pid>_<counter>_<salt>`, at most 63 bytes, `[a-z0-9_]`.
fn unique_db_name(label: &str) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut clean = String::new();
    for c in label.chars() {
        let c = c.to_ascii_lowercase();
        if c.is_ascii_alphanumeric() {
            clean.push(c);
        } else if !clean.is_empty() && !clean.ends_with('_') {
            clean.push('_');
        }
    }
    let clean = clean.trim_end_matches('_');
    let mut clean: String = clean.chars().take(32).collect();
    if clean.is_empty() {
        clean.push_str("db");
    }
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let name = format!("{clean}_{}_{n}_{}", std::process::id(), salt());
    debug_assert!(name.len() <= 63);
    name
}

fn quote_ident(s: &str) -> String {
    format!("\"{}\"", s.replace('"', "\"\""))
}

fn percent_encode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// `url` with its database (path) replaced by `dbname`, keeping the query.
fn replace_url_dbname(url: &str, dbname: &str) -> String {
    let (scheme, rest) = match url.find("://") {
        Some(i) => (&url[..i + 3], &url[i + 3..]),
        None => ("", url),
    };
    let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
    let authority = &rest[..authority_end];
    let query = rest[authority_end..]
        .find('?')
        .map(|i| &rest[authority_end + i..])
        .unwrap_or("");
    format!("{scheme}{authority}/{}{query}", percent_encode(dbname))
}

/// `url` with any password replaced, for messages.
fn redact(url: &str) -> String {
    let Some(i) = url.find("://") else {
        return url.to_owned();
    };
    let rest = &url[i + 3..];
    let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
    match rest[..authority_end].rfind('@') {
        Some(at) => match rest[..at].find(':') {
            Some(colon) => format!("{}{}:***{}", &url[..i + 3], &rest[..colon], &rest[at..]),
            None => url.to_owned(),
        },
        None => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_dbname_is_replaced() {
        assert_eq!(
            replace_url_dbname("postgres://u:p@h:5/old?sslmode=disable", "new"),
            "postgres://u:p@h:5/new?sslmode=disable"
        );
        assert_eq!(replace_url_dbname("postgres://h", "n"), "postgres://h/n");
        assert_eq!(
            replace_url_dbname("postgresql://h:1/", "n"),
            "postgresql://h:1/n"
        );
        assert_eq!(
            replace_url_dbname("postgres://h?x=1", "a b"),
            "postgres://h/a%20b?x=1"
        );
    }

    #[test]
    fn password_is_redacted() {
        assert_eq!(redact("postgres://u:secret@h/db"), "postgres://u:***@h/db");
        assert_eq!(redact("postgres://u@h/db"), "postgres://u@h/db");
    }

    #[test]
    fn db_names_are_unique_and_valid() {
        let a = unique_db_name("My Test: weird/label!!");
        let b = unique_db_name("My Test: weird/label!!");
        assert_ne!(a, b);
        assert!(a.starts_with("my_test_weird_label_"), "{a}");
        let long = unique_db_name(&"x".repeat(200));
        assert!(long.len() <= 63, "{long}");
        assert!(unique_db_name("").starts_with("db_"));
        for n in [a, b, long] {
            assert!(n
                .bytes()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'_'));
        }
    }

    #[test]
    fn passwd_parsing() {
        let p = "root:x:0:0:root:/root:/bin/bash\npostgres:x:101:104:PG,,,:/var/lib/postgresql:/bin/bash\n";
        assert_eq!(
            passwd_entry(p, "postgres"),
            Some((101, 104, "/var/lib/postgresql".to_owned()))
        );
        assert_eq!(passwd_entry(p, "nobody"), None);
    }
}
