//! A postmaster this process starts: `initdb`, the server on a free port, and its stop.

use std::fs;
use std::io;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::error::{io_err, Error};
use crate::os::{
    find_bin_dir, free_port, log_files, passwd_home, remove_stale_kept, run_as, RunAs, TempDir,
    Watchdog,
};

/// A postmaster started by this process, with its watchdog.
#[derive(Debug)]
pub(crate) struct Server {
    pub(crate) bin_dir: PathBuf,
    pub(crate) dir: PathBuf,
    pub(crate) port: u16,
    pub(crate) postmaster: Child,
    watchdog: Watchdog,
}

impl Server {
    pub(crate) fn start(settings: &[(&str, &str)]) -> Result<Server, Error> {
        remove_stale_kept();
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

        let timeout = std::env::var("PGRATCHET_HARNESS_START_TIMEOUT")
            .ok()
            .and_then(|s| s.trim().parse::<u64>().ok())
            .map_or(Duration::from_secs(60), Duration::from_secs);
        let log_path = dir.path.join("postgres.log");
        let mut attempt = 0;
        loop {
            attempt += 1;
            let port = free_port()?;
            let (log, log_err) = log_files(&log_path)?;
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
                                 (set PGRATCHET_HARNESS_START_TIMEOUT to wait longer)"
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
pub(crate) fn stop_child(child: &mut Child) {
    stop_child_with(child, libc::SIGQUIT, Duration::from_secs(5));
}

/// Stops a child we spawned that leads its own process group, if it still runs: `signal`, then
/// SIGKILL of its process group after `grace`.
pub(crate) fn stop_child_with(child: &mut Child, signal: libc::c_int, grace: Duration) {
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
pub(crate) fn server_env(cmd: &mut Command, run_as: Option<RunAs>) {
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
