//! Tests of the harness's PgBouncer ([`Cluster::pgbouncer`]).

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use pgratchet_harness::{test_db, Cluster, PoolMode};

async fn backend_pid(client: &tokio_postgres::Client) -> String {
    let messages = client
        .simple_query("SELECT pg_backend_pid()")
        .await
        .expect("pg_backend_pid through pgbouncer");
    messages
        .iter()
        .find_map(|message| match message {
            tokio_postgres::SimpleQueryMessage::Row(row) => row.get(0).map(str::to_owned),
            _ => None,
        })
        .expect("a row")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transaction_mode_shares_server_connections_between_clients() {
    let db = test_db("bouncer transaction").await;
    let bouncer = Cluster::shared()
        .pgbouncer(PoolMode::Transaction)
        .expect("pgbouncer starts");
    assert_eq!(bouncer.mode(), PoolMode::Transaction);
    let via = bouncer.through(&db);
    assert_eq!(
        via.url,
        format!(
            "postgres://postgres@127.0.0.1:{}/{}",
            bouncer.port(),
            db.name
        )
    );
    let (a, b) = (via.client().await, via.client().await);
    // Each server connection goes back to the pool after each transaction and the most recently
    // used one is handed out next, so two clients taking turns run on one server backend.
    let first = backend_pid(&a).await;
    assert_eq!(backend_pid(&b).await, first, "{}", bouncer.log());
    assert_eq!(backend_pid(&a).await, first);
    // What tokio-postgres sends at startup is accepted, including `options`.
    let mut config = via.config();
    config
        .application_name("pgratchet-harness-test")
        .options("-c work_mem=8MB");
    let (c, connection) = config
        .connect(tokio_postgres::NoTls)
        .await
        .unwrap_or_else(|e| panic!("connect with options: {e}\n{}", bouncer.log()));
    tokio::spawn(connection);
    let messages = c
        .simple_query("SELECT current_database(), current_setting('application_name')")
        .await
        .expect("query");
    let row = messages
        .iter()
        .find_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(row) => {
                Some((row.get(0).map(str::to_owned), row.get(1).map(str::to_owned)))
            }
            _ => None,
        })
        .expect("a row");
    assert_eq!(row.0.as_deref(), Some(db.name.as_str()));
    // application_name is one of the parameters PgBouncer passes on to the server connection.
    assert_eq!(row.1.as_deref(), Some("pgratchet-harness-test"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_mode_keeps_a_server_connection_per_client() {
    let db = test_db("bouncer session").await;
    let bouncer = Cluster::shared()
        .pgbouncer(PoolMode::Session)
        .expect("pgbouncer starts");
    let via = bouncer.through(&db);
    let (a, b) = (via.client().await, via.client().await);
    let pid_a = backend_pid(&a).await;
    assert_ne!(backend_pid(&b).await, pid_a);
    assert_eq!(backend_pid(&a).await, pid_a);
}

#[tokio::test]
async fn drop_stops_pgbouncer() {
    let bouncer = Cluster::shared()
        .pgbouncer(PoolMode::Transaction)
        .expect("pgbouncer starts");
    let (pid, dir) = (bouncer.pid(), bouncer.dir().to_owned());
    assert!(alive(pid));
    assert!(dir.join("pgbouncer.ini").is_file());
    drop(bouncer);
    assert!(!alive(pid), "pgbouncer {pid} still runs after drop");
    assert!(!dir.exists(), "{} still exists after drop", dir.display());
}

// ---- the test process ending, however it ends, stops its pgbouncer ---------------------------

#[test]
fn sigkill_of_the_test_process_stops_its_pgbouncer() {
    let mut child = Command::new(crate::holder())
        .arg("bouncer")
        // The child uses this process's cluster as an external server: quicker than a cluster
        // of its own, and it covers a pgbouncer in front of a `DATABASE_URL` server.
        .env("DATABASE_URL", Cluster::shared().url("postgres"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Some(i) = line.find("PGRATCHET_HARNESS_CHILD ") {
                let _ = tx.send(line[i + "PGRATCHET_HARNESS_CHILD ".len()..].to_owned());
            }
        }
    });
    let line = rx
        .recv_timeout(Duration::from_secs(120))
        .expect("child did not report its pgbouncer");
    let (pid, dir) = line
        .strip_prefix("pid=")
        .and_then(|r| r.split_once(" dir="))
        .map(|(pid, dir)| (pid.parse::<u32>().unwrap(), PathBuf::from(dir)))
        .unwrap_or_else(|| panic!("bad child line {line:?}"));
    assert!(alive(pid));
    child.kill().unwrap();
    child.wait().unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while (alive(pid) || dir.exists()) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(!alive(pid), "pgbouncer {pid} outlived its test process");
    assert!(!dir.exists(), "{} still exists", dir.display());
}

/// Whether `pid` runs (a zombie does not count).
fn alive(pid: u32) -> bool {
    let stat = Path::new("/proc").join(pid.to_string()).join("stat");
    match std::fs::read_to_string(stat) {
        Ok(s) => {
            let state = s
                .rsplit_once(')')
                .map(|(_, r)| r.trim_start())
                .unwrap_or("");
            !(state.starts_with('Z') || state.starts_with('X'))
        }
        Err(_) => false,
    }
}
