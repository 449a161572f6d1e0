//! A throwaway PgBouncer in front of a [`Cluster`], for tests of code that must work behind a
//! connection pooler.
//!
//! # Model
//!
//! [`Cluster::pgbouncer`] writes a configuration into a fresh directory under
//! [`std::env::temp_dir`] and starts `pgbouncer` (in the foreground, as the `postgres` user when
//! this process is root, like the server) listening on a free loopback port. Every database of
//! the cluster is reachable through it under its own name (a `*` fallback entry), so
//! [`Bouncer::url`] of a [`TestDb`]'s name reaches that database. Clients are not authenticated
//! (`auth_type = any`); the server connections log in as the cluster's user (with the password
//! of `DATABASE_URL`, if it has one).
//!
//! The settings that matter to tests:
//!
//! * `pool_mode`: as asked ([`PoolMode`]);
//! * `default_pool_size = 10`, `max_client_conn = 500`: more clients than server connections,
//!   so clients queue for a server, as in production;
//! * `ignore_startup_parameters = extra_float_digits,options`: tokio-postgres sends
//!   `client_encoding`, `user`, `database` and, when set, `application_name` (all known to
//!   PgBouncer) and `options`; JDBC-style clients send `extra_float_digits`. PgBouncer would
//!   refuse the connection on the last two; ignored, they are simply not forwarded (as in most
//!   production setups, so code must not rely on `options` reaching the server);
//! * `server_login_retry = 1`: a failed server login is retried after 1 s, not 15 s.
//!
//! # Binary
//!
//! `pgbouncer` is looked up on `PATH`, then in `/usr/sbin`, `/usr/bin`, `/usr/local/sbin` and
//! `/usr/local/bin` (Debian installs it in `/usr/sbin`, which is not on every user's `PATH`).
//! `PGRATCHET_HARNESS_PGBOUNCER` names the binary explicitly. When none is found the error says to
//! install it (`apt-get install pgbouncer`).
//!
//! # Cleanup
//!
//! Dropping the [`Bouncer`] stops it (`SIGTERM`, then `SIGKILL` of its process group after 2 s)
//! and removes its directory. Like the server, it also gets a detached watchdog that does the
//! same when the test process ends however it ends (panic, `exit`, `SIGKILL`), so a pgbouncer
//! never outlives its test process.

use std::fmt;
use std::fs;
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tokio_postgres::config::Host;

use crate::cluster::{Cluster, Kind, TestDb};
use crate::error::{io_err, Error};
use crate::names::percent_encode;
use crate::os::{free_port, log_files, run_as, RunAs, TempDir, Watchdog};
use crate::server::{server_env, stop_child_with};

/// PgBouncer's `pool_mode`: when a server connection goes back to the pool.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PoolMode {
    /// When the client disconnects (session state behaves as without a pooler).
    Session,
    /// At the end of each transaction: consecutive transactions of one client may run on
    /// different server connections, so session state (session advisory locks, `SET`, named
    /// prepared statements) is meaningless.
    Transaction,
    /// After each statement; multi-statement transactions are refused.
    Statement,
}

impl PoolMode {
    /// The value of `pool_mode` in `pgbouncer.ini`.
    pub fn as_str(self) -> &'static str {
        match self {
            PoolMode::Session => "session",
            PoolMode::Transaction => "transaction",
            PoolMode::Statement => "statement",
        }
    }
}

impl fmt::Display for PoolMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A running PgBouncer in front of a [`Cluster`]; stopped (and its directory removed) on drop.
#[derive(Debug)]
pub struct Bouncer {
    port: u16,
    user: String,
    mode: PoolMode,
    dir: PathBuf,
    process: Child,
    watchdog: Watchdog,
}

