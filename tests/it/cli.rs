//! The `pgratchet` command line against a real PostgreSQL: the binary on directories written to
//! temporary folders, and `pgratchet::cli::run` on embedded migrations. Output is pinned with
//! insta snapshots (`tests/it/snapshots/`) with times, durations, the host and the role
//! redacted; review changes with `cargo insta review` or by reading the `.snap.new` files.
//!
//! Every exit code of CONTRACT.md is checked: 0 ok, 1 error, 2 usage, 3 pending, 4 validation
//! failed, 5 lock wait timed out, 6 a migration's SQL failed.

#![cfg(feature = "cli")]

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use pgratchet::{Migration, Migrations, Migrator, Script};
use pgratchet_harness::{test_db, Cluster, TestDb};

/// What one run of the binary did.
#[derive(Debug)]
pub(crate) struct Run {
    pub(crate) code: i32,
    pub(crate) stdout: String,
    pub(crate) stderr: String,
}

/// Runs the `pgratchet` binary with `args`: no `DATABASE_URL` from the environment, standard
/// input not a terminal.
pub(crate) fn pgratchet(args: &[&str]) -> Run {
    let output = Command::new(env!("CARGO_BIN_EXE_pgratchet"))
        .args(args)
        .env_remove("DATABASE_URL")
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .output()
        .expect("the pgratchet binary runs");
    Run {
        code: output.status.code().expect("an exit code, not a signal"),
        stdout: String::from_utf8(output.stdout).expect("UTF-8 stdout"),
        stderr: String::from_utf8(output.stderr).expect("UTF-8 stderr"),
    }
}

/// Runs the binary on `dir` and `db`, with `args` after the global flags.
fn on(dir: &Path, db: &TestDb, args: &[&str]) -> Run {
    let dir = dir.to_str().expect("UTF-8 path");
    let mut all = vec!["--dir", dir, "--database-url", &db.url];
    all.extend_from_slice(args);
    pgratchet(&all)
}

/// Asserts the exit code, showing everything the run printed when it differs.
#[track_caller]
pub(crate) fn expect_code(run: &Run, code: i32) {
    assert_eq!(
        run.code, code,
        "exit code\n--- stdout\n{}\n--- stderr\n{}",
        run.stdout, run.stderr
    );
}

/// A migrations directory under the temporary directory, removed when dropped.
pub(crate) struct Dir(PathBuf);

impl std::ops::Deref for Dir {
    type Target = Path;

    fn deref(&self) -> &Path {
        &self.0
    }
}

