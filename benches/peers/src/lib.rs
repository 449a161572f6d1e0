//! The measuring code every contestant binary of this benchmark shares.
//!
//! A contestant implements [`Runner`] (open a connection, apply what is pending, close) and
//! hands itself to [`main`]; argument parsing, the clock, the three modes and the JSON line are
//! all here, so every library is timed by the same code.
//!
//! ```text
//! <bin> --url URL --mode fresh|noop|concurrent-child [--reps N] [--start-at UNIX_MS] [--dir DIR]
//! ```
//!
//! * `fresh`: apply everything (the database is empty). `wall_ms` runs from `main()` entry
//!   (building the runner, connecting, migrating, closing).
//! * `concurrent-child`: sleep until `--start-at` (ms since the Unix epoch), then as `fresh`;
//!   the sleep is not in `wall_ms`; `woke_at_ms` (ms since the epoch) says when it got going.
//! * `noop`: the database is fully migrated. `first_check_ms` (the first check of a new process,
//!   connect included), then `--reps` (default 50) of each: connect + check + close
//!   (`noop_connect_ms`), check only on one reused connection or pool (`noop_reuse_ms`, after one
//!   warm-up), connect + close only (`connect_only_ms`). Any check that applies something is an
//!   error.
//!
//! One JSON line goes to stdout; the exit code is 0 on success, 1 on failure (`"ok": false`,
//! `"error"`), 2 on bad arguments. `BENCH_RT=multi` selects tokio's multi-thread runtime instead
//! of `current_thread`.

use std::future::Future;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{anyhow, bail, Context, Result};
use serde_json::{json, Value};

/// One migration library under test.
pub trait Runner {
    /// The `contestant` field of the JSON line.
    const NAME: &'static str;
    /// What the library migrates through: a client, a connection, a pool.
    type Handle;

    /// How many migrations this binary knows (embedded, or read at start-up).
    fn known(&self) -> usize;

    /// Connects (the connection must exist when this returns, so `connect_ms` means something).
    fn open(&self, url: &str) -> impl Future<Output = Result<Self::Handle>>;

    /// Applies what is pending; `Some(count)` when the library tells how many it applied.
    fn apply(&self, handle: &mut Self::Handle) -> impl Future<Output = Result<Option<usize>>>;

    /// Closes the connection.
    fn shut(&self, handle: Self::Handle) -> impl Future<Output = Result<()>> {
        async move {
            drop(handle);
            Ok(())
        }
    }
}

/// The command line, the same for every contestant.
#[derive(Clone, Debug)]
pub struct Opts {
    pub url: String,
    pub mode: Mode,
    pub reps: usize,
    pub start_at_ms: Option<u64>,
    /// Only for contestants that read their migrations at run time.
    pub dir: Option<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    Fresh,
    Noop,
    ConcurrentChild,
}

impl Mode {
    fn as_str(self) -> &'static str {
        match self {
            Mode::Fresh => "fresh",
            Mode::Noop => "noop",
            Mode::ConcurrentChild => "concurrent-child",
        }
    }
}

impl Opts {
    pub fn from_args(args: impl IntoIterator<Item = String>) -> Result<Opts> {
        let mut url = None;
        let mut mode = None;
        let mut reps = 50;
        let mut start_at_ms = None;
        let mut dir = None;
        let mut args = args.into_iter();
        while let Some(flag) = args.next() {
            let mut value = || args.next().ok_or_else(|| anyhow!("{flag} needs a value"));
            match flag.as_str() {
                "--url" => url = Some(value()?),
                "--mode" => {
                    mode = Some(match value()?.as_str() {
                        "fresh" => Mode::Fresh,
                        "noop" => Mode::Noop,
                        "concurrent-child" => Mode::ConcurrentChild,
                        other => {
                            bail!("--mode must be fresh, noop or concurrent-child, not {other}")
                        }
                    })
                }
                "--reps" => reps = value()?.parse().context("--reps")?,
                "--start-at" => start_at_ms = Some(value()?.parse().context("--start-at")?),
                "--dir" => dir = Some(value()?),
                other => bail!("unknown argument {other}"),
            }
        }
        Ok(Opts {
            url: url.ok_or_else(|| anyhow!("--url is required"))?,
            mode: mode.ok_or_else(|| anyhow!("--mode is required"))?,
            reps: reps.max(1),
            start_at_ms,
            dir,
        })
    }
}

