//! The operating system's side: who runs the server (root cannot), where its files go, which
//! port is free, and the watchdog that stops a server when the process that started it ends,
//! however it ends.

use std::fs;
use std::io;
use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::error::{io_err, Error};
use crate::names::salt;

/// The user to run server processes as (when this process is root).
#[derive(Clone, Copy, Debug)]
pub(crate) struct RunAs {
    pub(crate) uid: u32,
    pub(crate) gid: u32,
}

// ---------------------------------------------------------------------------------------------
// Watchdog
// ---------------------------------------------------------------------------------------------

/// The watchdog's script: `$1` pid of the process to stop (the postmaster, or a pgbouncer),
/// `$2` an argument on its command line that identifies it (the data directory, the
/// configuration file), `$3` directory to delete, `$4` the signal that stops it quickly
/// (`QUIT`: immediate shutdown of a postmaster; `TERM` for pgbouncer). It waits for end-of-file
/// on its stdin (the test process ending), then stops the process if it is still ours and
/// deletes the directory. When the directory holds a file `keep` ([`KEEP_MARKER`]), the server
/// is shut down cleanly instead (`INT`: fast shutdown, so `pg_ctl start` needs no recovery) and
/// the directory stays.
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
keep=
signal=$4
tries=20
if [ -e "$3/keep" ]; then keep=1; signal=INT; tries=300; fi
if ours "$1" "$2"; then
    kill -s "$signal" "$1" 2>/dev/null
    i=0
    while [ "$i" -lt "$tries" ] && ours "$1" "$2"; do sleep 0.1; i=$((i + 1)); done
    if ours "$1" "$2"; then kill -s KILL -- "-$1" 2>/dev/null; kill -s KILL "$1" 2>/dev/null; fi
fi
[ -n "$keep" ] || rm -rf -- "$3"
"#;

/// The file whose presence in a server's directory makes the watchdog keep it.
pub(crate) const KEEP_MARKER: &str = "keep";

/// How long a kept cluster stays before a later run removes it (unless its server runs).
const KEPT_FOR: std::time::Duration = std::time::Duration::from_secs(24 * 60 * 60);

/// Removes the clusters earlier runs kept (after a failed test) that are older than a day and
/// whose server is not running: someone looking at one has started it.
pub(crate) fn remove_stale_kept() {
    let entries = [server_parent(), std::env::temp_dir()]
        .into_iter()
        .filter_map(|dir| fs::read_dir(dir).ok())
        .flatten();
    for entry in entries.flatten() {
        let dir = entry.path();
        let is_ours = entry
            .file_name()
            .to_str()
            .is_some_and(|name| name.starts_with(DIR_PREFIX));
        let marker = dir.join(KEEP_MARKER);
        let old = fs::metadata(&marker)
            .and_then(|meta| meta.modified())
            .ok()
            .and_then(|modified| modified.elapsed().ok())
            .is_some_and(|age| age > KEPT_FOR);
        if is_ours && old && !dir.join("data").join("postmaster.pid").exists() {
            let _ = fs::remove_dir_all(&dir);
        }
    }
}

#[derive(Debug)]
pub(crate) struct Watchdog {
    child: Option<Child>,
    /// The writing end of the watchdog's stdin; closed by the kernel when this process ends.
    _pipe: Option<ChildStdin>,
}

impl Watchdog {
    /// Watches process `pid`, identified by `arg` on its command line; see [`WATCHDOG_SCRIPT`].
    pub(crate) fn spawn(pid: u32, arg: &Path, dir: &Path, signal: &str) -> Result<Watchdog, Error> {
        let mut child = Command::new("sh")
            .arg("-c")
            .arg(WATCHDOG_SCRIPT)
            .arg("pgratchet-harness-watchdog")
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
            .map_err(io_err("cannot spawn the pgratchet-harness watchdog (sh)"))?;
        let pipe = child.stdin.take();
        Ok(Watchdog {
            child: Some(child),
            _pipe: pipe,
        })
    }

