//! The test kit against a real PostgreSQL: the attribute in every form, fixtures, templates
//! reused and rebuilt, and, through child processes (`examples/probe.rs`), what is left after a
//! test passes, fails or is killed while building a template.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use deadpool_postgres::Pool;
use pgratchet::{Migrations, Migrator};
use pgratchet_harness::Cluster;

static MIGRATIONS: Migrations = pgratchet::embed_migrations!("migrations");

async fn scalar(client: &tokio_postgres::Client, sql: &str) -> String {
    let row = client.query_one(sql, &[]).await.expect(sql);
    row.get(0)
}

#[pgratchet_test::test(migrations = MIGRATIONS)]
async fn a_test_gets_a_migrated_database_of_its_own(pool: Pool) {
    let client = pool.get().await.expect("a connection");
    let history = scalar(
        &client,
        "SELECT string_agg(version::text, ',' ORDER BY version) FROM schema_migrations WHERE state = 'applied'",
    )
    .await;
    assert_eq!(history, "1,2");
    // Nothing from another test: each has a copy of the template.
    let routers = scalar(&client, "SELECT count(*)::text FROM routers").await;
    assert_eq!(routers, "0");
    client
        .execute("INSERT INTO routers (name) VALUES ('only-here')", &[])
        .await
        .expect("insert");
}

#[pgratchet_test::test(migrations = MIGRATIONS)]
async fn another_test_sees_none_of_it(pool: Pool) {
    let client = pool.get().await.expect("a connection");
    client
        .execute("INSERT INTO routers (name) VALUES ('only-here')", &[])
        .await
        .expect("the same name, in a database of its own");
}

#[pgratchet_test::test(migrations = MIGRATIONS, fixtures("routers", "peers"))]
async fn fixtures_are_applied_in_order(client: tokio_postgres::Client) -> Result<(), String> {
    let peers = client
        .query_one(
            "SELECT count(*) FROM peers JOIN routers ON routers.id = router_id WHERE name = 'r1'",
            &[],
        )
        .await
        .map_err(|error| error.to_string())?;
    assert_eq!(peers.get::<_, i64>(0), 1);
    Ok(())
}

fn custom_migrator() -> Migrator<'static> {
    Migrator::new(&MIGRATIONS).table("app_history")
}

#[pgratchet_test::test(migrator = custom_migrator(), flavor = "multi_thread", worker_threads = 2)]
async fn a_configured_migrator_on_a_multi_thread_runtime(pool: Pool) {
    let client = pool.get().await.expect("a connection");
    let table = scalar(&client, "SELECT to_regclass('app_history')::text").await;
    assert_eq!(table, "app_history");
    let default = scalar(
        &client,
        "SELECT coalesce(to_regclass('schema_migrations')::text, '-')",
    )
    .await;
    assert_eq!(default, "-");
}

#[pgratchet_test::test(migrations = MIGRATIONS)]
#[should_panic(expected = "the test returned Err(\"no\")")]
async fn an_err_fails_the_test(_pool: Pool) -> Result<(), &'static str> {
    Err("no")
}

/// The same set gives the same template; a changed migration gives another, with the change.
#[tokio::test]
async fn the_template_is_reused_and_rebuilt_when_a_migration_changes() {
    let first = pgratchet_test::TestDatabase::new(&MIGRATIONS)
        .await
        .expect("a database");
    let second = pgratchet_test::TestDatabase::new(&MIGRATIONS)
        .await
        .expect("a database");
    assert_eq!(first.template(), second.template());
    assert_ne!(first.name(), second.name());
    let changed = Migrations::new(
        MIGRATIONS
            .iter()
            .map(|migration| {
                let sql = if migration.version() == 2 {
                    "CREATE TABLE peers (id bigint PRIMARY KEY, note text);".to_owned()
                } else {
                    migration.up_sql().to_owned()
                };
                pgratchet::Migration::new(
                    migration.version(),
                    migration.name().to_owned(),
                    pgratchet::Script::new(migration.up().path().to_owned(), sql, false),
                    None,
                )
            })
            .collect(),
    )
    .expect("a valid set");
    let third = pgratchet_test::TestDatabase::new(&changed)
        .await
        .expect("a database");
    assert_ne!(third.template(), first.template());
    let client = third.client().await.expect("a connection");
    let column = scalar(
        &client,
        "SELECT string_agg(attname, ',' ORDER BY attnum) FROM pg_attribute \
         WHERE attrelid = 'peers'::regclass AND attnum > 0",
    )
    .await;
    assert_eq!(column, "id,note");
    drop(client);
    for db in [first, second, third] {
        db.close().await.expect("dropped");
    }
}

// ---------------------------------------------------------------------------------------------
// What outlives a test: child processes on a server that outlives them (this binary's cluster,
// handed over as DATABASE_URL), or on their own throwaway cluster.
// ---------------------------------------------------------------------------------------------

