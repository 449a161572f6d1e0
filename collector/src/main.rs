//! `collector`: a BMP route collector in the style of pybmpmon, and the example of a service that
//! ships its schema. At startup it applies the migrations embedded from `migrations/`, then
//! stores route updates in batches.
//!
//! ```text
//! collector                  store a built-in sample feed, print one JSON status line, exit
//! collector --listen ADDR    accept newline-delimited JSON route updates over TCP until SIGINT/SIGTERM
//! collector migrate status   the migrations' status in the database of DATABASE_URL
//! ```
//!
//! `DATABASE_URL` names the database. When it is unset the collector starts a throwaway
//! PostgreSQL (from the machine's server binaries) and removes it when it exits.

mod feed;
mod listen;
mod store;

use std::io::{IsTerminal, Write};
use std::process::ExitCode;
use std::time::SystemTime;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use pgratchet::{Migrator, Report, State, Status};
use pgratchet_harness::Cluster;
use serde::Serialize;
use tokio_postgres::NoTls;
use tracing_subscriber::EnvFilter;

/// The schema, embedded at build time; `build.rs` rebuilds when a file is added.
static MIGRATIONS: pgratchet::Migrations = pgratchet::embed_migrations!("../migrations");

const USAGE: &str = "usage: collector [--listen ADDR] | collector migrate status";
const POOL_SIZE: usize = 4;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The server the collector stores into.
enum Server {
    /// `DATABASE_URL`.
    Url(String),
    /// Started by the collector, stopped and removed when it exits.
    Throwaway(Box<Cluster>),
}

/// What this run does.
enum Job {
    /// Store the built-in sample feed, print the status line, exit.
    Sample,
    /// Accept feeds on this address until told to stop.
    Listen(String),
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_env_filter(EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .init();

    let args: Vec<String> = std::env::args().skip(1).collect();
    let job = match args.iter().map(String::as_str).collect::<Vec<_>>()[..] {
        [] => Job::Sample,
        ["--listen", address] => Job::Listen(address.to_owned()),
        ["migrate", ..] => {
            return match tokio::runtime::Runtime::new() {
                Ok(runtime) => {
                    runtime.block_on(pgratchet::cli::run(Migrator::new(&MIGRATIONS), args))
                }
                Err(error) => {
                    tracing::error!(%error, "cannot start the async runtime");
                    ExitCode::FAILURE
                }
            }
        }
        ["-h" | "--help"] => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        _ => {
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        }
    };

    let server = match std::env::var("DATABASE_URL") {
        Ok(url) if !url.trim().is_empty() => Server::Url(url),
        _ => {
            match start_throwaway_server() {
                Ok(cluster) => Server::Throwaway(Box::new(cluster)),
                Err(error) => {
                    tracing::error!("DATABASE_URL is unset and no throwaway PostgreSQL could be started: {error}");
                    return ExitCode::FAILURE;
                }
            }
        }
    };
    let result = tokio::runtime::Runtime::new()
        .map_err(BoxError::from)
        .and_then(|runtime| {
            runtime.block_on(async {
                let url = match &server {
                    Server::Url(url) => url.clone(),
                    Server::Throwaway(cluster) => create_collector_database(cluster).await?,
                };
                run(job, &url).await
            })
        });
    if let Server::Throwaway(cluster) = server {
        drop(cluster);
        tracing::info!("stopped the throwaway PostgreSQL and removed its files");
    }
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!("{}", with_causes(&*error));
            ExitCode::FAILURE
        }
    }
}

/// `error: its cause: that one's cause ...`, leaving out a cause its error already shows.
fn with_causes(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text = format!("{text}: {cause_text}");
        }
        source = cause.source();
    }
    text
}

fn start_throwaway_server() -> Result<Cluster, pgratchet_harness::Error> {
    tracing::info!("DATABASE_URL is unset: starting a throwaway PostgreSQL");
    let cluster = Cluster::start()?;
    tracing::info!(
        port = cluster.port(),
        dir = %cluster.dir().map(|dir| dir.display().to_string()).unwrap_or_default(),
        postmaster_pid = cluster.postmaster_pid().unwrap_or_default(),
        "started a throwaway PostgreSQL; it and its data are removed when the collector exits \
         (set DATABASE_URL to keep the data)"
    );
    Ok(cluster)
}

