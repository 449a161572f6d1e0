//! Tests of the harness itself.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use pgratchet_harness::{test_db, Cluster};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_databases_in_parallel() {
    let (a, b) = tokio::join!(test_db("parallel a"), test_db("parallel b"));
    assert_ne!(a.name, b.name);
    assert!(a.url.ends_with(&format!("/{}", a.name)), "{}", a.url);

    let setup = |db: pgratchet_harness::TestDb, value: i32| async move {
        let client = db.client().await;
        client
            .batch_execute(&format!(
                "CREATE TABLE t (v int); INSERT INTO t VALUES ({value})"
            ))
            .await
            .unwrap();
        let row = client
            .query_one("SELECT current_database(), (SELECT v FROM t)", &[])
            .await
            .unwrap();
        assert_eq!(row.get::<_, String>(0), db.name);
        assert_eq!(row.get::<_, i32>(1), value);
        db
    };
    let (a, b) = tokio::join!(tokio::spawn(setup(a, 1)), tokio::spawn(setup(b, 2)));
    let (a, b) = (a.unwrap(), b.unwrap());

    // Each database is fresh and separate; pools work too.
    let pool = a.pool(4);
    let (c1, c2) = tokio::join!(pool.get(), pool.get());
    let (c1, c2) = (c1.unwrap(), c2.unwrap());
    let (r1, r2) = tokio::join!(
        c1.query_one("SELECT sum(v)::int FROM t", &[]),
        c2.query_one("SELECT pg_sleep(0.05)::text, count(*) FROM t", &[])
    );
    assert_eq!(r1.unwrap().get::<_, i32>(0), 1);
    assert_eq!(r2.unwrap().get::<_, i64>(1), 1);
    let other = b.client().await;
    assert_eq!(
        other
            .query_one("SELECT v FROM t", &[])
            .await
            .unwrap()
            .get::<_, i32>(0),
        2
    );
}

#[test]
fn shared_cluster_facts() {
    let cluster = Cluster::shared();
    assert!(cluster.port() > 0);
    assert_eq!(
        cluster.url("some db"),
        if std::env::var("DATABASE_URL").map_or(true, |u| u.trim().is_empty()) {
            format!("postgres://postgres@127.0.0.1:{}/some%20db", cluster.port())
        } else {
            cluster.url("some db")
        }
    );
    if let Some(bin) = cluster.bin_dir() {
        assert!(bin.join("psql").is_file(), "{}", bin.display());
    }
}

#[tokio::test]
async fn database_url_mode() {
    // An external server given by URL: here, the shared cluster's maintenance database.
    let url = Cluster::shared().url("postgres");
    let external = Cluster::from_url(&url).unwrap();
    assert_eq!(external.port(), Cluster::shared().port());
    assert_eq!(external.host(), Cluster::shared().host());
    assert_eq!(external.postmaster_pid(), None);
    let db = external.create_database("external").await.unwrap();
    let base = url.strip_suffix("/postgres").unwrap();
    assert_eq!(db.url, format!("{base}/{}", db.name));
    let client = db.client().await;
    let row = client
        .query_one("SELECT current_database()", &[])
        .await
        .unwrap();
    assert_eq!(row.get::<_, String>(0), db.name);

    let bad = Cluster::from_url("host=localhost").unwrap_err();
    assert!(bad.to_string().contains("postgres://"), "{bad}");
}

#[tokio::test]
async fn drop_stops_a_private_cluster() {
    let cluster = Cluster::start().unwrap();
    let pid = cluster.postmaster_pid().unwrap();
    let dir = cluster.dir().unwrap().to_owned();
    assert!(alive(pid));
    let db = cluster.create_database("private").await.unwrap();
    let client = db.client().await;
    client.batch_execute("SELECT 1").await.unwrap();
    drop(client);
    drop(cluster);
    assert!(!alive(pid), "postmaster {pid} still runs after drop");
    assert!(!dir.exists(), "{} still exists after drop", dir.display());
}

// ---- the test process ending, however it ends, stops its server ------------------------------