/// The probe's binary (built by `cargo test` with the other examples).
fn probe_binary() -> PathBuf {
    let exe = std::env::current_exe().expect("current_exe");
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("<target>/<profile>/deps");
    dir.join("examples").join("probe")
}

fn probe(args: &[&str], database_url: Option<&str>) -> Command {
    let mut command = Command::new(probe_binary());
    command
        .args(args)
        .env_remove("NEXTEST_RUN_ID")
        .stdin(Stdio::null());
    match database_url {
        Some(url) => command.env("DATABASE_URL", url),
        None => command.env_remove("DATABASE_URL"),
    };
    command
}

fn run(mut command: Command) -> Output {
    command.output().expect("the probe runs")
}

/// `key=value` of the probe's `PROBE` line.
fn field(output: &Output, key: &str) -> String {
    let stdout = String::from_utf8_lossy(&output.stdout);
    stdout
        .lines()
        .find_map(|line| line.strip_prefix("PROBE "))
        .and_then(|line| {
            line.split(' ')
                .find_map(|pair| pair.strip_prefix(&format!("{key}=")))
        })
        .unwrap_or_else(|| panic!("no {key}= in the probe's output: {output:?}"))
        .to_owned()
}

async fn maintenance() -> tokio_postgres::Client {
    let (client, task) = Cluster::shared().maintenance().await.expect("connect");
    drop(task);
    client
}

async fn databases_like(client: &tokio_postgres::Client, pattern: &str) -> Vec<String> {
    client
        .query(
            "SELECT datname FROM pg_database WHERE datname LIKE $1 ORDER BY datname",
            &[&pattern],
        )
        .await
        .expect("list databases")
        .iter()
        .map(|row| row.get(0))
        .collect()
}

fn shared_url() -> String {
    Cluster::shared().url("postgres")
}

#[tokio::test]
async fn a_passing_test_leaves_no_database_and_a_failing_one_keeps_it_on_database_url() {
    let url = shared_url();
    let client = maintenance().await;
    for action in ["pass", "drop"] {
        let output = run(probe(&[action], Some(&url)));
        assert!(output.status.success(), "{output:?}");
        let db = field(&output, "db");
        assert_eq!(
            databases_like(&client, &db).await,
            Vec::<String>::new(),
            "{action}"
        );
        // The template stays for the next run.
        let template = field(&output, "template");
        assert_eq!(
            databases_like(&client, &template).await,
            [template.as_str()]
        );
    }

    let output = run(probe(&["fail"], Some(&url)));
    assert!(!output.status.success(), "{output:?}");
    let db = field(&output, "db");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains(&format!("its database `{db}` is kept: postgres://")),
        "{stderr}"
    );
    assert_eq!(databases_like(&client, &db).await, [db.as_str()]);
    Cluster::shared().drop_database(&db).await.expect("drop");
}