impl Cluster {
    /// Starts a PgBouncer in `mode` in front of this cluster, on a free loopback port (see
    /// [`Bouncer`] and the module documentation for its settings). Blocks until it accepts
    /// connections (at most 30 s).
    pub fn pgbouncer(&self, mode: PoolMode) -> Result<Bouncer, Error> {
        let binary = find_pgbouncer()?;
        let run_as = run_as()?;
        let dir = TempDir::create(run_as)?;
        let config_path = dir.path.join("pgbouncer.ini");
        let log_path = dir.path.join("pgbouncer.log");
        let (server, user) = self.bouncer_server_connstr();
        let mut attempt = 0;
        loop {
            attempt += 1;
            let port = free_port()?;
            fs::write(&config_path, config(&server, port, mode))
                .map_err(io_err(format!("cannot write {}", config_path.display())))?;
            if let Some(RunAs { uid, gid }) = run_as {
                std::os::unix::fs::chown(&config_path, Some(uid), Some(gid)).map_err(io_err(
                    format!("cannot chown {} to postgres", config_path.display()),
                ))?;
            }
            let (log, log_err) = log_files(&log_path)?;
            let mut cmd = Command::new(&binary);
            cmd.arg(&config_path)
                .current_dir(&dir.path)
                .stdin(Stdio::null())
                .stdout(log)
                .stderr(log_err);
            // Own process group, like the postmaster: a signal to the test's group must not reach
            // it; the watchdog stops it.
            std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
            server_env(&mut cmd, run_as);
            let mut process = cmd
                .spawn()
                .map_err(io_err(format!("cannot run {}", binary.display())))?;
            let mut watchdog = match Watchdog::spawn(process.id(), &config_path, &dir.path, "TERM")
            {
                Ok(watchdog) => watchdog,
                Err(e) => {
                    stop(&mut process);
                    return Err(e);
                }
            };
            match wait_listening(&mut process, port, &log_path) {
                Ok(()) => {
                    let path = dir.path.clone();
                    dir.keep();
                    return Ok(Bouncer {
                        port,
                        user,
                        mode,
                        dir: path,
                        process,
                        watchdog,
                    });
                }
                Err(failure) => {
                    watchdog.disarm();
                    stop(&mut process);
                    let log = fs::read_to_string(&log_path).unwrap_or_default();
                    // Someone took the port between our probe and pgbouncer's bind: retry.
                    if attempt < 5 && port_taken(&log) {
                        continue;
                    }
                    return Err(Error::Start {
                        message: format!(
                            "pgbouncer ({}) did not start: {failure}",
                            binary.display()
                        ),
                        log,
                    });
                }
            }
        }
    }

    /// The `[databases]` connection string of the fallback entry, and the user clients name.
    fn bouncer_server_connstr(&self) -> (String, String) {
        let mut pairs = Vec::new();
        let user = match &self.kind {
            Kind::Owned(server) => {
                pairs.push(("host", "127.0.0.1".to_owned()));
                pairs.push(("port", server.port.to_string()));
                "postgres".to_owned()
            }
            Kind::External { maintenance, .. } => {
                if let Some(host) = maintenance.get_hosts().first() {
                    pairs.push((
                        "host",
                        match host {
                            Host::Tcp(h) => h.clone(),
                            Host::Unix(p) => p.display().to_string(),
                        },
                    ));
                }
                pairs.push(("port", self.port.to_string()));
                if let Some(password) = maintenance.get_password() {
                    pairs.push(("password", String::from_utf8_lossy(password).into_owned()));
                }
                maintenance.get_user().unwrap_or("postgres").to_owned()
            }
        };
        pairs.push(("user", user.clone()));
        let connstr = pairs
            .iter()
            .map(|(key, value)| format!("{key}={}", connstr_value(value)))
            .collect::<Vec<_>>()
            .join(" ");
        (connstr, user)
    }
}

impl Bouncer {
    /// The URL of database `dbname` through this PgBouncer:
    /// `postgres://USER@127.0.0.1:PORT/dbname`.
    pub fn url(&self, dbname: &str) -> String {
        format!(
            "postgres://{}@127.0.0.1:{}/{}",
            percent_encode(&self.user),
            self.port,
            percent_encode(dbname)
        )
    }

    /// The same database as `db`, reached through this PgBouncer (for [`TestDb::client`],
    /// [`TestDb::pool`], ...).
    pub fn through(&self, db: &TestDb) -> TestDb {
        TestDb {
            name: db.name.clone(),
            url: self.url(&db.name),
        }
    }

    /// Its TCP port (on `127.0.0.1`).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Its pool mode.
    pub fn mode(&self) -> PoolMode {
        self.mode
    }

    /// The pid of the `pgbouncer` process.
    pub fn pid(&self) -> u32 {
        self.process.id()
    }

    /// Its directory (`pgbouncer.ini`, `pgbouncer.log`).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Its log so far (for assertion messages).
    pub fn log(&self) -> String {
        fs::read_to_string(self.dir.join("pgbouncer.log")).unwrap_or_default()
    }
}

impl Drop for Bouncer {
    fn drop(&mut self) {
        self.watchdog.disarm();
        stop(&mut self.process);
        let _ = fs::remove_dir_all(&self.dir);
    }
}

/// `SIGTERM` (immediate shutdown in the PgBouncer of Debian 12), then `SIGKILL` after 2 s.
fn stop(process: &mut Child) {
    stop_child_with(process, libc::SIGTERM, Duration::from_secs(2));
}

fn config(server: &str, port: u16, mode: PoolMode) -> String {
    format!(
        "\
; Written by pgratchet-harness for a test; removed when the test process ends.
[databases]
* = {server}

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = {port}
unix_socket_dir =
auth_type = any
pool_mode = {mode}
max_client_conn = 500
default_pool_size = 10
min_pool_size = 0
reserve_pool_size = 0
ignore_startup_parameters = extra_float_digits,options
server_login_retry = 1
query_wait_timeout = 120
log_connections = 0
log_disconnections = 0
log_pooler_errors = 1
stats_period = 600
"
    )
}

