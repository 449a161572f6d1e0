//! The `pgratchet` command line, for a directory (the `pgratchet` binary) or for the migrations a
//! service binary embeds ([`run`]). Commands, flags and exit codes are those of CONTRACT.md:
//! 0 ok, 1 error, 2 usage, 3 pending migrations (`status --check`), 4 validation failed,
//! 5 lock wait timed out, 6 a migration's SQL failed.

mod args;
mod connect;
mod failure;
#[cfg(feature = "lint")]
mod lint;
mod new;
mod render;

use std::ffi::OsString;
use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use clap::Parser;
use serde::Serialize;

use crate::{Error, HookPoint, Migrations, Migrator, Repair, Rollback, State};
use args::{Cli, Command};
use failure::{Failure, EXIT_INVALID, EXIT_PENDING};

/// Runs the CLI on the migrations a service embeds, e.g. for `collector migrate status`:
/// `args` as from [`std::env::args_os`], the first being the program name. The `migrator`'s
/// settings (schema, table, ...) are the defaults; flags override them. `new` writes files to
/// `--dir` (default `migrations`), as the `pgratchet` binary does; the other commands refuse `--dir`.
///
/// ```no_run
/// static MIGRATIONS: pgratchet::Migrations = pgratchet::embed_migrations!("migrations");
///
/// # async fn example() {
/// let args = std::env::args_os().skip(1); // `collector migrate status` -> `pgratchet status`
/// let code = pgratchet::cli::run(pgratchet::Migrator::new(&MIGRATIONS), args).await;
/// # let _ = code;
/// # }
/// ```
pub async fn run<I, T>(migrator: Migrator<'_>, args: I) -> ExitCode
where
    I: IntoIterator<Item = T>,
    T: Into<OsString>,
{
    let args: Vec<OsString> = args.into_iter().map(Into::into).collect();
    run_args(migrator, args).await
}

/// The CLI behind [`run`], boxed and not generic, so it is compiled once here rather than in
/// every service binary that embeds it.
#[inline(never)]
fn run_args(migrator: Migrator<'_>, args: Vec<OsString>) -> crate::BoxFuture<'_, ExitCode> {
    Box::pin(run_parsed(migrator, args))
}

async fn run_parsed(migrator: Migrator<'_>, args: Vec<OsString>) -> ExitCode {
    let cli = match Cli::try_parse_from(args) {
        Ok(cli) => cli,
        Err(error) => return failure::usage(error),
    };
    let json = cli.global.json;
    if let Command::New { .. } = &cli.command {
        let dir = cli
            .global
            .dir
            .clone()
            .unwrap_or_else(|| PathBuf::from("migrations"));
        return new_migration(&dir, &cli.command, json);
    }
    if cli.global.dir.is_some() {
        return failure::report(
            json,
            Failure::Usage(
                "this binary embeds its migrations; --dir is only for `new` (or use the pgratchet CLI on a directory)"
                    .to_owned(),
            ),
        );
    }
    if let Command::Lint { format } = cli.command {
        return review(migrator.migrations(), None, format, json);
    }
    match execute(migrator, cli).await {
        Ok(code) => code,
        Err(failure) => failure::report(json, failure),
    }
}

/// The `pgratchet` binary: the CLI on a directory read at run time (default `migrations`).
#[doc(hidden)]
pub fn main_for_directory() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(error) => return failure::usage(error),
    };
    let json = cli.global.json;
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            return failure::report(json, Failure::Other(format!("cannot start: {error}")));
        }
    };
    runtime.block_on(async {
        let dir = cli
            .global
            .dir
            .clone()
            .unwrap_or_else(|| PathBuf::from("migrations"));
        if let Command::New { .. } = &cli.command {
            return new_migration(&dir, &cli.command, json);
        }
        let migrations = match Migrations::from_dir(&dir) {
            Ok(migrations) => migrations,
            Err(error) => return failure::report(json, Failure::Runtime(error)),
        };
        if let Command::Lint { format } = cli.command {
            return review(&migrations, Some(&dir), format, json);
        }
        match execute(Migrator::new(&migrations), cli).await {
            Ok(code) => code,
            Err(failure) => failure::report(json, failure),
        }
    })
}

