//! Throwaway PostgreSQL for tests: the server side of `pgratchet-test` (which most users want
//! instead: a migrated database per test from one attribute), of `pgratchet`'s own tests, and of
//! its collector example.
//!
//! # Model
//!
//! * A [`Cluster`] is a running PostgreSQL server. [`Cluster::shared`] is the one per test
//!   process: started lazily on first use (thread-safe), shared by every test of the test
//!   binary, never stopped explicitly (see *Cleanup*). [`Cluster::start`] starts a new private
//!   cluster that is stopped when the value is dropped (used by the collector example).
//! * Every test gets its own fresh database: [`test_db`] / [`Cluster::create_database`] run
//!   `CREATE DATABASE` with a unique name built from the test's label, the process id and a
//!   counter; [`Cluster::create_database_from`] copies a template; [`Cluster::drop_database`]
//!   drops one. A private cluster is deleted as a whole.
//! * [`Cluster::keep`] keeps a throwaway cluster when the process ends (after a failed test):
//!   shut down cleanly, its directory left, and [`Kept::instructions`] say how to start it and
//!   look; a later run removes kept clusters older than a day that are not running.
//!
//! # Server binaries
//!
//! `initdb` and `postgres` are taken from `pg_config --bindir`, or else from the highest
//! `/usr/lib/postgresql/*/bin`. When neither has them the error says to install the
//! PostgreSQL server binaries (`apt-get install postgresql`). [`Cluster::bin_dir`] exposes that
//! directory, where `psql`, `pg_dump`, ... live too.
//!
//! The cluster is `initdb`-ed into a fresh directory under `/dev/shm` when it is writable with
//! 2 GiB free (a template copy there takes tens of milliseconds, against up to seconds on a
//! virtual disk still writing back the last one), else under [`std::env::temp_dir`]
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
//! * `PGRATCHET_HARNESS_TMPDIR`: where throwaway clusters go instead.
//! * `PGRATCHET_HARNESS_START_TIMEOUT`: seconds to wait for the server to accept connections
//!   (default 60).
//! * `PGRATCHET_HARNESS_PGBOUNCER`: the `pgbouncer` binary (default: found on `PATH` or in `/usr/sbin`,
//!   `/usr/bin`, `/usr/local/sbin`, `/usr/local/bin`).
//!
//! # PgBouncer
//!
//! [`Cluster::pgbouncer`] starts a throwaway PgBouncer in front of a cluster (see [`Bouncer`]),
//! stopped on drop and by the same kind of watchdog when the process ends.

#![warn(missing_docs)]

mod bouncer;
mod cluster;
mod error;
mod kept;
mod names;
mod os;
mod server;

pub use bouncer::{Bouncer, PoolMode};
pub use cluster::{test_db, Cluster, TestDb};
pub use error::Error;
pub use kept::Kept;
pub use names::{quote_ident, redact};

#[cfg(not(unix))]
compile_error!(
    "pgratchet-harness starts PostgreSQL with unix process APIs and does not build on this \
     platform; on Windows, run the tests in WSL"
);