/// A value of a PgBouncer connection string: bare when simple, else single-quoted with quotes
/// doubled.
fn connstr_value(value: &str) -> String {
    if !value.is_empty()
        && value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | '/' | ':'))
    {
        value.to_owned()
    } else {
        format!("'{}'", value.replace('\'', "''"))
    }
}

fn port_taken(log: &str) -> bool {
    log.contains("Address already in use") || log.contains("bind(")
}

/// Waits until pgbouncer accepts TCP connections on `port` (and still runs).
fn wait_listening(process: &mut Child, port: u16, log: &Path) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(30);
    let address = SocketAddr::from(([127, 0, 0, 1], port));
    loop {
        match process.try_wait() {
            Ok(Some(status)) => return Err(format!("it exited ({status})")),
            Ok(None) => {}
            Err(e) => return Err(format!("cannot wait for it: {e}")),
        }
        // The log line is the sign that *our* process bound the port; a bare connect could
        // reach someone else who took it.
        let listening = fs::read_to_string(log)
            .map(|text| text.contains("listening on"))
            .unwrap_or(false);
        if listening && TcpStream::connect_timeout(&address, Duration::from_millis(200)).is_ok() {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err("it did not accept connections within 30 s".to_owned());
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// The `pgbouncer` binary: `PGRATCHET_HARNESS_PGBOUNCER`, else the first on `PATH` or in the usual
/// system directories.
fn find_pgbouncer() -> Result<PathBuf, Error> {
    let on_path = std::env::var_os("PATH")
        .map(|path| std::env::split_paths(&path).collect::<Vec<_>>())
        .unwrap_or_default();
    let fixed = ["/usr/sbin", "/usr/bin", "/usr/local/sbin", "/usr/local/bin"].map(PathBuf::from);
    locate(
        std::env::var_os("PGRATCHET_HARNESS_PGBOUNCER").filter(|p| !p.is_empty()),
        on_path.into_iter().chain(fixed),
    )
}

fn locate(
    explicit: Option<std::ffi::OsString>,
    dirs: impl IntoIterator<Item = PathBuf>,
) -> Result<PathBuf, Error> {
    if let Some(path) = explicit {
        let path = PathBuf::from(path);
        return if path.is_file() {
            Ok(path)
        } else {
            Err(Error::NoPgBouncer(format!(
                "PGRATCHET_HARNESS_PGBOUNCER names {}, which is not a file: install pgbouncer \
                 (`apt-get install pgbouncer`) or fix the variable",
                path.display()
            )))
        };
    }
    dirs.into_iter()
        .map(|dir| dir.join("pgbouncer"))
        .find(|path| path.is_file())
        .ok_or_else(|| {
            Error::NoPgBouncer(
                "pgbouncer not found on PATH nor in /usr/sbin, /usr/bin, /usr/local/sbin, \
                 /usr/local/bin: install it (`apt-get install pgbouncer`; `.ci/setup` does) or \
                 set PGRATCHET_HARNESS_PGBOUNCER to its path"
                    .to_owned(),
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connstr_values_are_quoted_when_needed() {
        assert_eq!(connstr_value("127.0.0.1"), "127.0.0.1");
        assert_eq!(connstr_value("/var/run/postgresql"), "/var/run/postgresql");
        assert_eq!(connstr_value("a b"), "'a b'");
        assert_eq!(connstr_value("it's"), "'it''s'");
        assert_eq!(connstr_value(""), "''");
    }

    #[test]
    fn a_missing_binary_says_how_to_install_it() {
        let empty = std::env::temp_dir().join(format!(
            "pgratchet-harness-no-bouncer-{}",
            std::process::id()
        ));
        let error = locate(None, [empty.clone()]).unwrap_err();
        assert!(matches!(error, Error::NoPgBouncer(_)), "{error:?}");
        assert!(
            error.to_string().contains("apt-get install pgbouncer"),
            "{error}"
        );
        let error = locate(Some(empty.join("pgbouncer").into_os_string()), []).unwrap_err();
        assert!(
            error.to_string().contains("apt-get install pgbouncer"),
            "{error}"
        );
    }

    #[test]
    fn config_has_the_settings_tests_rely_on() {
        let text = config(
            "host=127.0.0.1 port=5 user=postgres",
            7,
            PoolMode::Transaction,
        );
        for line in [
            "* = host=127.0.0.1 port=5 user=postgres",
            "listen_port = 7",
            "pool_mode = transaction",
            "auth_type = any",
            "ignore_startup_parameters = extra_float_digits,options",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "{line:?} missing in:\n{text}"
            );
        }
    }
}