/// Milliseconds with microsecond resolution.
pub fn millis(d: Duration) -> f64 {
    (d.as_micros() as f64) / 1000.0
}

/// `{"median","min","max","mean","p90","reps"}` of samples in ms (null when empty).
pub fn summary(samples: &[f64]) -> Value {
    if samples.is_empty() {
        return Value::Null;
    }
    let mut s = samples.to_vec();
    s.sort_by(f64::total_cmp);
    let n = s.len();
    // the middle element, or the mean of the two middle ones
    let median = (s[(n - 1) / 2] + s[n / 2]) / 2.0;
    let p90 = s[((n as f64 * 0.9).ceil() as usize).clamp(1, n) - 1];
    let round = |x: f64| (x * 1000.0).round() / 1000.0;
    json!({
        "median": round(median),
        "min": round(s[0]),
        "max": round(s[n - 1]),
        "mean": round(s.iter().sum::<f64>() / n as f64),
        "p90": round(p90),
        "reps": n,
    })
}

/// The contestant binary's `main`: parses the command line, builds the runner with `make`
/// (reported as `setup_ms`), runs the mode, prints the JSON line and exits.
pub fn main<R: Runner>(make: impl FnOnce(&Opts) -> Result<R>) -> ! {
    let entered = Instant::now();
    let opts = match Opts::from_args(std::env::args().skip(1)) {
        Ok(opts) => opts,
        Err(e) => {
            eprintln!("{}: {e:#}", R::NAME);
            std::process::exit(2);
        }
    };
    let multi = std::env::var("BENCH_RT").is_ok_and(|v| v == "multi");
    let runtime = if multi {
        tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    }
    .expect("a tokio runtime");
    let outcome = runtime.block_on(async {
        let runner = make(&opts)?;
        let setup = entered.elapsed();
        match opts.mode {
            Mode::Noop => noop(&runner, &opts, setup).await,
            Mode::Fresh | Mode::ConcurrentChild => apply_once(&runner, &opts, entered, setup).await,
        }
    });
    drop(runtime);
    let code = match outcome {
        Ok(line) => {
            println!("{line}");
            0
        }
        Err(e) => {
            println!(
                "{}",
                json!({
                    "contestant": R::NAME,
                    "mode": opts.mode.as_str(),
                    "ok": false,
                    "error": format!("{e:#}"),
                    "wall_ms": millis(entered.elapsed()),
                })
            );
            eprintln!("{}: {e:#}", R::NAME);
            1
        }
    };
    std::process::exit(code)
}

async fn apply_once<R: Runner>(
    runner: &R,
    opts: &Opts,
    entered: Instant,
    setup: Duration,
) -> Result<Value> {
    let mut slept = Duration::ZERO;
    if let Some(at) = opts.start_at_ms {
        let now = SystemTime::now().duration_since(UNIX_EPOCH)?.as_millis() as u64;
        if at > now {
            slept = Duration::from_millis(at - now);
            tokio::time::sleep(slept).await;
        }
    }
    let woke_at_ms = SystemTime::now().duration_since(UNIX_EPOCH)?.as_millis() as u64;
    let started = Instant::now();
    let mut handle = runner.open(&opts.url).await.context("connect")?;
    let connected = started.elapsed();
    let applying = Instant::now();
    let applied = runner.apply(&mut handle).await?;
    let applying_took = applying.elapsed();
    runner.shut(handle).await.context("close")?;
    Ok(json!({
        "contestant": R::NAME,
        "mode": opts.mode.as_str(),
        "ok": true,
        "n": runner.known(),
        "applied": applied,
        "wall_ms": millis(entered.elapsed() - slept),
        "setup_ms": millis(setup),
        "connect_ms": millis(connected),
        "migrate_ms": millis(applying_took),
        "woke_at_ms": woke_at_ms,
    }))
}

