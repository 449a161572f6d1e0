#!/usr/bin/env python3
"""(e) The test kits: `#[pgratchet_test::test]` beside `#[sqlx::test]` on the generated set.

    test_kits.py [--n 1000] [--tag kits] [--out DIR]

Builds tests/kits.rs (32 tests per kit, each recording when its body starts) in release, starts
a throwaway PostgreSQL cluster with the server's defaults (fsync on) for the kits that need a
server (`DATABASE_URL`), and measures, running the test binary directly:
  - time until the first test's body starts, from the process's spawn, and between consecutive
    bodies after it (one test at a time: `--test-threads 1`, so each gap is one test's teardown
    and the next one's setup);
  - pgratchet-test on its own throwaway cluster (no DATABASE_URL: what a user gets), on the shared
    server with no template yet, and on it again (template kept from the previous run);
    sqlx::test on the shared server;
  - 32 tests at once (`--test-threads 32`): exit status and wall time;
  - the copy strategies on a cluster with the kit's settings (fsync off): `CREATE DATABASE ...
    TEMPLATE` with STRATEGY FILE_COPY and WAL_LOG, from a template holding the generated set.
Writes OUT/<date>-<tag>.md and .json and prints the markdown. Python 3 standard library only;
needs cargo, psql and the PostgreSQL server binaries (newest /usr/lib/postgresql/*/bin or PGBIN).
The clusters this script starts go to the temporary directory (KITS_PG_PARENT=/dev/shm moves
them, e.g. to compare the copy strategies on memory).
"""
import argparse
import datetime as dt
import glob
import json
import os
import platform
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import gen  # noqa: E402

TARGET = os.path.join(HERE, "target")
KITS = ("pgratchet", "sqlx")


def log(*a):
    print(*a, file=sys.stderr, flush=True)


def pgbin():
    found = os.environ.get("PGBIN") or (sorted(glob.glob("/usr/lib/postgresql/*/bin"),
                                               key=lambda p: [int(x) for x in p.split("/")[-2].split(".")])
                                        or [None])[-1]
    if not found or not os.path.exists(os.path.join(found, "initdb")):
        sys.exit("test_kits.py: no PostgreSQL server binaries (set PGBIN=.../bin)")
    return found


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Cluster:
    """A throwaway cluster: initdb (as postgres when root), started, stopped and removed by stop()."""

    def __init__(self, settings):
        self.bin = pgbin()
        self.dir = tempfile.mkdtemp(prefix="pgratchet-kits-pg.", dir=os.environ.get("KITS_PG_PARENT"))
        self.root = os.geteuid() == 0
        if self.root:
            shutil.chown(self.dir, "postgres", "postgres")
        self.port = free_port()
        data = os.path.join(self.dir, "data")
        self.as_pg([os.path.join(self.bin, "initdb"), "-D", data, "-A", "trust", "-U", "postgres", "--no-sync",
                    "-E", "UTF8", "--locale=C"])
        options = f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.dir} " + " ".join(
            f"-c {k}={v}" for k, v in settings)
        self.as_pg([os.path.join(self.bin, "pg_ctl"), "-D", data, "-l", os.path.join(self.dir, "log"), "-w",
                    "-o", options, "start"])
        self.url = f"postgres://postgres@127.0.0.1:{self.port}/postgres"

    def as_pg(self, cmd):
        if self.root:
            cmd = ["runuser", "-u", "postgres", "--"] + cmd
        subprocess.run(cmd, check=True, capture_output=True)

    def psql(self, sql, db="postgres"):
        p = subprocess.run([os.path.join(self.bin, "psql"), "-XAtq", "-v", "ON_ERROR_STOP=1", "-d",
                            self.url.rsplit("/", 1)[0] + "/" + db, "-c", sql],
                           check=True, capture_output=True, text=True)
        return p.stdout.strip()

    def stop(self):
        try:
            self.as_pg([os.path.join(self.bin, "pg_ctl"), "-D", os.path.join(self.dir, "data"), "-m", "immediate",
                        "-w", "stop"])
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)


def test_binary():
    p = subprocess.run(["cargo", "test", "--release", "--offline", "--test", "kits", "--no-run",
                        "--message-format=json"], cwd=HERE, env=dict(os.environ, CARGO_TARGET_DIR=TARGET),
                       check=True, capture_output=True, text=True)
    for line in p.stdout.splitlines():
        msg = json.loads(line)
        if msg.get("reason") == "compiler-artifact" and msg.get("target", {}).get("name") == "kits" \
                and msg.get("executable"):
            return msg["executable"]
    sys.exit("test_kits.py: no `kits` test binary")