impl AsRef<Path> for Dir {
    fn as_ref(&self) -> &Path {
        &self.0
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A fresh migrations directory under the temporary directory holding `files`.
pub(crate) fn migrations_dir(label: &str, files: &[(&str, &str)]) -> Dir {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let dir = std::env::temp_dir().join(format!(
        "pgratchet-cli-{label}-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create the migrations directory");
    for (name, text) in files {
        let path = dir.join(name);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).expect("create a folder");
        }
        std::fs::write(path, text).expect("write a migration");
    }
    Dir(dir)
}

/// Three migrations in three naming styles: a reversible pair, a flat file, and a Flyway-style
/// no-transaction index.
const SHOP: &[(&str, &str)] = &[
    (
        "1_users.up.sql",
        "CREATE TABLE users (id bigint PRIMARY KEY, name text NOT NULL);\n",
    ),
    ("1_users.down.sql", "DROP TABLE users;\n"),
    (
        "2_orders.sql",
        "CREATE TABLE orders (id bigint PRIMARY KEY, user_id bigint NOT NULL REFERENCES users (id));\n",
    ),
    (
        "V3__orders_user_idx.sql",
        "-- migrate:no-transaction\nCREATE INDEX CONCURRENTLY orders_user_idx ON orders (user_id);\n",
    ),
];

/// Escapes regex metacharacters (for host and role names in filters).
fn regex_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if "\\.+*?()|[]{}^$#&-~".contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// Snapshot settings: times, durations, the host and the database role redacted. With
/// `collapse_padding`, runs of spaces are made one double space: the padding of a table column
/// followed by others depends on the width of what was redacted in it (the host, durations).
fn redactions(collapse_padding: bool, role: Option<&str>) -> insta::Settings {
    let mut settings = insta::Settings::clone_current();
    settings.set_prepend_module_to_snapshot(true);
    settings.add_filter(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z", "[time]");
    settings.add_filter(r"\b\d+ ms\b", "[ms]");
    settings.add_filter(r"duration_ms=\d+", "duration_ms=[ms]");
    settings.add_filter(
        r#""(execution_time_ms|duration_ms|elapsed_ms)": \d+"#,
        r#""$1": "[ms]""#,
    );
    if let Ok(host) = std::fs::read_to_string("/proc/sys/kernel/hostname") {
        let host = host.trim();
        if !host.is_empty() {
            settings.add_filter(&format!(r"\b{}\b", regex_escape(host)), "[host]");
        }
    }
    if let Some(role) = role {
        settings.add_filter(&format!(r"\b{}\b", regex_escape(role)), "[role]");
    }
    if collapse_padding {
        settings.add_filter(r"  +", "  ");
    }
    settings
}

/// `--json` output, pretty-printed for a readable snapshot (and checked to be one JSON value).
fn pretty(stdout: &str) -> String {
    let value: serde_json::Value = serde_json::from_str(stdout.trim())
        .unwrap_or_else(|error| panic!("not JSON ({error}): {stdout}"));
    serde_json::to_string_pretty(&value).expect("JSON")
}

fn json(stdout: &str) -> serde_json::Value {
    serde_json::from_str(stdout.trim())
        .unwrap_or_else(|error| panic!("not JSON ({error}): {stdout}"))
}

async fn scalar(db: &TestDb, sql: &str) -> String {
    let client = db.client().await;
    let rows = client.simple_query(sql).await.expect("query");
    rows.iter()
        .find_map(|message| match message {
            tokio_postgres::SimpleQueryMessage::Row(row) => row.get(0).map(str::to_owned),
            _ => None,
        })
        .unwrap_or_else(|| "NULL".to_owned())
}

async fn role(db: &TestDb) -> String {
    scalar(db, "SELECT current_user").await
}

fn psql() -> Option<PathBuf> {
    let path = Cluster::shared().bin_dir()?.join("psql");
    path.exists().then_some(path)
}

// -------------------------------------------------------------------------------------------
// Snapshots
// -------------------------------------------------------------------------------------------

#[tokio::test]
async fn status_dry_run_and_up_snapshots() {
    let db = test_db("cli_status").await;
    let dir = migrations_dir("status", SHOP);
    let settings = redactions(false, None);

    let run = on(&dir, &db, &["status"]);
    expect_code(&run, 0);
    settings.bind(|| insta::assert_snapshot!("status_pending_human", run.stdout));
    let run = on(&dir, &db, &["status", "--json"]);
    expect_code(&run, 0);
    settings.bind(|| insta::assert_snapshot!("status_pending_json", pretty(&run.stdout)));

    let run = on(&dir, &db, &["up", "--dry-run"]);
    expect_code(&run, 0);
    settings.bind(|| insta::assert_snapshot!("up_dry_run_human", run.stdout));
    let run = on(&dir, &db, &["--json", "up", "--dry-run"]);
    expect_code(&run, 0);
    settings.bind(|| insta::assert_snapshot!("up_dry_run_json", pretty(&run.stdout)));
    assert_eq!(
        scalar(&db, "SELECT to_regclass('public.schema_migrations')::text").await,
        "NULL",
        "a dry run writes nothing"
    );

    let run = on(&dir, &db, &["up", "--target", "2"]);
    expect_code(&run, 0);
    settings.bind(|| insta::assert_snapshot!("up_target_human", run.stdout));
    let run = on(&dir, &db, &["status"]);
    expect_code(&run, 0);
    settings.bind(|| insta::assert_snapshot!("status_partly_applied_human", run.stdout));
    let run = on(&dir, &db, &["status", "--json"]);
    expect_code(&run, 0);
    settings.bind(|| insta::assert_snapshot!("status_partly_applied_json", pretty(&run.stdout)));

    let run = on(&dir, &db, &["--json", "up"]);
    expect_code(&run, 0);
    settings.bind(|| insta::assert_snapshot!("up_json", pretty(&run.stdout)));
    let run = on(&dir, &db, &["up"]);
    expect_code(&run, 0);
    assert_eq!(run.stdout, "nothing to apply\n");
}

#[tokio::test]
async fn validate_snapshots() {
    let dir = migrations_dir("validate", SHOP);
    // A database with the set applied, from the test kit (a copy of its template).
    let shop = Migrations::from_dir(&dir).expect("the set loads");
    let migrated = pgratchet_test::TestDatabase::new(&shop)
        .await
        .expect("a migrated database");
    let db = TestDb {
        name: migrated.name().to_owned(),
        url: migrated.url().to_owned(),
    };
    let settings = redactions(false, None);

    // Only warnings (migrations without down SQL): valid, exit 0.
    let run = on(&dir, &db, &["validate"]);
    expect_code(&run, 0);
    settings.bind(|| insta::assert_snapshot!("validate_warnings_human", run.stdout));

    std::fs::write(
        dir.join("2_orders.sql"),
        "-- edited after it was applied\nCREATE TABLE orders (id bigint PRIMARY KEY, user_id bigint NOT NULL REFERENCES users (id));\n",
    )
    .expect("edit");
    let run = on(&dir, &db, &["validate"]);
    expect_code(&run, 4);
    settings.bind(|| insta::assert_snapshot!("validate_modified_human", run.stdout));
    let run = on(&dir, &db, &["validate", "--json"]);
    expect_code(&run, 4);
    redactions(false, None)
        .bind(|| insta::assert_snapshot!("validate_modified_json", pretty(&run.stdout)));
    // The run it would stop says what to do.
    let run = on(&dir, &db, &["up"]);
    expect_code(&run, 4);
    assert!(
        run.stderr
            .contains("migration 2 `orders` was edited after it was applied"),
        "{}",
        run.stderr
    );
}

#[tokio::test]
async fn history_snapshots() {
    let db = test_db("cli_history").await;
    let mut files = SHOP[..3].to_vec();
    files[2] = (
        "2_orders.up.sql",
        "CREATE TABLE orders (id bigint PRIMARY KEY, user_id bigint NOT NULL REFERENCES users (id));\n",
    );
    files.push(("2_orders.down.sql", "DROP TABLE orders;\n"));
    files.push((
        "3_check.up.sql",
        "-- migrate:no-transaction\nSELECT 1 / 0;\n",
    ));
    files.push(("3_check.down.sql", "SELECT 1;\n"));
    let dir = migrations_dir("history", &files);

    let run = on(&dir, &db, &["history"]);
    expect_code(&run, 0);
    assert_eq!(run.stdout, "no events recorded\n");

    expect_code(&on(&dir, &db, &["up"]), 6);
    std::fs::write(
        dir.join("3_check.up.sql"),
        "-- migrate:no-transaction\nSELECT 1;\n",
    )
    .expect("fix");
    let run = on(&dir, &db, &["repair", "--version", "3", "--yes"]);
    expect_code(&run, 0);
    assert!(
        run.stdout
            .starts_with("cleared failed record of 3 check (SQLSTATE 22012: division by zero)"),
        "{}",
        run.stdout
    );
    expect_code(&on(&dir, &db, &["up"]), 0);
    expect_code(&on(&dir, &db, &["down", "--target", "1", "--yes"]), 0);

    let role = role(&db).await;
    let run = on(&dir, &db, &["history"]);
    expect_code(&run, 0);
    redactions(true, Some(&role)).bind(|| insta::assert_snapshot!("history_human", run.stdout));
    let run = on(&dir, &db, &["history", "--json"]);
    expect_code(&run, 0);
    redactions(false, Some(&role))
        .bind(|| insta::assert_snapshot!("history_json", pretty(&run.stdout)));
}

#[tokio::test]
async fn error_snapshots_for_a_failing_migration() {
    let db = test_db("cli_error").await;
    let dir = migrations_dir(
        "error",
        &[
            ("1_a.sql", "CREATE TABLE a (id int);\n"),
            (
                "2_broken.sql",
                "CREATE TABLE b (id int);\nINSERT INTO b\n  SELECT id FROM missing_table;\n",
            ),
        ],
    );
    let run = on(&dir, &db, &["up"]);
    expect_code(&run, 6);
    assert!(run.stderr.contains("SQLSTATE 42P01"), "{}", run.stderr);
    assert!(run.stderr.contains("2_broken.sql line 3"), "{}", run.stderr);
    assert_eq!(
        run.stderr.matches("error: ").count(),
        1,
        "printed once: {}",
        run.stderr
    );
    redactions(false, None).bind(|| insta::assert_snapshot!("error_migration_human", run.stderr));

    let run = on(&dir, &db, &["--json", "up"]);
    expect_code(&run, 6);
    let value = json(&run.stdout);
    assert_eq!(value["error"]["code"], "42P01");
    redactions(false, None)
        .bind(|| insta::assert_snapshot!("error_migration_json", pretty(&run.stdout)));
    assert_eq!(
        scalar(&db, "SELECT to_regclass('public.b')::text").await,
        "NULL"
    );
}

/// A bad file in `--dir` is the macro's error, word for word (tests/ui/bad_name_space.stderr).
#[test]
fn bad_filename_is_the_macros_message() {
    let dir = migrations_dir(
        "bad_name",
        &[("1_add users.sql", "CREATE TABLE users (id int);\n")],
    );
    let macro_error = include_str!("../ui/bad_name_space.stderr")
        .lines()
        .next()
        .expect("a first line")
        .strip_prefix("error: ")
        .expect("an error line");
    let dir_arg = dir.to_str().expect("UTF-8");
    let run = pgratchet(&["--dir", dir_arg, "status"]);
    expect_code(&run, 4);
    assert!(
        run.stderr.contains(macro_error),
        "{}\nshould contain\n{macro_error}",
        run.stderr
    );
    redactions(false, None)
        .bind(|| insta::assert_snapshot!("error_bad_filename_human", run.stderr));
    let run = pgratchet(&["--dir", dir_arg, "--json", "status"]);
    expect_code(&run, 4);
    redactions(false, None)
        .bind(|| insta::assert_snapshot!("error_bad_filename_json", pretty(&run.stdout)));
}

// -------------------------------------------------------------------------------------------
// Exit codes
// -------------------------------------------------------------------------------------------

#[tokio::test]
async fn every_exit_code_of_the_binary() {
    let db = test_db("cli_exit_codes").await;
    let dir = migrations_dir("exit_codes", SHOP);
    let dir_arg = dir.to_str().expect("UTF-8");

    // 0
    expect_code(&on(&dir, &db, &["status"]), 0);

    // 1: nothing listens on the port.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("address")
        .port();
    let unreachable = format!("postgres://postgres@127.0.0.1:{port}/nope");
    let run = pgratchet(&["--dir", dir_arg, "--database-url", &unreachable, "status"]);
    expect_code(&run, 1);
    assert!(run.stderr.starts_with("error: "), "{}", run.stderr);
    assert!(run.stderr.contains("onnection refused"), "{}", run.stderr);

    // 2: usage errors.
    let run = pgratchet(&["frobnicate"]);
    expect_code(&run, 2);
    expect_code(&pgratchet(&["--dir", dir_arg, "up", "--bogus"]), 2);
    let run = pgratchet(&["--dir", dir_arg, "status"]);
    expect_code(&run, 2);
    assert!(run.stderr.contains("DATABASE_URL"), "{}", run.stderr);
    expect_code(&on(&dir, &db, &["down"]), 2);

    // 3: pending migrations with status --check; 0 once applied.
    expect_code(&on(&dir, &db, &["status", "--check"]), 3);
    expect_code(&on(&dir, &db, &["up", "--target", "1"]), 0);
    expect_code(&on(&dir, &db, &["status", "--check"]), 3);
    expect_code(&on(&dir, &db, &["up"]), 0);
    expect_code(&on(&dir, &db, &["status", "--check"]), 0);

    // 1: `to` a version that does not exist (a typo must not mean "everything").
    let run = on(&dir, &db, &["to", "99", "--yes"]);
    expect_code(&run, 1);
    assert!(
        run.stderr
            .contains("target version 99 is not one of the known migrations"),
        "{}",
        run.stderr
    );

    // 2: a destructive command without --yes when standard input is not a terminal; nothing
    // is rolled back.
    let run = on(&dir, &db, &["down", "--target", "0"]);
    expect_code(&run, 2);
    assert!(run.stderr.contains("pass --yes"), "{}", run.stderr);
    let run = on(&dir, &db, &["to", "1"]);
    expect_code(&run, 2);
    assert_eq!(
        scalar(&db, "SELECT count(*) FROM schema_migrations").await,
        "3"
    );

    // 4: a file edited after it was applied (validate, status --check and up agree).
    std::fs::write(
        dir.join("1_users.up.sql"),
        "CREATE TABLE users (id bigint PRIMARY KEY, name text NOT NULL); -- edited\n",
    )
    .expect("edit");
    expect_code(&on(&dir, &db, &["validate"]), 4);
    expect_code(&on(&dir, &db, &["status", "--check"]), 4);
    expect_code(&on(&dir, &db, &["up"]), 4);
    // ... and a rollback that reaches a migration without down SQL.
    let db = test_db("cli_exit_codes_irreversible").await;
    let dir = migrations_dir("exit_codes_irreversible", SHOP);
    expect_code(&on(&dir, &db, &["up"]), 0);
    let run = on(&dir, &db, &["down", "--steps", "1", "--yes"]);
    expect_code(&run, 4);
    assert!(run.stderr.contains("has no down SQL"), "{}", run.stderr);

    // 6: a migration's SQL failed.
    let db = test_db("cli_exit_codes_sql").await;
    let dir = migrations_dir("exit_codes_sql", &[("1_bad.sql", "SELECT 1 / 0;\n")]);
    expect_code(&on(&dir, &db, &["up"]), 6);
}

/// 5: the lock wait timed out. The CLI waits 10 minutes by default, so this goes through the
/// embedded entry point with a Migrator whose lock wait is short, while a run holds the lock.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exit_5_when_the_lock_wait_times_out() {
    let db = test_db("cli_lock_wait").await;
    let slow = || {
        Migrations::new(vec![Migration::new(
            1,
            "slow",
            Script::new(
                "1_slow.sql",
                "SELECT pg_sleep(3) AS cli_lock_marker;",
                false,
            ),
            None,
        )])
        .expect("a set")
    };
    let holder = {
        let pool = db.pool(1);
        let migrations = slow();
        tokio::spawn(async move {
            migrations
                .run(&pool)
                .await
                .map(|report| report.applied.len())
        })
    };
    let started = Instant::now();
    loop {
        let active = scalar(
            &db,
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() \
             AND state = 'active' AND strpos(query, 'cli_lock_marker') > 0 AND pid <> pg_backend_pid()",
        )
        .await;
        if active != "0" {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "the holder never ran"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let migrations = slow();
    let started = Instant::now();
    let code = pgratchet::cli::run(
        Migrator::new(&migrations).lock_wait_timeout(Duration::from_millis(500)),
        ["migrate", "up", "--database-url", db.url.as_str()],
    )
    .await;
    assert_eq!(code, ExitCode::from(5));
    assert!(
        started.elapsed() < Duration::from_millis(2500),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(
        holder.await.expect("no panic").expect("the holder applies"),
        1
    );
}

// -------------------------------------------------------------------------------------------
// Commands
// -------------------------------------------------------------------------------------------

/// `new` in each naming style; the files it writes always load.
#[test]
fn new_in_each_naming_style() {
    let dir = migrations_dir("new", &[]);
    let dir_arg = dir.to_str().expect("UTF-8");
    let new = |args: &[&str]| {
        let mut all = vec!["--dir", dir_arg, "new"];
        all.extend_from_slice(args);
        let run = pgratchet(&all);
        expect_code(&run, 0);
        run.stdout
            .lines()
            .map(|line| {
                let path = line.strip_prefix("created ").expect("created <path>");
                let path = Path::new(path)
                    .strip_prefix(&dir)
                    .expect("inside the directory");
                assert!(dir.join(path).is_file(), "{path:?}");
                path.display().to_string()
            })
            .collect::<Vec<_>>()
    };
    assert_eq!(new(&["init"]), ["1_init.sql"]);
    assert_eq!(new(&["users", "--style", "flyway"]), ["V2__users.sql"]);
    assert_eq!(
        new(&["orders", "--reversible"]),
        ["3_orders.up.sql", "3_orders.down.sql"]
    );
    assert_eq!(
        new(&["audit", "--style", "dir", "--reversible"]),
        ["4_audit/up.sql", "4_audit/down.sql"]
    );
    assert_eq!(new(&["more"]), ["5_more/up.sql"], "the newest file's style");
    assert_eq!(new(&["flat", "--style", "flat"]), ["6_flat.sql"]);
    let run = pgratchet(&["--dir", dir_arg, "--json", "new", "last"]);
    expect_code(&run, 0);
    let created = json(&run.stdout)["created"].clone();
    assert_eq!(created.as_array().map(Vec::len), Some(1), "{created}");
    assert!(created[0]
        .as_str()
        .is_some_and(|path| path.ends_with("7_last.sql")));
    let loaded = Migrations::from_dir(&dir).expect("what new writes loads");
    assert_eq!(
        loaded.iter().map(Migration::version).collect::<Vec<_>>(),
        (1..=7).collect::<Vec<_>>()
    );
    let run = pgratchet(&["--dir", dir_arg, "new", "bad name"]);
    expect_code(&run, 1);
    assert!(
        run.stderr.contains("invalid migration name"),
        "{}",
        run.stderr
    );

    // Zero padding is kept.
    let padded = migrations_dir("new_padded", &[("0007_x.sql", "SELECT 1;\n")]);
    let padded_arg = padded.to_str().expect("UTF-8");
    let run = pgratchet(&["--dir", padded_arg, "new", "y"]);
    expect_code(&run, 0);
    assert!(padded.join("0008_y.sql").is_file(), "{}", run.stdout);

    // Timestamps: 14 digits, and the next one follows the style.
    let stamped = migrations_dir("new_stamped", &[]);
    let stamped_arg = stamped.to_str().expect("UTF-8");
    expect_code(
        &pgratchet(&["--dir", stamped_arg, "new", "a", "--timestamp"]),
        0,
    );
    expect_code(&pgratchet(&["--dir", stamped_arg, "new", "b"]), 0);
    let loaded = Migrations::from_dir(&stamped).expect("loads");
    let versions: Vec<i64> = loaded.iter().map(Migration::version).collect();
    assert_eq!(versions.len(), 2);
    assert!(
        versions.iter().all(|v| v.to_string().len() == 14),
        "{versions:?}"
    );
    assert!(versions[0] < versions[1]);
}

static EMBEDDED: Migrations = pgratchet::embed_migrations!("tests/it/fixtures/cli_embedded");

/// A service binary's `collector migrate ...`: the same commands on embedded migrations.
#[tokio::test]
async fn embedded_entry_point() {
    let db = test_db("cli_embedded").await;
    let url = db.url.as_str();
    let cli = |args: Vec<&'static str>| {
        let mut all = vec!["migrate"];
        all.extend(args);
        all.push("--database-url");
        all.push(url);
        pgratchet::cli::run(Migrator::new(&EMBEDDED), all)
    };
    assert_eq!(cli(vec!["status", "--json"]).await, ExitCode::SUCCESS);
    assert_eq!(cli(vec!["status", "--check"]).await, ExitCode::from(3));
    assert_eq!(cli(vec!["up"]).await, ExitCode::SUCCESS);
    assert_eq!(
        scalar(&db, "SELECT to_regclass('public.accounts_email_idx')::text").await,
        "accounts_email_idx"
    );
    assert_eq!(cli(vec!["status", "--check"]).await, ExitCode::SUCCESS);
    assert_eq!(cli(vec!["validate"]).await, ExitCode::SUCCESS);
    assert_eq!(cli(vec!["to", "1", "--yes"]).await, ExitCode::SUCCESS);
    assert_eq!(
        scalar(&db, "SELECT to_regclass('public.accounts_email_idx')::text").await,
        "NULL"
    );
    assert_eq!(cli(vec!["history"]).await, ExitCode::SUCCESS);
    // A usage error: --dir (the migrations are embedded).
    assert_eq!(
        cli(vec!["--dir", "elsewhere", "status"]).await,
        ExitCode::from(2)
    );

    // `new` writes to --dir, as the binary does.
    let dir = migrations_dir("embedded_new", &[]);
    let code = pgratchet::cli::run(
        Migrator::new(&EMBEDDED),
        ["migrate", "new", "x", "--dir", dir.to_str().expect("UTF-8")],
    )
    .await;
    assert_eq!(code, ExitCode::SUCCESS);
    assert!(dir.join("1_x.sql").is_file());
}

/// `up --sql` prints a script that runs cleanly through psql and leaves every migration
/// applied with its checksum.
#[tokio::test]
async fn up_sql_runs_through_psql() {
    let Some(psql) = psql() else {
        eprintln!("skipped: no psql next to the server binaries");
        return;
    };
    let db = test_db("cli_up_sql").await;
    let dir = migrations_dir("up_sql", SHOP);
    let run = on(&dir, &db, &["up", "--sql"]);
    expect_code(&run, 0);
    assert!(run
        .stdout
        .contains("CREATE INDEX CONCURRENTLY orders_user_idx"));
    let run_json = on(&dir, &db, &["--json", "up", "--sql"]);
    expect_code(&run_json, 0);
    assert_eq!(json(&run_json.stdout)["sql"], run.stdout.as_str());
    // Beside the directory: anything in it that is not a migration is an error.
    let file = dir.with_extension("script.sql");
    std::fs::write(&file, &run.stdout).expect("write the script");
    let output = Command::new(psql)
        .args(["-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", &db.url, "-f"])
        .arg(&file)
        .output()
        .expect("psql runs");
    assert!(
        output.status.success(),
        "psql failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    expect_code(&on(&dir, &db, &["status", "--check"]), 0);
    expect_code(&on(&dir, &db, &["validate"]), 0);
    let run = on(&dir, &db, &["--json", "status"]);
    let states: Vec<String> = json(&run.stdout)["migrations"]
        .as_array()
        .expect("migrations")
        .iter()
        .map(|status| status["state"].as_str().expect("state").to_owned())
        .collect();
    assert_eq!(states, ["applied"; 3]);
    let run = on(&dir, &db, &["up"]);
    expect_code(&run, 0);
    assert_eq!(run.stdout, "nothing to apply\n");
    let _ = std::fs::remove_file(file);
}

/// `--before-run CMD`: a failing command stops the run with nothing applied; the command gets
/// the pending versions and the URL in its environment.
#[tokio::test]
async fn before_run_command() {
    let db = test_db("cli_before_run").await;
    let dir = migrations_dir("before_run", SHOP);
    let run = on(&dir, &db, &["up", "--before-run", "exit 1"]);
    assert_ne!(run.code, 0);
    expect_code(&run, 1);
    assert!(run.stderr.contains("BeforeRun"), "{}", run.stderr);
    assert!(
        run.stderr.contains("`exit 1` exited with"),
        "{}",
        run.stderr
    );
    assert_eq!(
        scalar(&db, "SELECT count(*) FROM schema_migrations").await,
        "0"
    );
    assert_eq!(
        scalar(&db, "SELECT to_regclass('public.users')::text").await,
        "NULL"
    );

    let seen = dir.with_extension("seen");
    let command = format!(
        "printf '%s %s' \"$PGRATCHET_PENDING\" \"${{PGRATCHET_DATABASE_URL:+has-url}}\" > '{}'",
        seen.display()
    );
    let run = on(
        &dir,
        &db,
        &["up", "--target", "2", "--before-run", &command],
    );
    expect_code(&run, 0);
    assert_eq!(
        std::fs::read_to_string(&seen).expect("the hook ran"),
        "1,2 has-url"
    );
    let run = on(&dir, &db, &["up", "--before-run", &command]);
    expect_code(&run, 0);
    assert_eq!(
        std::fs::read_to_string(&seen).expect("the hook ran"),
        "3 has-url"
    );
    std::fs::remove_file(&seen).expect("remove");
    // Nothing pending: the command does not run.
    expect_code(&on(&dir, &db, &["up", "--before-run", &command]), 0);
    assert!(!seen.exists());
}

/// `redo` round-trips each migration on a scratch database and exits 4 when a down does not
/// restore the schema; the target database is not touched.
#[tokio::test]
async fn redo_reports_a_down_that_forgets_an_index() {
    let db = test_db("cli_redo").await;
    let dir = migrations_dir(
        "redo",
        &[
            ("1_t.up.sql", "CREATE TABLE t (id int, x int);\n"),
            ("1_t.down.sql", "DROP TABLE t;\n"),
            ("2_t_x_idx.up.sql", "CREATE INDEX t_x_idx ON t (x);\n"),
            ("2_t_x_idx.down.sql", "-- forgot: DROP INDEX t_x_idx;\n"),
        ],
    );
    let run = on(&dir, &db, &["redo"]);
    expect_code(&run, 4);
    redactions(false, None).bind(|| insta::assert_snapshot!("redo_mismatch_human", run.stdout));
    assert_eq!(
        scalar(&db, "SELECT to_regclass('public.t')::text").await,
        "NULL",
        "the target database is untouched"
    );
    std::fs::write(dir.join("2_t_x_idx.down.sql"), "DROP INDEX t_x_idx;\n").expect("fix");
    let run = on(&dir, &db, &["--json", "redo"]);
    expect_code(&run, 0);
    assert_eq!(json(&run.stdout)["restored"], serde_json::json!([1, 2]));
}

/// `sslmode=require` against the harness server (no TLS) fails clearly; `disable` connects.
#[tokio::test]
async fn tls_sslmode_against_a_server_without_tls() {
    let db = test_db("cli_tls").await;
    let dir = migrations_dir("tls", SHOP);
    let dir_arg = dir.to_str().expect("UTF-8");
    let with = |mode: &str| {
        let separator = if db.url.contains('?') { '&' } else { '?' };
        format!("{}{separator}sslmode={mode}", db.url)
    };
    let run = pgratchet(&[
        "--dir",
        dir_arg,
        "--database-url",
        &with("require"),
        "status",
    ]);
    expect_code(&run, 1);
    assert!(
        run.stderr.contains("server does not support TLS"),
        "{}",
        run.stderr
    );
    let lines: Vec<&str> = run.stderr.lines().collect();
    let mut unique = lines.clone();
    unique.dedup();
    assert_eq!(lines, unique, "each cause once");
    assert_eq!(
        run.stderr.matches("TLS handshake").count(),
        1,
        "{}",
        run.stderr
    );
    let run = pgratchet(&[
        "--dir",
        dir_arg,
        "--database-url",
        &with("verify-full"),
        "status",
    ]);
    expect_code(&run, 1);
    let run = pgratchet(&[
        "--dir",
        dir_arg,
        "--database-url",
        &with("disable"),
        "status",
    ]);
    expect_code(&run, 0);
    let run = pgratchet(&[
        "--dir",
        dir_arg,
        "--database-url",
        &with("prefer"),
        "status",
    ]);
    expect_code(&run, 0);
    let run = pgratchet(&[
        "--dir",
        dir_arg,
        "--database-url",
        &with("sometimes"),
        "status",
    ]);
    expect_code(&run, 2);
    assert!(run.stderr.contains("invalid sslmode"), "{}", run.stderr);
}