/// `lint`: reviews `migrations` (read from `dir`, or embedded when `dir` is `None`).
fn review(
    migrations: &Migrations,
    dir: Option<&std::path::Path>,
    format: args::Format,
    json: bool,
) -> ExitCode {
    if json && format != args::Format::Text {
        return failure::report(
            json,
            Failure::Usage("--json and --format github exclude each other".to_owned()),
        );
    }
    #[cfg(feature = "lint")]
    let result = lint::run(migrations, dir, format, json);
    #[cfg(not(feature = "lint"))]
    let result = {
        let _ = (migrations, dir, format);
        Err(Failure::Usage(
            "this binary was built without the `lint` feature: install the CLI with \
             `cargo install pgratchet --features cli,lint` (or enable `pgratchet/lint`)"
                .to_owned(),
        ))
    };
    result.unwrap_or_else(|failure| failure::report(json, failure))
}

/// `new`: creates the next migration file(s) in `dir`, for the binary and for [`run`] alike.
fn new_migration(dir: &std::path::Path, command: &Command, json: bool) -> ExitCode {
    let Command::New {
        name,
        reversible,
        style,
        timestamp,
    } = command
    else {
        unreachable!("only called for `new`")
    };
    match new::create(dir, name, *reversible, *style, *timestamp) {
        Ok(paths) => print_created(json, &paths),
        Err(message) => failure::report(json, Failure::Other(message)),
    }
}

fn print<T: Serialize>(json: bool, value: &T, human: impl FnOnce() -> String) {
    if json {
        match serde_json::to_string(value) {
            Ok(text) => println!("{text}"),
            Err(error) => eprintln!("error: cannot write JSON: {error}"),
        }
    } else {
        print!("{}", human());
    }
}

fn print_created(json: bool, paths: &[PathBuf]) -> ExitCode {
    print(json, &serde_json::json!({ "created": paths }), || {
        paths
            .iter()
            .map(|path| format!("created {}\n", path.display()))
            .collect()
    });
    ExitCode::SUCCESS
}

/// Asks on a terminal; elsewhere a destructive command needs `--yes`.
fn confirm(yes: bool, question: &str) -> Result<(), Failure> {
    if yes {
        return Ok(());
    }
    if !std::io::stdin().is_terminal() {
        return Err(Failure::Usage(format!(
            "{question}: pass --yes to confirm (standard input is not a terminal)"
        )));
    }
    eprint!("{question}? [y/N] ");
    let _ = std::io::stderr().flush();
    let mut answer = String::new();
    let _ = std::io::stdin().read_line(&mut answer);
    if matches!(answer.trim(), "y" | "Y" | "yes") {
        Ok(())
    } else {
        Err(Failure::Other("cancelled".to_owned()))
    }
}

fn log_to_stderr() {
    // A service that calls `cli::run` may have its own subscriber; then it keeps it.
    let _ = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_target(false)
        .without_time()
        .with_ansi(std::io::stderr().is_terminal())
        .try_init();
}

/// On a terminal, a line saying which migration runs and for how long, refreshed each second;
/// nothing when stderr is not a terminal.
fn with_progress<'a>(migrator: Migrator<'a>, json: bool) -> Migrator<'a> {
    if json || !std::io::stderr().is_terminal() {
        return migrator;
    }
    let current: Arc<Mutex<Option<(i64, String, Instant)>>> = Arc::default();
    let ticker = Arc::clone(&current);
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(std::time::Duration::from_secs(1)).await;
            let line = ticker.lock().ok().and_then(|current| {
                current.as_ref().map(|(version, name, started)| {
                    format!(
                        "applying {version} {name} ({}s)",
                        started.elapsed().as_secs()
                    )
                })
            });
            if let Some(line) = line {
                eprint!("\r\x1b[K{line}");
            }
        }
    });
    let before = Arc::clone(&current);
    let after = current;
    migrator
        .hook(HookPoint::BeforeEach, move |context| {
            if let (Ok(mut current), Some((version, name))) = (before.lock(), context.migration) {
                *current = Some((version, name, Instant::now()));
            }
            async { Ok(()) }
        })
        .hook(HookPoint::AfterEach, move |_| {
            if let Ok(mut current) = after.lock() {
                if current
                    .take()
                    .is_some_and(|(_, _, started)| started.elapsed().as_secs() >= 1)
                {
                    eprint!("\r\x1b[K");
                }
            }
            async { Ok(()) }
        })
}

