//! The reliability suite of issue 6, on the real `pgratchet` binary: processes killed with
//! SIGKILL mid-migration, a lock holder killed, `CREATE INDEX CONCURRENTLY` while others wait,
//! 16 starters at once through a transaction-pooling PgBouncer, and tampered files.
//!
//! Each test gets a fresh database of the shared throwaway cluster (pgratchet-harness) and a
//! migrations directory of its own, and checks the database itself afterwards. Long statements
//! sleep only for a connection whose `application_name` is `slow`: the file (and so its
//! checksum) stays the same for the next run, which connects without that name.

use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::time::{Duration, Instant};

use pgratchet::tokio_postgres::{Client, SimpleQueryMessage};
use pgratchet_harness::{test_db, Cluster, PoolMode, TestDb};
use tokio::process::{Child, Command};

/// Sleeps 30 s for a `slow` connection, not at all otherwise.
const SLOW: &str =
    "SELECT pg_sleep(CASE WHEN current_setting('application_name') = 'slow' THEN 30 ELSE 0 END);";

// ---- helpers ----------------------------------------------------------------------------------

/// A migrations directory, removed on drop.
struct Dir(PathBuf);

impl Dir {
    fn new(label: &str) -> Dir {
        use std::sync::atomic::{AtomicU32, Ordering};
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let path = std::env::temp_dir().join(format!(
            "pgratchet-reliability-{}-{}-{}",
            label.replace(' ', "-"),
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).expect("create the migrations directory");
        Dir(path)
    }

    fn write(&self, file: &str, sql: &str) {
        std::fs::write(self.0.join(file), sql).expect("write a migration");
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// `pgratchet --dir DIR --database-url URL ARGS...`, never reading `DATABASE_URL` or a terminal.
fn pgratchet(dir: &Dir, url: &str, args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_pgratchet"));
    command
        .arg("--dir")
        .arg(dir.path())
        .arg("--database-url")
        .arg(url)
        .args(args)
        .env_remove("DATABASE_URL")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    command
}

/// Runs `pgratchet ...` to the end.
async fn run(dir: &Dir, url: &str, args: &[&str]) -> Output {
    pgratchet(dir, url, args)
        .output()
        .await
        .expect("run the pgratchet binary")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// The output, for assertion messages.
fn show(output: &Output) -> String {
    format!(
        "{}\n--- stdout ---\n{}--- stderr ---\n{}",
        output.status,
        text(&output.stdout),
        text(&output.stderr)
    )
}

fn assert_ok(output: &Output) {
    assert!(output.status.success(), "{}", show(output));
}

/// `url` with `application_name=slow`, so [`SLOW`] sleeps.
fn slow(url: &str) -> String {
    format!("{url}?application_name=slow")
}

/// Starts `count` `pgratchet ... ARGS` processes that wait on their standard input, then releases
/// them all at once (a few microseconds apart): starters of one deploy.
fn start_together(count: usize, dir: &Dir, url: &str, args: &[&str]) -> Vec<std::process::Child> {
    use std::io::Write;
    let mut children = Vec::with_capacity(count);
    for _ in 0..count {
        let child = std::process::Command::new("sh")
            .arg("-c")
            .arg(r#"read -r _ && exec "$0" "$@""#)
            .arg(env!("CARGO_BIN_EXE_pgratchet"))
            .arg("--dir")
            .arg(dir.path())
            .arg("--database-url")
            .arg(url)
            .args(args)
            .env_remove("DATABASE_URL")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn a starter");
        children.push(child);
    }
    let mut gates: Vec<_> = children
        .iter_mut()
        .map(|child| child.stdin.take().expect("stdin"))
        .collect();
    for gate in &mut gates {
        gate.write_all(b"go\n").expect("release a starter");
    }
    children
}

/// Waits for every child's output; kills those still running after `within`.
async fn outputs_within(
    children: Vec<std::process::Child>,
    within: Duration,
) -> Result<Vec<Output>, String> {
    let pids: Vec<u32> = children.iter().map(std::process::Child::id).collect();
    let handles: Vec<_> = children
        .into_iter()
        .map(|child| tokio::task::spawn_blocking(move || child.wait_with_output()))
        .collect();
    let all = async {
        let mut outputs = Vec::with_capacity(handles.len());
        for handle in handles {
            outputs.push(handle.await.expect("task").expect("wait for a starter"));
        }
        outputs
    };
    match tokio::time::timeout(within, all).await {
        Ok(outputs) => Ok(outputs),
        Err(_) => {
            for pid in pids {
                // Our own children, not reaped yet (their waits have not returned).
                let _ = std::process::Command::new("kill")
                    .arg("-9")
                    .arg(pid.to_string())
                    .status();
            }
            Err(format!("not all starters finished within {within:?}"))
        }
    }
}

/// Every row of a query, each column as text (`None` for NULL).
async fn rows(client: &Client, sql: &str) -> Vec<Vec<Option<String>>> {
    client
        .simple_query(sql)
        .await
        .unwrap_or_else(|e| panic!("query failed: {sql}: {e:?}"))
        .iter()
        .filter_map(|message| match message {
            SimpleQueryMessage::Row(row) => Some(
                (0..row.len())
                    .map(|index| row.get(index).map(str::to_owned))
                    .collect(),
            ),
            _ => None,
        })
        .collect()
}

/// The first column of the first row, if any.
async fn value(client: &Client, sql: &str) -> Option<String> {
    rows(client, sql)
        .await
        .into_iter()
        .next()
        .and_then(|row| row.into_iter().next().flatten())
}

async fn number(client: &Client, sql: &str) -> i64 {
    value(client, sql)
        .await
        .unwrap_or_else(|| panic!("no value from {sql}"))
        .parse()
        .unwrap_or_else(|e| panic!("not a number from {sql}: {e}"))
}

async fn exists(client: &Client, relation: &str) -> bool {
    value(
        client,
        &format!("SELECT to_regclass('{relation}') IS NOT NULL"),
    )
    .await
    .as_deref()
        == Some("t")
}

/// `(version, state)` of every history row.
async fn history(client: &Client) -> Vec<(i64, String)> {
    rows(
        client,
        "SELECT version, state FROM schema_migrations ORDER BY version",
    )
    .await
    .into_iter()
    .map(|row| {
        (
            row[0]
                .as_deref()
                .and_then(|v| v.parse().ok())
                .expect("a version"),
            row[1].clone().expect("a state"),
        )
    })
    .collect()
}

fn applied(versions: &[i64]) -> Vec<(i64, String)> {
    versions
        .iter()
        .map(|v| (*v, "applied".to_owned()))
        .collect()
}

/// The history (every column), the audit log and the schema (relations, columns, index
/// validity) as text: equal before and after a refused run means it changed nothing.
async fn snapshot(client: &Client) -> String {
    let parts = [
        "SELECT string_agg(h::text, E'\\n' ORDER BY version) FROM schema_migrations h",
        "SELECT count(*)::text || ' log rows, last ' || coalesce(max(at)::text, '-') FROM schema_migrations_log",
        "SELECT string_agg(c.relkind::text || ' ' || c.relname, E'\\n' ORDER BY c.relname) FROM pg_class c \
         JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = 'public'",
        "SELECT string_agg(table_name || '.' || column_name || ' ' || data_type, E'\\n' \
         ORDER BY table_name, ordinal_position) FROM information_schema.columns WHERE table_schema = 'public'",
        "SELECT string_agg(indexrelid::regclass::text || ' ' || indisvalid::text, E'\\n' ORDER BY 1) FROM pg_index \
         WHERE indrelid IN (SELECT oid FROM pg_class WHERE relnamespace = 'public'::regnamespace)",
    ];
    let mut out = String::new();
    for sql in parts {
        out.push_str(&value(client, sql).await.unwrap_or_default());
        out.push_str("\n--\n");
    }
    out
}

/// Polls until `sql` returns a non-NULL value; panics after `within`.
async fn wait_for(client: &Client, sql: &str, within: Duration) -> String {
    let started = Instant::now();
    loop {
        if let Some(value) = value(client, sql).await {
            return value;
        }
        assert!(
            started.elapsed() < within,
            "nothing from {sql} within {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The backend pid of the `slow` session of this database sleeping in `pg_sleep`.
async fn sleeping_backend(client: &Client) -> i32 {
    wait_for(
        client,
        "SELECT pid FROM pg_stat_activity WHERE datname = current_database() \
         AND application_name = 'slow' AND wait_event = 'PgSleep' LIMIT 1",
        Duration::from_secs(20),
    )
    .await
    .parse()
    .expect("a pid")
}

/// Waits until backend `pid` is gone (the server noticed its client died); returns how long.
async fn backend_gone(client: &Client, pid: i32) -> Duration {
    let started = Instant::now();
    while number(
        client,
        &format!("SELECT count(*) FROM pg_stat_activity WHERE pid = {pid}"),
    )
    .await
        > 0
    {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "backend {pid} still there 20 s after its client was killed"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    started.elapsed()
}

/// Sends SIGKILL to a child and reaps it.
async fn kill_9(child: &mut Child) {
    child.start_kill().expect("SIGKILL");
    let status = child.wait().await.expect("reap");
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(status.signal(), Some(9), "{status}");
}

// ---- SIGKILL mid-migration ----------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_during_a_transactional_migration_leaves_no_trace() {
    let db = test_db("rel sigkill tx").await;
    let client = db.client().await;
    let dir = Dir::new("sigkill-tx");
    dir.write("1_a.sql", "CREATE TABLE a (id int);\n");
    dir.write(
        "2_slow.sql",
        &format!("CREATE TABLE b (id int);\nINSERT INTO a VALUES (2);\n{SLOW}\nCREATE TABLE c (id int);\n"),
    );
    dir.write("3_d.sql", "CREATE TABLE d (id int);\n");

    let mut child = pgratchet(&dir, &slow(&db.url), &["up"])
        .spawn()
        .expect("spawn");
    let pid = sleeping_backend(&client).await;
    // Mid-transaction: migration 1 is committed, nothing of 2 is visible.
    assert_eq!(history(&client).await, applied(&[1]));
    kill_9(&mut child).await;
    let noticed = backend_gone(&client, pid).await;
    // client_connection_check_interval (2 s by default) ends the 30 s sleep early.
    assert!(noticed < Duration::from_secs(10), "{noticed:?}");

    assert_eq!(history(&client).await, applied(&[1]), "no row for 2");
    assert_eq!(
        rows(&client, "SELECT version, action FROM schema_migrations_log").await,
        vec![vec![Some("1".to_owned()), Some("apply".to_owned())]]
    );
    for relation in ["b", "c", "d"] {
        assert!(!exists(&client, relation).await, "{relation} exists");
    }
    assert_eq!(number(&client, "SELECT count(*) FROM a").await, 0);

    let started = Instant::now();
    let output = run(&dir, &db.url, &["up"]).await;
    assert_ok(&output);
    assert!(started.elapsed() < Duration::from_secs(10));
    assert_eq!(history(&client).await, applied(&[1, 2, 3]));
    for relation in ["b", "c", "d"] {
        assert!(exists(&client, relation).await, "{relation} missing");
    }
    assert_eq!(number(&client, "SELECT count(*) FROM a").await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_during_a_no_transaction_migration_leaves_it_running_until_repaired() {
    let db = test_db("rel sigkill nt").await;
    let client = db.client().await;
    let dir = Dir::new("sigkill-nt");
    dir.write("1_a.sql", "CREATE TABLE a (id int);\n");
    dir.write(
        "2_nt.sql",
        &format!("-- migrate:no-transaction\nCREATE TABLE nt_first (id int);\n{SLOW}\nCREATE TABLE nt_last (id int);\n"),
    );
    dir.write("3_after.sql", "CREATE TABLE after3 (id int);\n");

    let mut child = pgratchet(&dir, &slow(&db.url), &["up"])
        .spawn()
        .expect("spawn");
    let pid = sleeping_backend(&client).await;
    kill_9(&mut child).await;
    backend_gone(&client, pid).await;

    // The row committed before the migration started says it never finished; what ran before
    // the sleep stays (there was no transaction to roll back).
    assert_eq!(
        history(&client).await,
        vec![(1, "applied".to_owned()), (2, "running".to_owned())]
    );
    assert!(exists(&client, "nt_first").await);
    assert!(!exists(&client, "nt_last").await);
    assert!(!exists(&client, "after3").await);

    let status = run(&dir, &db.url, &["status"]).await;
    assert_ok(&status);
    assert!(
        text(&status.stdout).contains("running"),
        "{}",
        show(&status)
    );

    let before = snapshot(&client).await;
    let refused = run(&dir, &db.url, &["up"]).await;
    assert_eq!(refused.status.code(), Some(4), "{}", show(&refused));
    let stderr = text(&refused.stderr);
    assert!(
        stderr.contains("migration 2 `nt` is recorded as running")
            && stderr.contains("run repair for version 2"),
        "{stderr}"
    );
    assert_eq!(
        snapshot(&client).await,
        before,
        "a refused run changed nothing"
    );

    // The operator undoes what the migration left behind, then repairs.
    client
        .batch_execute("DROP TABLE nt_first")
        .await
        .expect("clean up");
    let repaired = run(&dir, &db.url, &["repair", "--all", "--yes"]).await;
    assert_ok(&repaired);
    assert_eq!(history(&client).await, applied(&[1]));
    let output = run(&dir, &db.url, &["up"]).await;
    assert_ok(&output);
    assert_eq!(history(&client).await, applied(&[1, 2, 3]));
    for relation in ["nt_first", "nt_last", "after3"] {
        assert!(exists(&client, relation).await, "{relation} missing");
    }
    assert_eq!(
        rows(
            &client,
            "SELECT version, action FROM schema_migrations_log ORDER BY at, ctid"
        )
        .await,
        [(1, "apply"), (2, "repair"), (2, "apply"), (3, "apply")]
            .iter()
            .map(|(v, a)| vec![Some(v.to_string()), Some(a.to_string())])
            .collect::<Vec<_>>()
    );
}

// ---- the lock -----------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_lock_holder_is_named_to_a_waiter_and_does_not_block_the_next_run() {
    let db = test_db("rel lock holder").await;
    let client = db.client().await;
    let dir = Dir::new("lock-holder");
    dir.write("1_a.sql", "CREATE TABLE a (id int);\n");
    dir.write("2_slow.sql", &format!("{SLOW}\nCREATE TABLE b (id int);\n"));
    dir.write("3_c.sql", "CREATE TABLE c (id int);\n");

    let mut holder = pgratchet(&dir, &slow(&db.url), &["up"])
        .spawn()
        .expect("spawn");
    let pid = sleeping_backend(&client).await;

    // A waiter (the library, on the same directory) gives up and names the holder.
    let migrations = pgratchet::Migrations::from_dir(dir.path()).expect("load");
    let started = Instant::now();
    let error = pgratchet::Migrator::new(&migrations)
        .lock_wait_timeout(Duration::from_millis(500))
        .run(&db.pool(1))
        .await
        .expect_err("the waiter times out");
    assert!(started.elapsed() < Duration::from_secs(5));
    let pgratchet::Error::LockTimeout { holder: seen, .. } = &error else {
        panic!("expected Error::LockTimeout, got {error:?}");
    };
    let seen = seen.as_ref().expect("the holder is named");
    assert_eq!(seen.pid, pid);
    assert_eq!(seen.application_name, "slow");
    let message = error.to_string();
    assert!(message.contains(&format!("pid {pid} (slow)")), "{message}");

    // The holder dies; the next run gets the lock as soon as the server notices.
    kill_9(&mut holder).await;
    let started = Instant::now();
    let output = run(&dir, &db.url, &["up"]).await;
    assert_ok(&output);
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "the next run waited {:?}",
        started.elapsed()
    );
    assert_eq!(history(&client).await, applied(&[1, 2, 3]));
    assert!(exists(&client, "b").await && exists(&client, "c").await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_index_concurrently_while_eight_starters_wait_does_not_deadlock() {
    let db = test_db("rel cic waiters").await;
    let client = db.client().await;
    let dir = Dir::new("cic-waiters");
    dir.write(
        "1_t.sql",
        "CREATE TABLE t (id int NOT NULL, note text);\n\
         INSERT INTO t SELECT g, 'row ' || g FROM generate_series(1, 20000) g;\n",
    );
    // The sleep makes certain that every other starter is already waiting for the lock when
    // CREATE INDEX CONCURRENTLY starts (and waits for every transaction it could conflict with).
    dir.write(
        "2_t_id_idx.sql",
        "-- migrate:no-transaction\nSELECT pg_sleep(2.5);\nCREATE INDEX CONCURRENTLY t_id_idx ON t (id);\n",
    );
    dir.write("3_after.sql", "INSERT INTO t VALUES (0, 'after');\n");

    let started = Instant::now();
    let children = start_together(9, &dir, &db.url, &["up"]);
    wait_for(
        &client,
        "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND wait_event = 'PgSleep'",
        Duration::from_secs(20),
    )
    .await;
    // All nine are connected while the holder sleeps: eight wait for the lock.
    let connected = wait_for(
        &client,
        "SELECT n FROM (SELECT count(*) AS n FROM pg_stat_activity WHERE datname = current_database() \
         AND application_name = 'pgratchet') c WHERE n = 9 \
         AND EXISTS (SELECT FROM pg_stat_activity WHERE datname = current_database() AND wait_event = 'PgSleep')",
        Duration::from_secs(20),
    )
    .await;
    assert_eq!(connected, "9");

    let outputs = outputs_within(children, Duration::from_secs(30))
        .await
        .expect("all nine finish within 30 s: no deadlock");
    for output in &outputs {
        assert_ok(output);
    }
    assert!(started.elapsed() < Duration::from_secs(30));
    assert_eq!(history(&client).await, applied(&[1, 2, 3]));
    assert_eq!(
        value(
            &client,
            "SELECT indisvalid FROM pg_index WHERE indexrelid = 't_id_idx'::regclass"
        )
        .await
        .as_deref(),
        Some("t")
    );
    assert_eq!(number(&client, "SELECT count(*) FROM t").await, 20_001);
    assert_eq!(
        number(&client, "SELECT count(*) FROM schema_migrations_log").await,
        3
    );
}

// ---- PgBouncer ----------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sixteen_starters_through_pgbouncer_apply_each_migration_once() {
    const STARTERS: usize = 16;
    let db = test_db("rel pgbouncer").await;
    let bouncer = Cluster::shared()
        .pgbouncer(PoolMode::Transaction)
        .unwrap_or_else(|e| panic!("{e}"));
    let dir = Dir::new("pgbouncer");
    dir.write("1_events.sql", "CREATE TABLE events (n int NOT NULL);\n");
    let mut expected_events = Vec::new();
    for version in 2..=20 {
        if version == 12 {
            dir.write(
                "12_events_n_idx.sql",
                "-- migrate:no-transaction\nCREATE INDEX CONCURRENTLY events_n_idx ON events (n);\n",
            );
        } else if version % 2 == 0 || version == 19 {
            dir.write(
                &format!("{version}_event.sql"),
                &format!(
                    "INSERT INTO events VALUES ({version});\nINSERT INTO events VALUES ({});\n",
                    version * 100
                ),
            );
            expected_events.extend([version, version * 100]);
        } else {
            dir.write(
                &format!("{version}_table.sql"),
                &format!("CREATE TABLE t_{version} (id int);\nINSERT INTO t_{version} VALUES ({version});\n"),
            );
        }
    }
    expected_events.sort_unstable();

    let url = bouncer.url(&db.name);
    let started = Instant::now();
    let children = start_together(
        STARTERS,
        &dir,
        &url,
        &["--transaction-pooler", "--json", "up"],
    );
    let outputs = outputs_within(children, Duration::from_secs(60))
        .await
        .unwrap_or_else(|e| panic!("{e}\n--- pgbouncer ---\n{}", bouncer.log()));
    let took = started.elapsed();
    let mut versions = Vec::new();
    let mut by_others = 0;
    for output in &outputs {
        assert!(
            output.status.success(),
            "{}\n--- pgbouncer ---\n{}",
            show(output),
            bouncer.log()
        );
        let report: serde_json::Value = serde_json::from_slice(&output.stdout)
            .unwrap_or_else(|e| panic!("{e}: {}", show(output)));
        assert_eq!(
            report["took_lock"], false,
            "no session lock behind a pooler"
        );
        for applied in report["applied"].as_array().expect("applied") {
            versions.push(applied["version"].as_i64().expect("a version"));
        }
        by_others += report["applied_by_others"].as_array().map_or(0, Vec::len);
    }
    versions.sort_unstable();
    assert_eq!(
        versions,
        (1..=20).collect::<Vec<_>>(),
        "each migration applied by exactly one starter"
    );
    assert!(took < Duration::from_secs(60), "{took:?}");

    let client = db.client().await;
    assert_eq!(
        history(&client).await,
        applied(&(1..=20).collect::<Vec<_>>())
    );
    assert_eq!(
        rows(&client, "SELECT n FROM events ORDER BY n")
            .await
            .into_iter()
            .map(|row| row[0].as_deref().and_then(|n| n.parse().ok()).expect("n"))
            .collect::<Vec<i64>>(),
        expected_events,
        "every INSERT ran exactly once"
    );
    for version in (3..=17).step_by(2) {
        assert_eq!(
            number(&client, &format!("SELECT count(*) FROM t_{version}")).await,
            1
        );
    }
    assert_eq!(
        value(
            &client,
            "SELECT indisvalid FROM pg_index WHERE indexrelid = 'events_n_idx'::regclass"
        )
        .await
        .as_deref(),
        Some("t")
    );
    assert_eq!(
        rows(
            &client,
            "SELECT action, count(*) FROM schema_migrations_log GROUP BY action"
        )
        .await,
        vec![vec![Some("apply".to_owned()), Some("20".to_owned())]]
    );
    // For the test's output: how often a starter found a migration applied by another mid-run.
    eprintln!(
        "16 starters through pgbouncer: {took:?}, {by_others} migration(s) applied by others"
    );

    // A late starter finds nothing to do.
    let late = run(&dir, &url, &["--transaction-pooler", "up"]).await;
    assert_ok(&late);
    assert_eq!(history(&client).await.len(), 20);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_of_a_starter_behind_pgbouncer_ends_its_transaction_promptly() {
    let db = test_db("rel pgbouncer sigkill").await;
    let client = db.client().await;
    let bouncer = Cluster::shared()
        .pgbouncer(PoolMode::Transaction)
        .unwrap_or_else(|e| panic!("{e}"));
    let dir = Dir::new("pgbouncer-sigkill");
    // The slow one comes first: PgBouncer passes the client's application_name on to the
    // server connection it lends, but after the `RESET ALL` that ends each migration's batch it
    // takes the server's default as the client's value (observed with PgBouncer 1.18).
    dir.write("1_slow.sql", &format!("CREATE TABLE b (id int);\n{SLOW}\n"));
    dir.write("2_c.sql", "CREATE TABLE c (id int);\n");
    let url = bouncer.url(&db.name);

    let mut first = pgratchet(&dir, &slow(&url), &["--transaction-pooler", "up"])
        .spawn()
        .expect("spawn");
    let pid = sleeping_backend(&client).await;
    // A second starter blocks on the history row of 1, holding a server connection.
    let second = pgratchet(&dir, &url, &["--transaction-pooler", "up"])
        .spawn()
        .expect("spawn");
    wait_for(
        &client,
        "SELECT pid FROM pg_stat_activity WHERE datname = current_database() \
         AND wait_event_type = 'Lock' LIMIT 1",
        Duration::from_secs(20),
    )
    .await;

    // PgBouncer closes the killed client's server connection; the backend must notice within
    // the runner's connection check interval, not when its 30 s statement ends, or it keeps the
    // row locked and every other starter (and the pool's connections) waiting.
    kill_9(&mut first).await;
    let noticed = backend_gone(&client, pid).await;
    assert!(noticed < Duration::from_secs(10), "{noticed:?}");

    let output = tokio::time::timeout(Duration::from_secs(30), second.wait_with_output())
        .await
        .expect("the second starter finishes")
        .expect("wait");
    assert_ok(&output);
    assert_eq!(history(&client).await, applied(&[1, 2]));
    assert!(exists(&client, "b").await && exists(&client, "c").await);
}

// ---- tampering ----------------------------------------------------------------------------------

/// A database with `10_a`, `20_b` and `30_c` applied from a fresh directory.
async fn applied_three(label: &str) -> (TestDb, Client, Dir) {
    let db = test_db(label).await;
    let client = db.client().await;
    let dir = Dir::new(label);
    dir.write("10_a.sql", "CREATE TABLE a (id int);\n");
    dir.write(
        "20_b.sql",
        "CREATE TABLE b (id int);\nINSERT INTO b VALUES (20);\n",
    );
    dir.write("30_c.sql", "CREATE TABLE c (id int);\n");
    assert_ok(&run(&dir, &db.url, &["up"]).await);
    assert_eq!(history(&client).await, applied(&[10, 20, 30]));
    // A later migration is pending: a refused run must not apply it either.
    dir.write("40_d.sql", "CREATE TABLE d (id int);\n");
    (db, client, dir)
}

/// `up` exits 4 with `expected` in stderr and changes nothing; returns the library's error on
/// the same directory (which must change nothing either) and `validate --json`'s issues.
async fn refused(
    db: &TestDb,
    client: &Client,
    dir: &Dir,
    expected: &str,
) -> (pgratchet::Error, Vec<(i64, String)>) {
    let before = snapshot(client).await;
    let output = run(dir, &db.url, &["up"]).await;
    assert_eq!(output.status.code(), Some(4), "{}", show(&output));
    assert!(text(&output.stderr).contains(expected), "{}", show(&output));
    assert_eq!(
        snapshot(client).await,
        before,
        "the refused run changed nothing"
    );
    assert!(
        !exists(client, "d").await,
        "the pending migration was not applied"
    );

    let migrations = pgratchet::Migrations::from_dir(dir.path()).expect("load");
    let error = pgratchet::Migrator::new(&migrations)
        .run(&db.pool(1))
        .await
        .expect_err("the library refuses too");
    assert_eq!(
        snapshot(client).await,
        before,
        "the refused run changed nothing"
    );

    let validate = run(dir, &db.url, &["--json", "validate"]).await;
    assert_eq!(validate.status.code(), Some(4), "{}", show(&validate));
    let json: serde_json::Value = serde_json::from_slice(&validate.stdout).expect("JSON");
    let issues = json["issues"]
        .as_array()
        .expect("issues")
        .iter()
        .filter(|issue| issue["error"] == true)
        .map(|issue| {
            (
                issue["version"].as_i64().expect("version"),
                issue["kind"].as_str().expect("kind").to_owned(),
            )
        })
        .collect();
    assert_eq!(snapshot(client).await, before);
    (error, issues)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn edited_applied_file_is_refused_and_nothing_changes() {
    let (db, client, dir) = applied_three("rel tamper edited").await;
    dir.write(
        "20_b.sql",
        "CREATE TABLE b (id int);\nINSERT INTO b VALUES (21);\n",
    );
    let (error, issues) = refused(
        &db,
        &client,
        &dir,
        "migration 20 `b` was edited after it was applied",
    )
    .await;
    let pgratchet::Error::Modified { version, .. } = &error else {
        panic!("expected Error::Modified, got {error:?}");
    };
    assert_eq!(*version, 20);
    assert!(
        error.to_string().contains("run repair for version 20"),
        "{error}"
    );
    assert_eq!(issues, vec![(20, "modified".to_owned())]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn removed_applied_file_is_refused_and_nothing_changes() {
    let (db, client, dir) = applied_three("rel tamper removed").await;
    std::fs::remove_file(dir.path().join("20_b.sql")).expect("remove");
    let (error, issues) = refused(
        &db,
        &client,
        &dir,
        "migration 20 `b` is applied in the database but missing from this set of migrations",
    )
    .await;
    let pgratchet::Error::Removed { version, .. } = &error else {
        panic!("expected Error::Removed, got {error:?}");
    };
    assert_eq!(*version, 20);
    assert_eq!(issues, vec![(20, "removed".to_owned())]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn renumbered_applied_file_is_refused_and_nothing_changes() {
    let (db, client, dir) = applied_three("rel tamper renumbered").await;
    std::fs::rename(dir.path().join("20_b.sql"), dir.path().join("15_b.sql")).expect("rename");
    // 15 looks pending below the newest applied (out of order), 20 applied but gone: the run
    // stops at the first in version order, validate reports both.
    let (error, issues) = refused(
        &db,
        &client,
        &dir,
        "migration 15 `b` is pending but older than the newest applied migration 30",
    )
    .await;
    assert!(
        matches!(error, pgratchet::Error::OutOfOrder { version: 15, .. }),
        "{error:?}"
    );
    assert_eq!(
        issues,
        vec![(15, "out-of-order".to_owned()), (20, "removed".to_owned())]
    );

    // Renumbered above every applied version, only the removal is left to refuse.
    std::fs::rename(dir.path().join("15_b.sql"), dir.path().join("35_b.sql")).expect("rename");
    let (error, issues) = refused(&db, &client, &dir, "a file was removed or renumbered").await;
    assert!(
        matches!(error, pgratchet::Error::Removed { version: 20, .. }),
        "{error:?}"
    );
    assert_eq!(issues, vec![(20, "removed".to_owned())]);
}