    /// Kills the watchdog without letting it act (the owner cleans up itself).
    pub(crate) fn disarm(&mut self) {
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

/// A server's log file, opened for appending, twice: for its standard output and its standard
/// error.
pub(crate) fn log_files(path: &Path) -> Result<(fs::File, fs::File), Error> {
    let log = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(io_err(format!("cannot open {}", path.display())))?;
    let log_err = log
        .try_clone()
        .map_err(io_err("cannot duplicate log file handle"))?;
    Ok((log, log_err))
}

/// How the directories of our servers start.
const DIR_PREFIX: &str = "pgratchet-harness-";

/// Where a throwaway server's directory goes: `$PGRATCHET_HARNESS_TMPDIR` when set; else
/// `/dev/shm` when it is a writable tmpfs with at least [`SHM_AT_LEAST`] free, because a server
/// with fsync off on memory copies a template database 10-20x faster than on a virtual disk that
/// is still writing back what the last test wrote; else the temporary directory.
fn server_parent() -> PathBuf {
    if let Some(dir) = std::env::var_os("PGRATCHET_HARNESS_TMPDIR").filter(|dir| !dir.is_empty()) {
        return PathBuf::from(dir);
    }
    let shm = Path::new("/dev/shm");
    if free_bytes(shm).is_some_and(|free| free >= SHM_AT_LEAST) {
        return shm.to_path_buf();
    }
    std::env::temp_dir()
}

/// Free space `/dev/shm` needs to be used: clusters, templates and the tests' copies (Docker's
/// default `/dev/shm` of 64 MiB is far too small, and is then left alone).
const SHM_AT_LEAST: u64 = 2 << 30;

/// The bytes free to an unprivileged user on the filesystem of `dir`, if it is a writable
/// directory.
fn free_bytes(dir: &Path) -> Option<u64> {
    use std::os::unix::ffi::OsStrExt;
    let path = std::ffi::CString::new(dir.as_os_str().as_bytes()).ok()?;
    // SAFETY: `path` is a valid NUL-terminated string; `access` and `statvfs` only read it, and
    // `statvfs` writes into the zeroed struct we pass.
    unsafe {
        if libc::access(path.as_ptr(), libc::W_OK | libc::X_OK) != 0 {
            return None;
        }
        let mut stat: libc::statvfs = std::mem::zeroed();
        if libc::statvfs(path.as_ptr(), &mut stat) != 0 {
            return None;
        }
        // `fsblkcnt_t` and `c_ulong` are narrower than u64 on 32-bit targets.
        #[allow(clippy::useless_conversion)]
        let free = u64::from(stat.f_bavail).saturating_mul(u64::from(stat.f_frsize));
        Some(free)
    }
}

/// A directory removed on drop unless kept.
pub(crate) struct TempDir {
    pub(crate) path: PathBuf,
    keep: bool,
}

impl TempDir {
    pub(crate) fn create(run_as: Option<RunAs>) -> Result<TempDir, Error> {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let base = server_parent();
        for _ in 0..100 {
            let n = COUNTER.fetch_add(1, Ordering::Relaxed);
            let path = base.join(format!(
                "{DIR_PREFIX}{}-{}-{}",
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

    pub(crate) fn keep(mut self) {
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
pub(crate) fn find_bin_dir() -> Result<PathBuf, Error> {
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
pub(crate) fn run_as() -> Result<Option<RunAs>, Error> {
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

pub(crate) fn passwd_home(user: &str) -> Option<String> {
    let passwd = fs::read_to_string("/etc/passwd").ok()?;
    passwd_entry(&passwd, user).map(|(_, _, home)| home)
}

/// `(uid, gid, home)` of `user` in a passwd file's text.
pub(crate) fn passwd_entry(passwd: &str, user: &str) -> Option<(u32, u32, String)> {
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
pub(crate) fn free_port() -> Result<u16, Error> {
    let listener = TcpListener::bind("127.0.0.1:0").map_err(io_err("cannot bind 127.0.0.1:0"))?;
    let port = listener
        .local_addr()
        .map_err(io_err("cannot read local address"))?
        .port();
    Ok(port)
}

#[cfg(test)]
mod tests {
    use super::*;

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