def run_kit(binary, kit, threads, database_url):
    """Runs one kit's 32 tests; returns marks (ns, by test), the spawn instant, exit code, wall."""
    out = tempfile.mkdtemp(prefix="pgratchet-kits-marks.")
    env = dict(os.environ, KITS_BENCH_OUT=out)
    env.pop("DATABASE_URL", None)
    if database_url:
        env["DATABASE_URL"] = database_url
    module = {"pgratchet": "pgratchet_kit::", "sqlx": "sqlx_kit::"}[kit]
    spawned = time.time_ns()
    p = subprocess.run([binary, module, "--test-threads", str(threads)], env=env, capture_output=True, text=True)
    wall = (time.time_ns() - spawned) / 1e6
    marks = {}
    for name in os.listdir(out):
        with open(os.path.join(out, name)) as f:
            marks[name.split("-", 1)[1]] = int(f.read())
    shutil.rmtree(out, ignore_errors=True)
    failed = [line for line in p.stdout.splitlines() if line.endswith("FAILED")]
    return {"spawned": spawned, "marks": marks, "rc": p.returncode, "wall_ms": round(wall),
            "failed": failed[:5], "tail": (p.stdout + p.stderr)[-1500:] if p.returncode else ""}


def sequential_stats(run):
    times = sorted(run["marks"].values())
    if not times:
        return {"first_ms": None, "later_median_ms": None, "later_max_ms": None, "tests": 0, "rc": run["rc"],
                "tail": run["tail"]}
    gaps = [(b - a) / 1e6 for a, b in zip(times, times[1:])]
    return {"first_ms": round((times[0] - run["spawned"]) / 1e6, 1),
            "later_median_ms": round(statistics.median(gaps), 1) if gaps else None,
            "later_max_ms": round(max(gaps), 1) if gaps else None,
            "tests": len(times), "rc": run["rc"], "tail": run["tail"]}


def drop_templates(cluster):
    names = cluster.psql("SELECT string_agg(datname, ' ') FROM pg_database WHERE datname LIKE 'pgratchet\\_tpl\\_%'")
    for name in filter(None, names.split(" ")):
        cluster.psql(f'DROP DATABASE "{name}"')


