//! The child process of pgratchet-harness's own tests of its cleanup: it starts a server (or a
//! pgbouncer), says which, and then exits or waits to be killed, so that the test can see the
//! server stop when this process ends, however it ends.
//!
//! `holder cluster-exit | cluster-wait | bouncer`; prints `PGRATCHET_HARNESS_CHILD pid=.. dir=..`.

use pgratchet_harness::{Cluster, PoolMode};

fn main() {
    let mode = std::env::args().nth(1).unwrap_or_default();
    let (pid, dir) = match mode.as_str() {
        "cluster-exit" | "cluster-wait" => {
            let cluster = Cluster::shared();
            (
                cluster.postmaster_pid().expect("a throwaway cluster"),
                cluster.dir().expect("a throwaway cluster").to_path_buf(),
            )
        }
        "bouncer" => {
            // Leaked on purpose: its drop would stop it, and the test is about this process
            // ending without any drop running.
            let bouncer = Box::leak(Box::new(
                Cluster::shared()
                    .pgbouncer(PoolMode::Transaction)
                    .expect("pgbouncer starts"),
            ));
            (bouncer.pid(), bouncer.dir().to_path_buf())
        }
        other => {
            eprintln!("usage: holder cluster-exit | cluster-wait | bouncer (got {other:?})");
            std::process::exit(2);
        }
    };
    println!("PGRATCHET_HARNESS_CHILD pid={pid} dir={}", dir.display());
    if mode != "cluster-exit" {
        // Wait to be killed; should the test die first, its end of our stdin closes.
        let _ = std::io::Read::read_to_end(&mut std::io::stdin(), &mut Vec::new());
    }
}
