//! The collector binary end to end, against real PostgreSQL: fresh databases from
//! pgratchet-harness where the collector's own startup must apply the schema, migrated ones from
//! the test kit (`pgratchet-test`) where the schema is the starting point.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, ChildStdout, Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use pgratchet_harness::TestDb;
use serde_json::{json, Value};

/// The schema the collector embeds, embedded here too, so the tests know its versions.
static MIGRATIONS: pgratchet::Migrations = pgratchet::embed_migrations!("../migrations");

/// The size of the collector's built-in sample feed.
const SAMPLE_SIZE: i64 = 500;

fn all_versions() -> Vec<i64> {
    MIGRATIONS.iter().map(|m| m.version()).collect()
}

fn collector() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_collector"));
    command.env("RUST_LOG", "info").stdin(Stdio::null());
    command
}

fn collector_on(db: &TestDb) -> Command {
    let mut command = collector();
    command.env("DATABASE_URL", &db.url);
    command
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn fresh_db(label: &str) -> TestDb {
    runtime().block_on(pgratchet_harness::test_db(label))
}

/// Runs `sql` on `db`; the rows as JSON values, one array per row (via `row_to_json`).
fn query(db: &TestDb, sql: &str) -> Vec<Value> {
    runtime().block_on(async {
        let client = db.client().await;
        let wrapped = format!("SELECT row_to_json(q)::text FROM ({sql}) AS q");
        client
            .query(&wrapped, &[])
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"))
            .iter()
            .map(|row| serde_json::from_str(row.get::<_, &str>(0)).unwrap())
            .collect()
    })
}

fn count(db: &TestDb, sql: &str) -> i64 {
    query(db, &format!("SELECT count(*) AS n FROM ({sql}) AS counted"))[0]["n"]
        .as_i64()
        .unwrap()
}

/// The one JSON line a finished run printed on stdout.
fn status_line(output: &Output) -> Value {
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "collector failed ({}):\n{stderr}",
        output.status
    );
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 1, "stdout: {stdout}\nstderr: {stderr}");
    serde_json::from_str(lines[0]).unwrap_or_else(|e| panic!("{e}: {}", lines[0]))
}

fn assert_all_applied(line: &Value) {
    let status = line["migrations"]["status"].as_array().unwrap();
    let versions: Vec<i64> = status
        .iter()
        .map(|s| s["version"].as_i64().unwrap())
        .collect();
    assert_eq!(versions, all_versions(), "{line}");
    assert!(status.iter().all(|s| s["state"] == "applied"), "{line}");
    assert!(status.iter().all(|s| s["name"].is_string()), "{line}");
}

fn assert_history_complete(db: &TestDb) {
    let history = query(
        db,
        "SELECT version, state FROM schema_migrations ORDER BY version",
    );
    let expected: Vec<Value> = all_versions()
        .into_iter()
        .map(|version| json!({"version": version, "state": "applied"}))
        .collect();
    assert_eq!(history, expected);
}

#[test]
fn applies_the_schema_and_stores_the_sample_feed() {
    let db = fresh_db("collector_sample");
    let line = status_line(&collector_on(&db).output().unwrap());

    assert_eq!(
        line["migrations"]["applied"],
        json!(all_versions()),
        "{line}"
    );
    assert_all_applied(&line);
    assert_eq!(line["rows_stored"], SAMPLE_SIZE, "{line}");
    assert_eq!(line["route_updates_total"], SAMPLE_SIZE, "{line}");

    assert_history_complete(&db);
    assert_eq!(count(&db, "SELECT * FROM route_updates"), SAMPLE_SIZE);
    let families = query(
        &db,
        "SELECT family, count(*) AS n, count(*) FILTER (WHERE is_withdrawn) AS withdrawn, \
         count(*) FILTER (WHERE origin_as = as_path[array_upper(as_path, 1)]) AS with_origin, \
         count(*) FILTER (WHERE '65000:100' = ANY (communities) OR '65000:200' = ANY (communities) \
             OR '65000:300' = ANY (communities)) AS with_community, \
         count(*) FILTER (WHERE med IS NOT NULL) AS with_med \
         FROM route_updates GROUP BY family ORDER BY family",
    );
    assert_eq!(families.len(), 2, "{families:?}");
    for family in &families {
        let n = family["n"].as_i64().unwrap();
        let withdrawn = family["withdrawn"].as_i64().unwrap();
        assert!(withdrawn > 0, "{family}");
        assert_eq!(family["with_origin"], n - withdrawn, "{family}");
        assert_eq!(family["with_community"], n - withdrawn, "{family}");
        assert!(family["with_med"].as_i64().unwrap() > 0, "{family}");
    }
    assert_eq!(count(&db, "SELECT * FROM routers"), 2);
    assert_eq!(count(&db, "SELECT * FROM bmp_peers WHERE state = 'up'"), 4);
    assert_eq!(
        count(
            &db,
            "SELECT * FROM pg_index WHERE indexrelid = 'route_updates_prefix_idx'::regclass AND indisvalid"
        ),
        1
    );

    // A second start finds the schema up to date and adds another feed.
    let again = status_line(&collector_on(&db).output().unwrap());
    assert_eq!(again["migrations"]["applied"], json!([]), "{again}");
    assert_all_applied(&again);
    assert_eq!(again["route_updates_total"], 2 * SAMPLE_SIZE, "{again}");
}