#[tokio::test]
async fn a_killed_template_build_is_never_copied() {
    let url = shared_url();
    let client = maintenance().await;
    let mut child = probe(&["hang"], Some(&url))
        .stdout(Stdio::piped())
        .spawn()
        .expect("the probe starts");
    let pid = child.id();
    let deadline = Instant::now() + Duration::from_secs(60);
    let building = loop {
        let found =
            databases_like(&client, &format!("pgratchet\\_tpl\\_%\\_building\\_{pid}")).await;
        if let Some(name) = found.into_iter().next() {
            break name;
        }
        assert!(
            Instant::now() < deadline,
            "the probe never started its build"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    // SIGKILL: nothing of the probe runs after this.
    child.kill().expect("kill the probe");
    let _ = child.wait();
    let template = building
        .split("_building_")
        .next()
        .expect("a template name")
        .to_owned();
    // Half-built: under a name nobody copies, and never renamed.
    assert_eq!(
        databases_like(&client, &template).await,
        Vec::<String>::new()
    );

    // The next build (of any set) drops the leftover; its backend may take a moment to go.
    let output = run(probe(&["pass", "CREATE TABLE u (id int);"], Some(&url)));
    assert!(output.status.success(), "{output:?}");
    assert_eq!(
        databases_like(&client, &building).await,
        Vec::<String>::new()
    );
}

#[test]
fn a_passing_test_on_its_own_cluster_leaves_no_server() {
    let output = run(probe(&["pass"], None));
    assert!(output.status.success(), "{output:?}");
    let url = field(&output, "url");
    let port = port_of(&url);
    let prefix = format!("pgratchet-harness-{}-", field(&output, "pid"));
    let deadline = Instant::now() + Duration::from_secs(15);
    while (accepts(port) || !dirs_starting(&prefix).is_empty()) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(!accepts(port), "the probe's server still runs on {port}");
    assert_eq!(dirs_starting(&prefix), Vec::<PathBuf>::new());
}

#[test]
fn a_failing_test_on_its_own_cluster_keeps_it_and_says_how_to_look() {
    let output = run(probe(&["fail"], None));
    assert!(!output.status.success(), "{output:?}");
    let db = field(&output, "db");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains(&format!("its database `{db}` is kept with the cluster in")),
        "{stderr}"
    );
    let start = stderr
        .lines()
        .find(|line| line.contains("pg_ctl -D") && line.ends_with(" start"))
        .unwrap_or_else(|| panic!("no pg_ctl command: {stderr}"))
        .trim()
        .to_owned();
    let data = start
        .split(" -D ")
        .nth(1)
        .and_then(|rest| rest.split(' ').next())
        .expect("the data directory");
    let dir = Path::new(data)
        .parent()
        .expect("the cluster directory")
        .to_path_buf();
    let _cleanup = RemoveOnDrop(dir.clone());
    // The watchdog shuts it down cleanly and leaves it.
    let pid_file = Path::new(data).join("postmaster.pid");
    let deadline = Instant::now() + Duration::from_secs(40);
    while pid_file.exists() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(!pid_file.exists(), "the kept server was not shut down");
    assert!(dir.join("keep").exists());

    // The printed command starts it again, and the database is there, migrated.
    let status = Command::new("sh")
        .args(["-c", &start])
        .stdout(Stdio::null())
        .status();
    assert!(status.expect("sh runs").success(), "{start}");
    let psql = stderr
        .lines()
        .find(|line| line.contains("/psql '"))
        .expect("a psql command")
        .trim()
        .to_owned();
    let count = Command::new("sh")
        .args([
            "-c",
            &format!("{psql} -XAtc 'SELECT count(*) FROM schema_migrations'"),
        ])
        .output()
        .expect("psql runs");
    let stop = start
        .replace(" -l ", " -m fast -l ")
        .replace(" start", " stop");
    let stopped = Command::new("sh")
        .args(["-c", &stop])
        .stdout(Stdio::null())
        .status();
    assert_eq!(
        String::from_utf8_lossy(&count.stdout).trim(),
        "2",
        "{count:?}"
    );
    assert!(stopped.expect("sh runs").success(), "{stop}");
}

#[test]
fn under_nextest_without_database_url_it_says_what_to_do() {
    let mut command = probe(&["pass"], None);
    command.env("NEXTEST_RUN_ID", "00000000-0000-0000-0000-000000000000");
    let output = run(command);
    assert_eq!(output.status.code(), Some(3), "{output:?}");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("cargo-nextest runs every test in a process of its own"),
        "{stderr}"
    );
    assert!(stderr.contains("set DATABASE_URL"), "{stderr}");
}

/// The port of a `postgres://user@host:port/db` URL.
fn port_of(url: &str) -> u16 {
    url.rsplit(':')
        .next()
        .and_then(|rest| rest.split('/').next())
        .and_then(|port| port.parse().ok())
        .unwrap_or_else(|| panic!("no port in {url}"))
}

fn accepts(port: u16) -> bool {
    std::net::TcpStream::connect_timeout(
        &std::net::SocketAddr::from(([127, 0, 0, 1], port)),
        Duration::from_millis(200),
    )
    .is_ok()
}

/// The entries whose names start with `prefix` where the harness puts clusters: `/dev/shm` or
/// the temporary directory.
fn dirs_starting(prefix: &str) -> Vec<PathBuf> {
    [PathBuf::from("/dev/shm"), std::env::temp_dir()]
        .iter()
        .filter_map(|dir| std::fs::read_dir(dir).ok())
        .flatten()
        .flatten()
        .filter(|entry| entry.file_name().to_string_lossy().starts_with(prefix))
        .map(|entry| entry.path())
        .collect()
}

struct RemoveOnDrop(PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A template build drops the templates of other sets unused for a day, and keeps recent ones.
#[tokio::test]
async fn a_build_drops_templates_unused_for_a_day() {
    let client = maintenance().await;
    let old = "pgratchet_tpl_00000000000000aa";
    let recent = "pgratchet_tpl_00000000000000bb";
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after 1970")
        .as_secs();
    for (name, last_used) in [(old, 1), (recent, now)] {
        client
            .batch_execute(&format!("DROP DATABASE IF EXISTS {name}"))
            .await
            .expect("drop");
        client
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .await
            .expect("create");
        client
            .batch_execute(&format!(
                "COMMENT ON DATABASE {name} IS 'pgratchet-test template, last used {last_used}'"
            ))
            .await
            .expect("comment");
    }
    // A set no test has built yet, so the probe builds a template.
    let output = run(probe(
        &["pass", &format!("CREATE TABLE gc_{now} (id int);")],
        Some(&shared_url()),
    ));
    assert!(output.status.success(), "{output:?}");
    assert_eq!(databases_like(&client, old).await, Vec::<String>::new());
    assert_eq!(databases_like(&client, recent).await, [recent]);
    client
        .batch_execute(&format!("DROP DATABASE {recent}"))
        .await
        .expect("clean up");
}