/// Creates the database `collector` on the throwaway server; returns its URL.
async fn create_collector_database(cluster: &Cluster) -> Result<String, BoxError> {
    let (client, connection) = tokio_postgres::connect(&cluster.url("postgres"), NoTls).await?;
    let connection = tokio::spawn(connection);
    client.batch_execute("CREATE DATABASE collector").await?;
    drop(client);
    connection.await??;
    Ok(cluster.url("collector"))
}

/// Applies the migrations, does the job, prints the status line.
async fn run(job: Job, url: &str) -> Result<(), BoxError> {
    let pool = pool(url)?;
    let report = MIGRATIONS.run(&pool).await?;
    log_report(&report);

    let rows_stored = match job {
        Job::Sample => {
            let updates = feed::sample(SystemTime::now());
            let rows = store::store_all(&pool, &updates).await?;
            tracing::info!(rows, "stored the sample feed");
            rows
        }
        Job::Listen(address) => {
            let shutdown = listen::Shutdown::register()?;
            let listener = tokio::net::TcpListener::bind(&address)
                .await
                .map_err(|e| format!("cannot listen on {address}: {e}"))?;
            let listening = listener.local_addr()?;
            tracing::info!(%listening, "listening for newline-delimited JSON route updates");
            print_line(&serde_json::json!({ "listening": listening.to_string() }))?;
            let rows = listen::run(&pool, listener, shutdown).await;
            tracing::info!(rows, "stopped listening");
            rows
        }
    };

    let status = Migrator::new(&MIGRATIONS).status(&pool).await?;
    let route_updates_total: i64 = pool
        .get()
        .await?
        .query_one("SELECT count(*) FROM route_updates", &[])
        .await?
        .get(0);
    print_line(&StatusLine {
        migrations: MigrationsLine {
            applied: report
                .applied
                .iter()
                .map(|applied| applied.version)
                .collect(),
            elapsed_ms: report.elapsed_ms,
            status: status.iter().map(StatusEntry::from).collect(),
        },
        rows_stored,
        route_updates_total,
    })?;
    Ok(())
}

fn pool(url: &str) -> Result<Pool, BoxError> {
    let mut config: tokio_postgres::Config = url
        .parse()
        .map_err(|e| format!("DATABASE_URL is not a valid PostgreSQL URL: {e}"))?;
    if config.get_application_name().is_none() {
        config.application_name("collector");
    }
    let manager = Manager::from_config(
        config,
        NoTls,
        ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        },
    );
    Ok(Pool::builder(manager).max_size(POOL_SIZE).build()?)
}

fn log_report(report: &Report) {
    if report.applied.is_empty() {
        tracing::info!(elapsed_ms = report.elapsed_ms, "schema is up to date");
    } else {
        let versions: Vec<i64> = report
            .applied
            .iter()
            .map(|applied| applied.version)
            .collect();
        tracing::info!(
            ?versions,
            elapsed_ms = report.elapsed_ms,
            "applied {} migration(s)",
            versions.len()
        );
    }
    if !report.applied_by_others.is_empty() {
        tracing::info!(versions = ?report.applied_by_others, "applied by another instance meanwhile");
    }
}

/// The line printed on stdout at the end of a run.
#[derive(Serialize)]
struct StatusLine<'a> {
    migrations: MigrationsLine<'a>,
    rows_stored: u64,
    route_updates_total: i64,
}

#[derive(Serialize)]
struct MigrationsLine<'a> {
    /// The versions this run applied.
    applied: Vec<i64>,
    elapsed_ms: u64,
    status: Vec<StatusEntry<'a>>,
}

#[derive(Serialize)]
struct StatusEntry<'a> {
    version: i64,
    name: &'a str,
    state: State,
}

impl<'a> From<&'a Status> for StatusEntry<'a> {
    fn from(status: &'a Status) -> Self {
        StatusEntry {
            version: status.version,
            name: &status.name,
            state: status.state,
        }
    }
}

/// Prints one JSON line on stdout, flushed at once (stdout may be a pipe).
fn print_line(value: &impl Serialize) -> Result<(), BoxError> {
    let mut stdout = std::io::stdout().lock();
    serde_json::to_writer(&mut stdout, value)?;
    stdout.write_all(b"\n")?;
    stdout.flush()?;
    Ok(())
}