#[test]
fn three_collectors_started_at_once_share_one_fresh_database() {
    let db = fresh_db("collector_three");
    let children: Vec<Child> = (0..3)
        .map(|_| {
            collector_on(&db)
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let waiters: Vec<_> = children
        .into_iter()
        .map(|child| std::thread::spawn(move || child.wait_with_output().unwrap()))
        .collect();
    let lines: Vec<Value> = waiters
        .into_iter()
        .map(|waiter| status_line(&waiter.join().unwrap()))
        .collect();

    // Each migration was applied by exactly one of them.
    let mut applied: Vec<i64> = lines
        .iter()
        .flat_map(|line| line["migrations"]["applied"].as_array().unwrap().clone())
        .map(|version| version.as_i64().unwrap())
        .collect();
    applied.sort_unstable();
    assert_eq!(applied, all_versions(), "{lines:?}");
    for line in &lines {
        assert_all_applied(line);
        assert_eq!(line["rows_stored"], SAMPLE_SIZE, "{line}");
    }
    assert_history_complete(&db);
    assert_eq!(count(&db, "SELECT * FROM route_updates"), 3 * SAMPLE_SIZE);
    assert_eq!(count(&db, "SELECT * FROM bmp_peers"), 4);
}

/// A collector child whose stderr is collected in the background (shown when a test fails).
struct Running {
    child: Child,
    stdout: BufReader<ChildStdout>,
    stderr: Arc<Mutex<String>>,
}

impl Running {
    fn spawn(mut command: Command) -> Running {
        let mut child = command
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stdout = BufReader::new(child.stdout.take().unwrap());
        let mut pipe = child.stderr.take().unwrap();
        let stderr = Arc::new(Mutex::new(String::new()));
        let sink = Arc::clone(&stderr);
        std::thread::spawn(move || {
            let mut buffer = [0; 4096];
            while let Ok(n @ 1..) = pipe.read(&mut buffer) {
                sink.lock()
                    .unwrap()
                    .push_str(&String::from_utf8_lossy(&buffer[..n]));
            }
        });
        Running {
            child,
            stdout,
            stderr,
        }
    }

    fn stdout_line(&mut self) -> Value {
        let mut line = String::new();
        self.stdout.read_line(&mut line).unwrap();
        serde_json::from_str(&line).unwrap_or_else(|e| {
            panic!(
                "{e}: stdout line {line:?}; stderr:\n{}",
                self.stderr.lock().unwrap()
            )
        })
    }

    fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn wait_until(what: &str, timeout: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A database with the collector's schema already applied (a copy of the kit's template).
fn migrated_db() -> (pgratchet_test::TestDatabase, TestDb) {
    let migrated = runtime()
        .block_on(pgratchet_test::TestDatabase::new(&MIGRATIONS))
        .expect("a migrated database");
    let db = TestDb {
        name: migrated.name().to_owned(),
        url: migrated.url().to_owned(),
    };
    (migrated, db)
}

#[test]
fn listen_stores_valid_lines_and_answers_bad_ones() {
    // Dropped at the end of the test (kept if it fails).
    let (_migrated, db) = migrated_db();
    let mut command = collector_on(&db);
    command.args(["--listen", "127.0.0.1:0"]);
    let mut collector = Running::spawn(command);
    let listening = collector.stdout_line();
    let address = listening["listening"].as_str().unwrap().to_owned();

    let mut feed = TcpStream::connect(&address).unwrap();
    feed.set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    feed.write_all(
        concat!(
            r#"{"time":1700000000.25,"router":"192.0.2.1","peer_address":"192.0.2.11","peer_as":64500,"prefix":"203.0.113.0/24","next_hop":"192.0.2.11","as_path":[64500,3356,13335],"communities":["65000:100"],"med":5}"#,
            "\n",
            r#"{"peer_address":"192.0.2.11","peer_as":64500,"prefix":"not a prefix","next_hop":"192.0.2.11"}"#,
            "\n",
            r#"{"peer_address":"2001:db8::11","peer_as":64500,"prefix":"2001:db8:100::/40","withdrawn":true}"#,
            "\n",
        )
        .as_bytes(),
    )
    .unwrap();
    let mut answer = String::new();
    BufReader::new(&feed).read_line(&mut answer).unwrap();
    assert!(
        answer.starts_with("error: line 2: prefix `not a prefix`"),
        "{answer:?}"
    );

    wait_until("2 stored rows", Duration::from_secs(30), || {
        count(&db, "SELECT * FROM route_updates") == 2
    });
    let rows = query(
        &db,
        "SELECT host(router_address) AS router, family, prefix::text, origin_as, med, \
         is_withdrawn, extract(epoch FROM time)::float8 AS time \
         FROM route_updates ORDER BY family",
    );
    assert_eq!(
        rows[0],
        json!({"router": "192.0.2.1", "family": "ipv4", "prefix": "203.0.113.0/24",
               "origin_as": 13335, "med": 5, "is_withdrawn": false, "time": 1700000000.25})
    );
    // No `router` in the line: the address the feed connected from.
    assert_eq!(rows[1]["router"], "127.0.0.1");
    assert_eq!(rows[1]["is_withdrawn"], true);
    assert!(collector.stderr().contains("rejected a route update"));

    // SIGTERM: it stops, reports, exits 0.
    drop(feed);
    let pid = collector.child.id().to_string();
    assert!(Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());
    let done = collector.stdout_line();
    assert_eq!(done["rows_stored"], 2, "{done}");
    assert_eq!(done["route_updates_total"], 2, "{done}");
    assert_all_applied(&done);
    let status = collector.child.wait().unwrap();
    assert!(status.success(), "{status}: {}", collector.stderr());
}

/// A `key=value` field of the collector's log.
fn log_field<'a>(log: &'a str, key: &str) -> &'a str {
    let start = log
        .find(&format!(" {key}="))
        .unwrap_or_else(|| panic!("no {key}= in the log:\n{log}"))
        + key.len()
        + 2;
    log[start..].split_whitespace().next().unwrap()
}

#[test]
fn without_database_url_it_runs_on_a_throwaway_server_and_removes_it() {
    let output = collector().env_remove("DATABASE_URL").output().unwrap();
    let line = status_line(&output);
    assert_eq!(
        line["migrations"]["applied"],
        json!(all_versions()),
        "{line}"
    );
    assert_eq!(line["rows_stored"], SAMPLE_SIZE, "{line}");

    let log = String::from_utf8_lossy(&output.stderr);
    assert!(log.contains("throwaway"), "{log}");
    let dir = log_field(&log, "dir");
    assert!(dir.contains("pgratchet-harness"), "{log}");
    assert!(!Path::new(dir).exists(), "{dir} is still there");
    // No process of that cluster is left: the postmaster names the directory on its command
    // line, and every server process works in the data directory.
    let postmaster = log_field(&log, "postmaster_pid");
    assert!(postmaster.parse::<u32>().is_ok(), "{log}");
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
        let cwd = std::fs::read_link(entry.path().join("cwd")).unwrap_or_default();
        assert!(
            !String::from_utf8_lossy(&cmdline).contains(dir) && !cwd.starts_with(dir),
            "process {:?} still runs on {dir} (postmaster was {postmaster})",
            entry.file_name()
        );
    }
}