#[derive(Clone, Copy, PartialEq)]
enum End {
    Exit,
    Sigkill,
    SigkillProcessGroup,
}

fn child_ends_and_server_stops(end: End) {
    let mut cmd = Command::new(crate::holder());
    cmd.arg(if end == End::Exit {
        "cluster-exit"
    } else {
        "cluster-wait"
    })
    .env_remove("DATABASE_URL")
    .stdin(Stdio::piped())
    .stdout(Stdio::piped())
    .stderr(Stdio::inherit());
    if end == End::SigkillProcessGroup {
        std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
    }
    let mut child = cmd.spawn().unwrap();
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
        .expect("child did not report its cluster");
    let (pid, dir) = parse_child_line(&line);

    match end {
        End::Exit => {}
        End::Sigkill => child.kill().unwrap(),
        End::SigkillProcessGroup => {
            let pgid = child.id() as libc::pid_t;
            // SAFETY: plain syscall; the child leads its own process group.
            assert_eq!(unsafe { libc::kill(-pgid, libc::SIGKILL) }, 0);
        }
    }
    let status = child.wait().unwrap();
    if end == End::Exit {
        assert!(status.success(), "{status}");
    }

    let deadline = Instant::now() + Duration::from_secs(5);
    while (alive(pid) || dir.exists()) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        !alive(pid),
        "postmaster {pid} still runs after its test process ended"
    );
    assert!(!dir.exists(), "{} still exists", dir.display());
}

#[test]
fn sigkill_of_the_test_process_stops_its_server() {
    child_ends_and_server_stops(End::Sigkill);
}

#[test]
fn sigkill_of_the_test_process_group_stops_its_server() {
    child_ends_and_server_stops(End::SigkillProcessGroup);
}

#[test]
fn exit_of_the_test_process_stops_its_server() {
    child_ends_and_server_stops(End::Exit);
}

fn parse_child_line(line: &str) -> (u32, PathBuf) {
    let (pid, dir) = line
        .strip_prefix("pid=")
        .and_then(|r| r.split_once(" dir="))
        .unwrap_or_else(|| panic!("bad child line {line:?}"));
    (pid.parse().unwrap(), PathBuf::from(dir))
}

/// Whether `pid` runs (a zombie does not count: its parent just has not reaped it).
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

/// A cluster kept after a failed test is removed by a later start once it is a day old and not
/// running; a younger one, or one whose server runs, stays.
#[test]
fn a_later_start_removes_stale_kept_clusters() {
    // Where this machine's throwaway clusters go (/dev/shm or the temporary directory).
    let parent = {
        let probe = Cluster::start().expect("a private cluster starts");
        probe
            .dir()
            .and_then(Path::parent)
            .expect("a throwaway cluster has a directory")
            .to_path_buf()
    };
    let kept = |label: &str, age: Duration, running: bool| {
        let dir = parent.join(format!("pgratchet-harness-{}-{label}", std::process::id()));
        std::fs::create_dir_all(dir.join("data")).expect("create a fake kept cluster");
        if running {
            std::fs::write(dir.join("data/postmaster.pid"), "1\n").expect("pid file");
        }
        let marker = std::fs::File::create(dir.join("keep")).expect("marker");
        marker
            .set_modified(std::time::SystemTime::now() - age)
            .expect("age the marker");
        dir
    };
    let day = Duration::from_secs(24 * 60 * 60);
    let fakes = Fakes(vec![
        kept("stale", day * 2, false),
        kept("young", Duration::from_secs(60), false),
        kept("running", day * 2, true),
    ]);
    let cluster = Cluster::start().expect("a private cluster starts");
    drop(cluster);
    let [stale, young, running] = &fakes.0[..] else {
        unreachable!("three fakes")
    };
    assert!(!stale.exists(), "{}", stale.display());
    assert!(young.exists() && running.exists());
}

/// Fake kept clusters, removed however the test ends.
struct Fakes(Vec<PathBuf>);

impl Drop for Fakes {
    fn drop(&mut self) {
        for dir in &self.0 {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}