def strategies(n, reps):
    """Milliseconds per CREATE DATABASE ... TEMPLATE, per strategy, on a cluster with the kit's
    settings, from a template holding the generated set (psql -1 -f of the concatenation)."""
    cluster = Cluster([("fsync", "off"), ("synchronous_commit", "off"), ("full_page_writes", "off")])
    try:
        cluster.psql("CREATE DATABASE tpl")
        subprocess.run([os.path.join(cluster.bin, "psql"), "-XAtq", "-v", "ON_ERROR_STOP=1", "-1", "-d",
                        cluster.url.rsplit("/", 1)[0] + "/tpl", "-f",
                        os.path.join(HERE, "migrations", "concat", "all.sql")], check=True, capture_output=True)
        size = cluster.psql("SELECT pg_size_pretty(pg_database_size('tpl'))")
        cluster.psql("ALTER DATABASE tpl ALLOW_CONNECTIONS false")
        out = {"template_size": size}
        for strategy in ("FILE_COPY", "WAL_LOG"):
            samples = []
            for i in range(reps):
                t = time.perf_counter()
                cluster.psql(f"CREATE DATABASE c_{strategy.lower()}_{i} TEMPLATE tpl STRATEGY {strategy}")
                samples.append((time.perf_counter() - t) * 1000)
            out[strategy] = {"median_ms": round(statistics.median(samples), 1), "samples": [round(x, 1) for x in samples]}
            log(f"  strategy {strategy}: {out[strategy]}")
        return out
    finally:
        cluster.stop()


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--tag", default="kits")
    ap.add_argument("--out", default=os.path.join(HERE, "results"))
    ap.add_argument("--strategy-reps", type=int, default=10)
    a = ap.parse_args()
    started = dt.datetime.now()
    gen.generate(a.n)
    log("== build: the kits' tests (release)")
    binary = test_binary()
    meta = {"date": started.strftime("%Y-%m-%d %H:%M"), "n": a.n, "nproc": os.cpu_count(),
            "kernel": f"{platform.system()} {platform.release()}",
            "loadavg_start": open("/proc/loadavg").read().split()[:3],
            "rustc": subprocess.run(["rustc", "--version"], capture_output=True, text=True).stdout.strip(),
            "git": subprocess.run(["git", "describe", "--always", "--dirty"], cwd=HERE, capture_output=True,
                                  text=True).stdout.strip()}
    r = {"meta": meta}
    server = Cluster([])
    try:
        meta["pg_version"] = server.psql("SHOW server_version")
        log("== one at a time")
        r["sequential"] = {}
        runs = [("pgratchet, own cluster", "pgratchet", None),
                ("pgratchet, server, new template", "pgratchet", server.url),
                ("pgratchet, server, template kept", "pgratchet", server.url),
                ("sqlx, server", "sqlx", server.url)]
        for label, kit, url in runs:
            if label.endswith("new template"):
                drop_templates(server)
            stats = sequential_stats(run_kit(binary, kit, 1, url))
            log(f"  {label}: {stats}")
            r["sequential"][label] = stats
        log("== 32 at once")
        r["parallel"] = {}
        for label, kit, url in [("pgratchet, own cluster", "pgratchet", None), ("sqlx, server", "sqlx", server.url)]:
            run = run_kit(binary, kit, 32, url)
            r["parallel"][label] = {"rc": run["rc"], "wall_ms": run["wall_ms"], "bodies": len(run["marks"]),
                                    "failed": run["failed"], "tail": run["tail"]}
            log(f"  {label}: rc={run['rc']} wall={run['wall_ms']} ms bodies={len(run['marks'])}")
    finally:
        server.stop()
    log("== copy strategies")
    r["strategies"] = strategies(a.n, a.strategy_reps)
    meta["loadavg_end"] = open("/proc/loadavg").read().split()[:3]
    meta["elapsed_s"] = round((dt.datetime.now() - started).total_seconds())

    seq = r["sequential"]
    sqlx_later = seq["sqlx, server"]["later_median_ms"]
    lines = [f"# The test kits, {meta['date']}", "",
             f"Command: `benches/peers/test_kits.py --n {a.n}`", "",
             f"Machine: {meta['nproc']} CPUs, {meta['kernel']}; load average {' '.join(meta['loadavg_start'])} at the "
             f"start, {' '.join(meta['loadavg_end'])} at the end. {meta['rustc']}. PostgreSQL {meta['pg_version']}. "
             f"pgratchet at {meta['git']}.", "",
             f"32 tests per kit on the generated set of {a.n} migrations, each making one query; release builds; "
             "the test binary run directly. The shared server is a throwaway cluster with PostgreSQL's defaults "
             "(fsync on); the kit's own cluster has fsync off.", "",
             "## One test at a time (`--test-threads 1`)", "",
             "| kit | first body starts after, ms | each later one, ms: median (max) | × sqlx (later) | tests | exit |",
             "|---|---:|---:|---:|---:|---:|"]
    for label, s in seq.items():
        ratio = f"{sqlx_later / s['later_median_ms']:.0f}x faster" if s["later_median_ms"] and sqlx_later and \
            not label.startswith("sqlx") else "–"
        lines.append(f"| {label} | {s['first_ms']} | {s['later_median_ms']} ({s['later_max_ms']}) | {ratio} | "
                     f"{s['tests']} | {s['rc']} |")
    lines += ["", "## 32 tests at once (`--test-threads 32`)", "", "| kit | bodies run | exit | wall, ms |",
              "|---|---:|---:|---:|"]
    for label, p in r["parallel"].items():
        lines.append(f"| {label} | {p['bodies']} | {p['rc']} | {p['wall_ms']} |")
    st = r["strategies"]
    lines += ["", "## Copy strategy, on a cluster with the kit's settings (fsync off)", "",
              f"Template: the {a.n} migrations ({st['template_size']}); {a.strategy_reps} copies each.", "",
              "| strategy | CREATE DATABASE ... TEMPLATE, ms: median |", "|---|---:|",
              f"| FILE_COPY | {st['FILE_COPY']['median_ms']} |", f"| WAL_LOG | {st['WAL_LOG']['median_ms']} |"]
    md = "\n".join(lines) + "\n"
    os.makedirs(a.out, exist_ok=True)
    stem = os.path.join(a.out, started.strftime("%Y-%m-%d") + f"-{a.tag}")
    with open(stem + ".json", "w") as f:
        json.dump(r, f, indent=1)
    with open(stem + ".md", "w") as f:
        f.write(md)
    log(f"wrote {stem}.md and .json ({meta['elapsed_s']} s)")
    print(md)


if __name__ == "__main__":
    main()