#[test]
fn collector_migrate_is_the_embedded_cli() {
    let db = fresh_db("collector_cli");
    let pending = collector_on(&db)
        .args(["migrate", "status", "--check"])
        .output()
        .expect("run collector migrate");
    assert_eq!(pending.status.code(), Some(3), "{pending:?}");
    let up = collector_on(&db)
        .args(["migrate", "up", "--json"])
        .output()
        .expect("run collector migrate up");
    assert!(up.status.success(), "{up:?}");
    let report: Value = serde_json::from_slice(&up.stdout).expect("a JSON report");
    let applied: Vec<i64> = report["applied"]
        .as_array()
        .expect("applied")
        .iter()
        .map(|applied| applied["version"].as_i64().expect("version"))
        .collect();
    assert_eq!(applied, all_versions());
    let status = collector_on(&db)
        .args(["migrate", "status", "--json"])
        .output()
        .expect("run collector migrate status");
    assert!(status.status.success(), "{status:?}");
    let status: Value = serde_json::from_slice(&status.stdout).expect("JSON status");
    let states: Vec<&str> = status["migrations"]
        .as_array()
        .expect("migrations")
        .iter()
        .map(|migration| migration["state"].as_str().expect("state"))
        .collect();
    assert_eq!(states, vec!["applied"; all_versions().len()]);
    // The embedded set is the only source: a directory is refused.
    let refused = collector_on(&db)
        .args(["migrate", "--dir", "migrations", "status"])
        .output()
        .expect("run collector migrate --dir");
    assert_eq!(refused.status.code(), Some(2), "{refused:?}");
}

/// The schema itself: what the feed's rows look like to a query, and what it refuses.
#[pgratchet_test::test(migrations = MIGRATIONS, fixtures("two_updates"))]
async fn the_schema_keeps_families_and_prefixes_consistent(client: tokio_postgres::Client) {
    let families: Vec<String> = client
        .query("SELECT family FROM route_updates ORDER BY time", &[])
        .await
        .expect("query")
        .iter()
        .map(|row| row.get(0))
        .collect();
    assert_eq!(families, ["ipv4", "ipv6"]);
    let refused = client
        .execute(
            "INSERT INTO route_updates (time, router_address, peer_address, peer_as, family, prefix) \
             VALUES (now(), '192.0.2.1', '192.0.2.11', 64500, 'ipv6', '203.0.113.0/24')",
            &[],
        )
        .await
        .expect_err("an IPv4 prefix labelled ipv6");
    assert_eq!(
        refused.as_db_error().and_then(|error| error.constraint()),
        Some("route_updates_family_matches_prefix")
    );
}