async fn execute(mut migrator: Migrator<'_>, cli: Cli) -> Result<ExitCode, Failure> {
    let global = cli.global;
    let json = global.json;
    if let Some(schema) = global.schema {
        migrator = migrator.schema(schema);
    }
    if let Some(table) = global.table {
        migrator = migrator.table(table);
    }
    if global.transaction_pooler {
        migrator = migrator.transaction_pooler(true);
    }
    let url = global.database_url.ok_or_else(|| {
        Failure::Usage("no database: pass --database-url URL or set DATABASE_URL".to_owned())
    })?;
    let target = connect::parse(&url).map_err(Failure::Usage)?;
    let pool = connect::pool(&target).map_err(Failure::Other)?;
    log_to_stderr();
    match cli.command {
        Command::Status { check } => {
            let statuses = migrator.status(&pool).await?;
            print(json, &serde_json::json!({ "migrations": statuses }), || {
                render::statuses(&statuses)
            });
            if check {
                let validation = migrator.validate(&pool).await?;
                if !validation.is_ok() {
                    return Ok(ExitCode::from(EXIT_INVALID));
                }
                if statuses.iter().any(|status| status.state == State::Pending) {
                    return Ok(ExitCode::from(EXIT_PENDING));
                }
            }
        }
        Command::Up {
            target,
            dry_run,
            sql,
            grouped,
            before_run,
        } => {
            if let Some(target) = target {
                migrator = migrator.target(target);
            }
            migrator = migrator.grouped(grouped);
            if dry_run {
                let plan = migrator.plan(&pool).await?;
                print(json, &serde_json::json!({ "plan": plan }), || {
                    render::plan(&plan)
                });
                return Ok(ExitCode::SUCCESS);
            }
            if sql {
                let script = migrator.script(&pool).await?;
                if json {
                    println!("{}", serde_json::json!({ "sql": script }));
                } else {
                    print!("{script}");
                }
                return Ok(ExitCode::SUCCESS);
            }
            if let Some(command) = before_run {
                migrator = migrator.hook(HookPoint::BeforeRun, move |context| {
                    let command = command.clone();
                    let url = url.clone();
                    async move { run_shell(&command, &url, &context.pending).await }
                });
            }
            let report = with_progress(migrator, json).run(&pool).await?;
            print(json, &report, || render::report(&report));
        }
        Command::Down {
            target,
            steps,
            all,
            dry_run,
            yes,
        } => {
            let how = match (target, steps, all) {
                (Some(target), _, _) => Rollback::To(target),
                (None, Some(steps), _) => Rollback::Steps(steps),
                (None, None, true) => Rollback::All,
                (None, None, false) => {
                    return Err(Failure::Usage(
                        "pass --target V, --steps N or --all".to_owned(),
                    ))
                }
            };
            let chosen = rollback_plan(&migrator, &pool, how).await?;
            if dry_run || chosen.is_empty() {
                print(
                    json,
                    &serde_json::json!({ "would_roll_back": chosen }),
                    || render::statuses(&chosen),
                );
                return Ok(ExitCode::SUCCESS);
            }
            confirm(yes, &describe_rollback(&chosen))?;
            let report = migrator.down(&pool, how).await?;
            print(json, &report, || render::report(&report));
        }
        Command::To { version, yes } => {
            let chosen = rollback_plan(&migrator, &pool, Rollback::To(version)).await?;
            if !chosen.is_empty() {
                confirm(yes, &describe_rollback(&chosen))?;
            }
            let report = with_progress(migrator.clone(), json)
                .to(&pool, version)
                .await?;
            print(json, &report, || render::report(&report));
        }
        Command::Baseline { version } => {
            let recorded = migrator.baseline(&pool, version).await?;
            print(json, &serde_json::json!({ "baselined": recorded }), || {
                format!(
                    "recorded {} migration(s) up to version {version} as applied without running them\n",
                    recorded.len()
                )
            });
        }
        Command::Repair { versions, all, yes } => {
            let scope = if all {
                Repair::All
            } else {
                Repair::Versions(versions)
            };
            let statuses = migrator.status(&pool).await?;
            let affected: Vec<_> = statuses
                .into_iter()
                .filter(|status| scope.covers(status))
                .collect();
            if !affected.is_empty() {
                if !json {
                    eprint!("{}", render::statuses(&affected));
                }
                confirm(
                    yes,
                    &format!(
                        "repair {} record(s): clear failed/running ones (the migration becomes pending again) and re-stamp edited checksums",
                        affected.len()
                    ),
                )?;
            }
            let repaired = migrator.repair(&pool, &scope).await?;
            print(json, &repaired, || render::repaired(&repaired));
        }
        Command::Validate => {
            let validation = migrator.validate(&pool).await?;
            print(json, &validation, || render::issues(&validation.issues));
            if !validation.is_ok() {
                return Ok(ExitCode::from(EXIT_INVALID));
            }
        }
        Command::History => {
            let events = migrator.history(&pool).await?;
            print(json, &serde_json::json!({ "events": events }), || {
                render::events(&events)
            });
        }
        Command::Redo => {
            let redo = redo_on_scratch(&migrator, &target).await?;
            print(json, &redo, || render::redo(&redo));
            if !redo.is_ok() {
                return Ok(ExitCode::from(EXIT_INVALID));
            }
        }
        Command::New { .. } | Command::Lint { .. } => {
            unreachable!("`new` and `lint` are handled before connecting")
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// What a rollback would revert, newest first (the library's own choice).
async fn rollback_plan(
    migrator: &Migrator<'_>,
    pool: &deadpool_postgres::Pool,
    how: Rollback,
) -> Result<Vec<crate::Status>, Failure> {
    Ok(how.plan(&migrator.status(pool).await?))
}

fn describe_rollback(chosen: &[crate::Status]) -> String {
    let names: Vec<String> = chosen
        .iter()
        .map(|status| format!("{} {}", status.version, status.name))
        .collect();
    format!(
        "roll back {} migration(s): {}",
        chosen.len(),
        names.join(", ")
    )
}

/// `--before-run CMD`: a shell command that must succeed before anything is applied.
async fn run_shell(command: &str, url: &str, pending: &[i64]) -> Result<(), crate::HookError> {
    let pending: Vec<String> = pending.iter().map(i64::to_string).collect();
    let status = tokio::process::Command::new("sh")
        .arg("-c")
        .arg(command)
        .env("PGRATCHET_DATABASE_URL", url)
        .env("PGRATCHET_PENDING", pending.join(","))
        .status()
        .await?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("`{command}` exited with {status}").into())
    }
}

/// Redo needs a database it may wreck: a scratch one next to the target, dropped afterwards.
async fn redo_on_scratch(
    migrator: &Migrator<'_>,
    target: &connect::Target,
) -> Result<crate::Redo, Failure> {
    let admin = connect::pool(target).map_err(Failure::Other)?;
    let scratch = format!("pgratchet_redo_{}", std::process::id());
    let client = admin
        .get()
        .await
        .map_err(|error| Failure::Runtime(Error::Pool(error)))?;
    client
        .batch_execute(&format!("CREATE DATABASE \"{scratch}\""))
        .await
        .map_err(|error| {
            Failure::Other(format!(
                "cannot create the scratch database {scratch}: {error}"
            ))
        })?;
    let mut scratch_target = connect::Target {
        config: target.config.clone(),
        ssl_mode: target.ssl_mode,
        root_cert: target.root_cert.clone(),
    };
    scratch_target.config.dbname(&scratch);
    let result = match connect::pool(&scratch_target) {
        Ok(pool) => {
            let redo = migrator.redo(&pool).await;
            pool.close();
            redo.map_err(Failure::Runtime)
        }
        Err(message) => Err(Failure::Other(message)),
    };
    if let Err(error) = client
        .batch_execute(&format!(
            "DROP DATABASE IF EXISTS \"{scratch}\" WITH (FORCE)"
        ))
        .await
    {
        eprintln!("warning: could not drop the scratch database {scratch}: {error}");
    }
    result
}