fn nothing_applied(applied: Option<usize>) -> Result<()> {
    match applied {
        Some(n) if n > 0 => {
            bail!("noop mode: the database should be fully migrated, but {n} were applied")
        }
        _ => Ok(()),
    }
}

async fn noop<R: Runner>(runner: &R, opts: &Opts, setup: Duration) -> Result<Value> {
    let t = Instant::now();
    let mut handle = runner.open(&opts.url).await.context("connect")?;
    nothing_applied(runner.apply(&mut handle).await?)?;
    runner.shut(handle).await.context("close")?;
    let first = millis(t.elapsed());

    let mut connect_check = Vec::with_capacity(opts.reps);
    for _ in 0..opts.reps {
        let t = Instant::now();
        let mut handle = runner.open(&opts.url).await.context("connect")?;
        nothing_applied(runner.apply(&mut handle).await?)?;
        runner.shut(handle).await.context("close")?;
        connect_check.push(millis(t.elapsed()));
    }

    let mut handle = runner.open(&opts.url).await.context("connect")?;
    nothing_applied(runner.apply(&mut handle).await?)?; // warm-up, not timed
    let mut reuse = Vec::with_capacity(opts.reps);
    for _ in 0..opts.reps {
        let t = Instant::now();
        nothing_applied(runner.apply(&mut handle).await?)?;
        reuse.push(millis(t.elapsed()));
    }
    runner.shut(handle).await.context("close")?;

    let mut connect_only = Vec::with_capacity(opts.reps);
    for _ in 0..opts.reps {
        let t = Instant::now();
        let handle = runner.open(&opts.url).await.context("connect")?;
        runner.shut(handle).await.context("close")?;
        connect_only.push(millis(t.elapsed()));
    }

    Ok(json!({
        "contestant": R::NAME,
        "mode": "noop",
        "ok": true,
        "n": runner.known(),
        "setup_ms": millis(setup),
        "first_check_ms": first,
        "noop_connect_ms": summary(&connect_check),
        "noop_reuse_ms": summary(&reuse),
        "connect_only_ms": summary(&connect_only),
    }))
}

/// A plain tokio-postgres client and its connection task, for the contestants built on it.
pub mod pg {
    use anyhow::Result;
    use tokio::task::JoinHandle;
    use tokio_postgres::{Client, NoTls};

    pub struct Conn {
        pub client: Client,
        driver: JoinHandle<()>,
    }

    pub async fn connect(url: &str) -> Result<Conn> {
        let (client, connection) = tokio_postgres::connect(url, NoTls).await?;
        let driver = tokio::spawn(async move {
            if let Err(e) = connection.await {
                eprintln!("connection: {e}");
            }
        });
        Ok(Conn { client, driver })
    }

    /// Drops the client (the driver sends Terminate) and waits for the driver to finish.
    pub async fn close(conn: Conn) -> Result<()> {
        let Conn { client, driver } = conn;
        drop(client);
        driver.await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &str) -> Vec<String> {
        s.split_whitespace().map(str::to_owned).collect()
    }

    #[test]
    fn parses_the_contract() {
        let o = Opts::from_args(args(
            "--url u --mode concurrent-child --start-at 12 --reps 3",
        ))
        .unwrap();
        assert_eq!(
            (o.url.as_str(), o.mode, o.reps, o.start_at_ms),
            ("u", Mode::ConcurrentChild, 3, Some(12))
        );
        assert!(Opts::from_args(args("--url u --mode later")).is_err());
        assert!(Opts::from_args(args("--mode fresh")).is_err());
    }

    #[test]
    fn summarizes() {
        let s = summary(&[4.0, 1.0, 3.0, 2.0]);
        assert_eq!(s["median"], 2.5);
        assert_eq!(s["min"], 1.0);
        assert_eq!(s["max"], 4.0);
        assert_eq!(s["reps"], 4);
        assert_eq!(summary(&[]), Value::Null);
    }
}
