#!/usr/bin/env python3
"""Driver of the peers benchmark (run it through run.sh, which owns the PostgreSQL cluster).

    run.sh [--n 1000] [--runs 9] [--reps 50] [--conc 16,32] [--conc-trials 2] [--build-reps 3]
           [--only pgratchet,raw,...] [--skip fresh,noop,conc,rebuild] [--tag T] [--out DIR]

Parts, every contestant on the same generated set (gen.py), each on its own fresh database of
one throwaway cluster:
  (a) fresh apply, --runs times, contestants interleaved round-robin (the order rotates each
      round); every run verified: history count = N and the bench_t* tables, columns, indexes,
      rows (and the sum of a column) exactly as generated.
  (b) nothing pending, on a database (a) migrated: --runs processes per contestant, interleaved,
      each timing its first check, then --reps x connect+check+close, --reps x check on one
      reused connection (pool), --reps x connect+close.
  (c) --conc processes started at the same instant on a fresh database, --conc-trials times per
      size: exit codes, wall time from the instant to the last exit, exactly-once verification.
  (d) builds: binary size; release rebuild after editing one migration (median of
      --build-reps); a migration N+1 added: does `cargo build` rebuild, does the binary apply it
      (else: after a forced rebuild)? Files are restored and binaries rebuilt afterwards.
Writes OUT/<date>[-TAG].md and .json and prints the markdown.
"""
import argparse
import datetime as dt
import json
import os
import platform
import re
import signal
import statistics
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import gen  # noqa: E402

REPO = os.path.dirname(os.path.dirname(HERE))
TARGET = os.path.join(HERE, "target")
ENV = dict(os.environ, CARGO_TARGET_DIR=TARGET)

# name, command, migration format, history count, cargo package/bin, file a forced rebuild
# touches, whether the migrations are compiled in, crates whose versions are reported.
CONTESTANTS = [
    {"name": "pgratchet", "cmd": [os.path.join(TARGET, "release", "pgratchet")], "format": "pgratchet",
     "history": "SELECT count(*) FROM schema_migrations WHERE state = 'applied'",
     "package": "pgratchet-contestant", "bin": "pgratchet", "src": "pgratchet-contestant/src/main.rs",
     "embedded": True, "crates": ["pgratchet", "deadpool-postgres", "tokio-postgres"]},
    {"name": "refinery", "cmd": [os.path.join(TARGET, "release", "refinery")], "format": "refinery",
     "history": "SELECT count(*) FROM refinery_schema_history",
     "package": "bench-peers", "bin": "refinery", "src": "src/bin/refinery.rs",
     "embedded": True, "crates": ["refinery", "refinery-core", "tokio-postgres"]},
    {"name": "sqlx", "cmd": [os.path.join(TARGET, "release", "sqlx")], "format": "sqlx",
     "history": "SELECT count(*) FROM _sqlx_migrations WHERE success",
     "package": "bench-peers", "bin": "sqlx", "src": "src/bin/sqlx.rs",
     "embedded": True, "crates": ["sqlx", "sqlx-postgres"]},
    {"name": "diesel", "cmd": [os.path.join(TARGET, "release", "diesel")], "format": "diesel",
     "history": "SELECT count(*) FROM __diesel_schema_migrations",
     "package": "bench-peers", "bin": "diesel", "src": "src/bin/diesel.rs",
     "embedded": True, "crates": ["diesel", "diesel_migrations", "pq-sys"]},
    {"name": "raw", "cmd": [os.path.join(TARGET, "release", "raw")], "format": "raw",
     "history": "SELECT count(*) FROM raw_history",
     "package": "bench-peers", "bin": "raw", "src": "src/bin/raw.rs",
     "embedded": False, "crates": ["tokio-postgres"]},
    {"name": "psql", "cmd": [sys.executable, os.path.join(HERE, "contestants", "psql.py")], "format": "concat",
     "history": "SELECT count(*) FROM psql_history", "embedded": False, "crates": []},
]

SUMMARY_SQL = r"""SELECT
 (SELECT count(*) FROM pg_class c JOIN pg_namespace s ON s.oid = c.relnamespace
   WHERE s.nspname = 'public' AND c.relkind = 'r' AND c.relname LIKE 'bench\_t%'),
 (SELECT count(*) FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace s ON s.oid = c.relnamespace
   WHERE s.nspname = 'public' AND c.relkind = 'r' AND c.relname LIKE 'bench\_t%' AND a.attnum > 0 AND NOT a.attisdropped),
 (SELECT count(*) FROM pg_index i JOIN pg_class c ON c.oid = i.indrelid JOIN pg_namespace s ON s.oid = c.relnamespace
   WHERE s.nspname = 'public' AND c.relname LIKE 'bench\_t%'),
 (SELECT count(*) FROM pg_class WHERE relname = 'bench_extra' AND relkind = 'r')"""


def log(*a):
    print(*a, file=sys.stderr, flush=True)


def fmt(x, unit=""):
    if x is None:
        return "–"
    return (f"{x:.0f}" if abs(x) >= 100 else f"{x:.1f}" if abs(x) >= 10 else f"{x:.2f}") + unit


def median(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def ratio(a, b):
    return None if a is None or not b else a / b


def last_json(text):
    for line in reversed(text.splitlines()):
        if line.strip().startswith("{"):
            try:
                return json.loads(line)
            except json.JSONDecodeError:
                pass
    return None


def user_args():
    """The command line as the user gave it to run.sh (without the --pg-url run.sh adds)."""
    out, skip = [], False
    for x in sys.argv[1:]:
        if skip:
            skip = False
        elif x == "--pg-url":
            skip = True
        elif not x.startswith("--pg-url="):
            out.append(x)
    return out


def loadavg():
    with open("/proc/loadavg") as f:
        return f.read().split()[:3]


class Cluster:
    def __init__(self, url):
        self.base = url  # postgres://postgres@127.0.0.1:PORT/postgres?sslmode=disable

    def url(self, db):
        return re.sub(r"/postgres\?", f"/{db}?", self.base, count=1)

    def psql(self, sql, db="postgres", check=True):
        p = subprocess.run(["psql", "-X", "-Atq", "-F", "|", "-v", "ON_ERROR_STOP=1", "-c", sql, self.url(db)],
                           capture_output=True, text=True)
        if p.returncode:
            if check:
                raise RuntimeError(f"psql: {sql[:100]}: {p.stderr.strip()}")
            return None
        return p.stdout.strip()

    def fresh(self, db):
        self.drop(db)
        self.psql(f"CREATE DATABASE {db}")
        self.psql("CHECKPOINT")
        self.settle()

    def settle(self, limit_s=15):
        """Waits (up to limit_s) until no autovacuum worker runs: each run leaves 1,000 migrations'
        worth of catalog churn behind, and a worker cleaning up after one contestant would
        otherwise take CPU from whichever contestant runs next."""
        deadline = time.monotonic() + limit_s
        while time.monotonic() < deadline:
            busy = self.psql("SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'autovacuum worker'")
            if busy == "0":
                return
            time.sleep(0.2)

    def drop(self, db):
        self.psql(f"DROP DATABASE IF EXISTS {db} WITH (FORCE)")


class Bench:
    def __init__(self, a, cluster, expected):
        self.a, self.pg, self.expected = a, cluster, expected
        per_table = expected["per_table"]
        self.rows_sql = "\nUNION ALL ".join(
            f"SELECT '{t}', count(*), coalesce(sum(amount), 0) FROM {t}" for t in per_table)

    # ------------------------------------------------------------------ verification
    def verify(self, c, db, n=None, extra=False):
        """History count = n, tables/columns/indexes/rows exactly as generated."""
        n = self.a.n if n is None else n
        e = self.expected
        hist = self.pg.psql(c["history"], db, check=False)
        got = {"history": int(hist) if hist else None}
        row = self.pg.psql(SUMMARY_SQL, db).split("|")
        got.update(tables=int(row[0]), columns=int(row[1]), indexes=int(row[2]), extra_table=int(row[3]))
        want = {"history": n, "tables": e["tables"], "columns": e["columns"], "indexes": e["indexes"],
                "extra_table": int(extra)}
        bad = {k: [got[k], want[k]] for k in want if got[k] != want[k]}
        rows = self.pg.psql(self.rows_sql, db, check=False) if self.rows_sql else ""
        if rows is None:
            bad["rows"] = "the per-table row query failed (a table is missing)"
        else:
            seen = {}
            for line in filter(None, rows.splitlines()):
                t, count, amount = line.split("|")
                seen[t] = [int(count), int(amount)]
            got["rows"] = sum(v[0] for v in seen.values())
            wrong = {t: [seen.get(t), w] for t, w in e["per_table"].items() if seen.get(t) != w}
            if wrong:
                bad["rows"] = dict(list(wrong.items())[:5], tables_wrong=len(wrong))
        return {"ok": not bad, "got": got, "mismatch": bad}

    # ------------------------------------------------------------------ running one process
    def run(self, c, db, mode, *extra, timeout=1800):
        argv = c["cmd"] + ["--url", self.pg.url(db), "--mode", mode, *extra]
        t = time.perf_counter()
        p = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
        ext = (time.perf_counter() - t) * 1000
        return p.returncode, last_json(p.stdout) or {}, ext, p.stderr.strip()

    def order(self, cs, r):
        k = r % len(cs)
        return cs[k:] + cs[:k]

    # ------------------------------------------------------------------ (a)
    def fresh(self, cs):
        out = {c["name"]: [] for c in cs}
        keep = {}
        for r in range(self.a.runs):
            for c in self.order(cs, r):
                db = f"b_{c['name']}_f{r}"
                self.pg.fresh(db)
                rc, j, ext, err = self.run(c, db, "fresh")
                v = self.verify(c, db)
                ok = rc == 0 and v["ok"] and j.get("applied") in (None, self.a.n)
                out[c["name"]].append({"run": r, "rc": rc, "ok": ok, "wall_ms": j.get("wall_ms"),
                                       "process_ms": round(ext, 3), "setup_ms": j.get("setup_ms"),
                                       "connect_ms": j.get("connect_ms"), "migrate_ms": j.get("migrate_ms"),
                                       "applied": j.get("applied"), "verify": v,
                                       "error": (j.get("error") or err)[-600:] if rc else None})
                log(f"  (a) {c['name']:9} run {r}: rc={rc} wall={fmt(j.get('wall_ms'))} ms "
                    f"process={fmt(ext)} ms verified={v['ok']}" + (f" {v['mismatch']}" if not v["ok"] else ""))
                if c["name"] in keep:
                    self.pg.drop(keep[c["name"]])
                keep[c["name"]] = db
        res = {}
        for c in cs:
            runs = out[c["name"]]
            walls = [x["wall_ms"] for x in runs if x["wall_ms"] is not None and x["ok"]]
            res[c["name"]] = {"runs": runs, "all_verified": all(x["ok"] for x in runs),
                              "median_ms": median(walls), "min_ms": min(walls, default=None),
                              "max_ms": max(walls, default=None),
                              "median_process_ms": median([x["process_ms"] for x in runs if x["ok"]]),
                              "median_setup_ms": median([x["setup_ms"] for x in runs if x["ok"]])}
        return res, keep

    # ------------------------------------------------------------------ (b)
    def noop(self, cs, dbs):
        out = {c["name"]: [] for c in cs}
        for r in range(self.a.runs):
            for c in self.order(cs, r):
                if c["name"] not in dbs:
                    continue
                rc, j, ext, err = self.run(c, dbs[c["name"]], "noop", "--reps", str(self.a.reps))
                out[c["name"]].append(dict(j, rc=rc, process_ms=round(ext, 3),
                                           error=(j.get("error") or err)[-600:] if rc else None))
                log(f"  (b) {c['name']:9} process {r}: rc={rc} first={fmt(j.get('first_check_ms'))} "
                    f"connect+check={fmt((j.get('noop_connect_ms') or {}).get('median'))} "
                    f"reuse={fmt((j.get('noop_reuse_ms') or {}).get('median'))} ms")
        res = {}
        for c in cs:
            ps = [p for p in out[c["name"]] if p["rc"] == 0]

            def pooled(key):
                # every sample's median over the processes: median of the per-process medians,
                # min/max over all of them
                ss = [p[key] for p in ps if p.get(key)]
                if not ss:
                    return None
                return {"median": median([s["median"] for s in ss]), "min": min(s["min"] for s in ss),
                        "max": max(s["max"] for s in ss), "reps": sum(s["reps"] for s in ss)}
            after = self.verify(c, dbs[c["name"]]) if c["name"] in dbs else None
            res[c["name"]] = {"processes": out[c["name"]], "all_ok": bool(ps) and len(ps) == len(out[c["name"]]),
                              "first_check_ms": median([p.get("first_check_ms") for p in ps]),
                              "first_check_all": [p.get("first_check_ms") for p in ps],
                              "noop_connect_ms": pooled("noop_connect_ms"),
                              "noop_reuse_ms": pooled("noop_reuse_ms"),
                              "connect_only_ms": pooled("connect_only_ms"),
                              "verify_after": after}
        return res

    # ------------------------------------------------------------------ (c)
    def conc_trial(self, c, k, t):
        db = f"b_{c['name']}_c{k}_{t}"
        self.pg.fresh(db)
        delay = self.a.start_delay_ms or 1000 + 60 * k
        start_at = int(time.time() * 1000) + delay
        argv = c["cmd"] + ["--url", self.pg.url(db), "--mode", "concurrent-child", "--start-at", str(start_at)]
        procs = [subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                 for _ in range(k)]
        spawned = int(time.time() * 1000) - start_at
        results = [None] * k

        def wait(i):
            out, err = procs[i].communicate(timeout=1800)
            results[i] = (procs[i].returncode, last_json(out) or {}, err.strip(), time.time() * 1000)

        threads = [threading.Thread(target=wait, args=(i,)) for i in range(k)]
        for th in threads:
            th.start()
        for th in threads:
            th.join()
        errors = {}
        for rc, j, err, _ in results:
            if rc:
                msg = re.sub(r"\d+", "#", " ".join((j.get("error") or err or f"exit {rc}").split()))[:240]
                errors[msg] = errors.get(msg, 0) + 1
        applied = [j.get("applied") for _, j, _, _ in results if isinstance(j.get("applied"), int)]
        woke = [j["woke_at_ms"] for _, j, _, _ in results if j.get("woke_at_ms")]
        v = self.verify(c, db)
        applied_sum = sum(applied) if applied else None
        exit0 = sum(1 for r in results if r[0] == 0)
        trial = {"processes": k, "trial": t, "exit0": exit0, "wall_ms": round(max(r[3] for r in results) - start_at, 1),
                 "spawned_before_start_ms": -spawned, "last_woke_late_ms": (max(woke) - start_at) if woke else None,
                 "applied_sum": applied_sum, "verify": v,
                 "exactly_once": v["ok"],
                 "errors": errors, "exit_codes": [r[0] for r in results]}
        log(f"  (c) {c['name']:9} {k} processes, trial {t}: exit0={exit0}/{k} wall={fmt(trial['wall_ms'])} ms "
            f"exactly_once={trial['exactly_once']} applied_sum={applied_sum}"
            + (f" errors={list(errors)[:2]}" if errors else ""))
        self.pg.drop(db)
        return trial

    def conc(self, cs):
        out = {c["name"]: [] for c in cs}
        i = 0
        for k in self.a.conc:
            for t in range(self.a.conc_trials):
                for c in self.order(cs, i):
                    out[c["name"]].append(self.conc_trial(c, k, t))
                i += 1
        return out

    # ------------------------------------------------------------------ (d)
    def build(self, c):
        binary = os.path.join(TARGET, "release", c["bin"])
        before = os.stat(binary).st_mtime_ns if os.path.exists(binary) else None
        t = time.perf_counter()
        p = subprocess.run(["cargo", "build", "--release", "-p", c["package"], "--bin", c["bin"]],
                           cwd=HERE, env=ENV, capture_output=True, text=True)
        secs = round(time.perf_counter() - t, 2)
        if p.returncode:
            raise RuntimeError(f"cargo build --bin {c['bin']} failed:\n{p.stderr[-3000:]}")
        compiled = re.findall(r"^\s*Compiling (\S+) v", p.stderr, re.M)
        rebuilt = before != os.stat(binary).st_mtime_ns or bool(compiled)
        # Anything but the contestant's own package means its dependencies changed during the
        # run (e.g. someone edited the product's tree): that build's time is not comparable.
        return {"secs": secs, "rebuilt": rebuilt, "also_compiled": [x for x in compiled if x != c["package"]]}

    def forced_build(self, c):
        os.utime(os.path.join(HERE, c["src"]))
        return self.build(c)

    def rebuild(self, c, db):
        n = self.a.n
        res = {"binary_bytes": os.path.getsize(os.path.join(TARGET, "release", c["bin"])),
               "nothing_changed": self.build(c)}
        if c["embedded"]:
            path = gen.migration_path(c["format"], max(1, n // 2), n)
            with open(path, "rb") as f:
                original = f.read()
            samples = []
            try:
                for i in range(self.a.build_reps):
                    with open(path, "wb") as f:
                        f.write(original + f"-- edited {i}\n".encode())
                    samples.append(self.build(c))
            finally:
                with open(path, "wb") as f:
                    f.write(original)
                res["restore_after_edit"] = self.build(c)
            res["edit_one"] = {"secs": median([s["secs"] for s in samples]), "samples": [s["secs"] for s in samples],
                               "rebuilt": all(s["rebuilt"] for s in samples),
                               "also_compiled": sorted({x for s in samples for x in s["also_compiled"]}),
                               "file": os.path.relpath(path, HERE)}
            log(f"  (d) {c['name']:9} edit one migration: {res['edit_one']}")
        extra_path = gen.write_extra(c["format"], n)
        add = {"file": os.path.relpath(extra_path, HERE)}
        try:
            add["build"] = self.build(c)
            rc, j, _, err = self.run(c, db, "fresh")
            add["run_rc"], add["run_applied"] = rc, j.get("applied")
            add["verify"] = self.verify(c, db, n + 1, extra=True)
            add["applied"] = rc == 0 and add["verify"]["ok"]
            if not add["applied"]:
                add["forced_build"] = self.forced_build(c)
                rc, j, _, err = self.run(c, db, "fresh")
                add["forced_run_rc"], add["forced_run_applied"] = rc, j.get("applied")
                add["forced_verify"] = self.verify(c, db, n + 1, extra=True)
                add["applied_after_forced"] = rc == 0 and add["forced_verify"]["ok"]
                if rc:
                    add["forced_error"] = (j.get("error") or err)[-400:]
        finally:
            gen.remove_extra(c["format"], n)
            res["restore_after_add"] = self.build(c)
            if not res["restore_after_add"]["rebuilt"] and c["embedded"]:
                res["restore_after_add"] = self.forced_build(c)
        res["add_file"] = add
        log(f"  (d) {c['name']:9} add N+1: build={add['build']} applied={add['applied']}"
            + (f" after forced rebuild={add.get('applied_after_forced')}" if "forced_build" in add else ""))
        return res


# ---------------------------------------------------------------------- report
def lock_versions():
    versions = {}
    with open(os.path.join(HERE, "Cargo.lock")) as f:
        for name, ver in re.findall(r'\[\[package\]\]\nname = "([^"]+)"\nversion = "([^"]+)"', f.read()):
            versions.setdefault(name, [])
            if ver not in versions[name]:
                versions[name].append(ver)
    return versions


def git_describe():
    def git(*args):
        p = subprocess.run(["git", "-C", REPO, *args], capture_output=True, text=True)
        return p.stdout.strip() if p.returncode == 0 else None
    head = git("rev-parse", "--short", "HEAD")
    dirty = git("status", "--porcelain", "--", ".", ":(exclude)benches")
    return f"{head}{' + uncommitted changes' if dirty else ''}" if head else "unknown"


def goals(r):
    """The issue's goals as ratios from this run: (goal, measured, target, met)."""
    f = {k: v["median_ms"] for k, v in r.get("fresh", {}).items()}
    nr = {k: (v.get("noop_reuse_ms") or {}).get("median") for k, v in r.get("noop", {}).items()}
    rows = []
    if f.get("pgratchet") and f.get("raw"):
        x = f["pgratchet"] / f["raw"]
        rows.append(("fresh apply: pgratchet / raw (lower bound)", f"{x:.2f}", "≤ 1.05", x <= 1.05))
    peers = {k: f[k] for k in ("refinery", "sqlx", "diesel") if f.get(k)}
    if f.get("pgratchet") and peers:
        best = min(peers, key=peers.get)
        x = f["pgratchet"] / peers[best]
        rows.append((f"fresh apply: pgratchet / fastest peer ({best})", f"{x:.2f}", "≤ 1.00", x <= 1.0))
    if nr.get("pgratchet") and nr.get("raw"):
        x = nr["pgratchet"] / nr["raw"]
        rows.append(("nothing pending, reused connection: pgratchet / raw", f"{x:.2f}", "≤ 1.10", x <= 1.10))
        for p in ("sqlx", "refinery", "diesel"):
            if nr.get(p):
                rows.append((f"nothing pending, reused connection: {p} / raw (reference)",
                             f"{nr[p] / nr['raw']:.2f}", "–", None))
    for k, trials in sorted(((k, [t for t in r.get("conc", {}).get("pgratchet", []) if t["processes"] == k])
                             for k in {t["processes"] for t in r.get("conc", {}).get("pgratchet", [])})):
        ok = all(t["exit0"] == k and t["exactly_once"] for t in trials)
        rows.append((f"{k} concurrent starters: pgratchet exit 0 and exactly once",
                     ", ".join(f"{t['exit0']}/{k}{'' if t['exactly_once'] else ' NOT exactly once'}" for t in trials),
                     f"{k}/{k}", ok))
    rb = r.get("rebuild", {})
    if rb.get("pgratchet", {}).get("edit_one") and rb.get("sqlx", {}).get("edit_one"):
        m, s = rb["pgratchet"]["edit_one"]["secs"], rb["sqlx"]["edit_one"]["secs"]
        if rb["pgratchet"]["edit_one"].get("also_compiled") or rb["sqlx"]["edit_one"].get("also_compiled"):
            rows.append(("release rebuild after editing 1 migration: pgratchet / sqlx",
                         f"{m / s:.2f}, not comparable (dependencies were recompiled too, see (d))", "≤ 1.00", None))
            m = None
        if m is not None:
            rows.append(("release rebuild after editing 1 migration: pgratchet / sqlx",
                         f"{m / s:.2f} ({m:.1f} s / {s:.1f} s)", "≤ 1.00", m <= s))
    if rb.get("pgratchet", {}).get("add_file"):
        a = rb["pgratchet"]["add_file"]
        rows.append(("added migration file: pgratchet rebuilds and applies it",
                     f"rebuilt {yn(a['build']['rebuilt'])}, applied {yn(a['applied'])}", "yes, yes",
                     a["build"]["rebuilt"] and a["applied"]))
    return rows


def c_embedded(name):
    return next((c["embedded"] for c in CONTESTANTS if c["name"] == name), True)


def yn(b):
    return {True: "yes", False: "**no**", None: "–"}[b]


def markdown(r):
    m = r["meta"]
    e = m["expected"]
    L = [f"# pgratchet vs. peers: migration runner benchmark, {m['date']}", "",
         f"Command: `{m['command']}`", "",
         f"Machine: {m['nproc']} CPUs (nproc), {m['kernel']}; load average (1/5/15 min) "
         f"{' '.join(m['loadavg_start'])} at the start, {' '.join(m.get('loadavg_end', ['?']))} at the end. "
         f"PostgreSQL {m['pg_version']} (throwaway cluster on 127.0.0.1, {', '.join(f'{k}={v}' for k, v in m['pg_settings'].items())}). "
         f"{m['rustc']}; tokio runtime {m['tokio_runtime']}.", "",
         f"Set: N={m['n']} migrations ({', '.join(f'{v} {k}' for k, v in e['counts'].items())}; "
         f"end state {e['tables']} tables, {e['columns']} columns, {e['indexes']} indexes, {e['rows']} rows). "
         f"Fresh apply: {m['runs']} runs per contestant, interleaved. Nothing pending: {m['runs']} processes × "
         f"{m['reps']} reps. Concurrency: {', '.join(map(str, m['conc']))} processes × {m['conc_trials']} trials. "
         f"Rebuild: median of {m['build_reps']}.", "",
         f"Versions (Cargo.lock): pgratchet {m['pgratchet_version']} ({m['pgratchet_git']}); "
         + ", ".join(f"{k} {'/'.join(v)}" for k, v in m["versions"].items()), ""]
    g = goals(r)
    if g:
        L += ["## Goals (ratios of medians from this run)", "", "| goal | measured | target | met |", "|---|---|---|---|"]
        L += [f"| {a} | {b} | {c} | {yn(d)} |" for a, b, c, d in g]
        L.append("")
    fr, no = r.get("fresh", {}), r.get("noop", {})
    if fr or no:
        raw_f = (fr.get("raw") or {}).get("median_ms")
        raw_n = ((no.get("raw") or {}).get("noop_reuse_ms") or {}).get("median")
        L += ["## (a) Fresh apply and (b) nothing pending, ms", "",
              "| contestant | (a) fresh apply: median (min–max) | × raw | (a) incl. process start | (a) all runs verified "
              "| (b) first check, new process | (b) connect + check + close: median (min–max) "
              "| (b) check, reused connection: median (min–max) | × raw | connect + close only |",
              "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
        for name in r["order"]:
            f, n = fr.get(name) or {}, no.get(name) or {}
            nc, nu, co = n.get("noop_connect_ms"), n.get("noop_reuse_ms"), n.get("connect_only_ms")
            rng = lambda s: "–" if not s else f"{fmt(s['median'])} ({fmt(s['min'])}–{fmt(s['max'])})"  # noqa: E731
            L.append(f"| {name} | {fmt(f.get('median_ms'))} ({fmt(f.get('min_ms'))}–{fmt(f.get('max_ms'))}) "
                     f"| {fmt(ratio(f.get('median_ms'), raw_f))} | {fmt(f.get('median_process_ms'))} "
                     f"| {yn(f.get('all_verified')) if f else '–'} | {fmt(n.get('first_check_ms'))} | {rng(nc)} | {rng(nu)} "
                     f"| {fmt(ratio((nu or {}).get('median'), raw_n))} | {fmt((co or {}).get('median'))} |")
        L += ["", "Fresh-apply runs (ms, in run order): " + "; ".join(
            f"{k} " + ", ".join(fmt(x["wall_ms"]) for x in v["runs"]) for k, v in fr.items()), ""]
    cc = r.get("conc", {})
    if cc:
        L += ["## (c) Processes started at the same instant on a fresh database", "",
              "| contestant | processes | trial | exit 0 | wall ms | last start late, ms | history = N | schema + rows exact "
              "| applied (sum) | errors (count) |",
              "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
        for name in r["order"]:
            for t in cc.get(name, []):
                gh = t["verify"]["got"]["history"]
                errs = "; ".join(f"{k} ({v})" for k, v in t["errors"].items()).replace("|", "/") or "–"
                L.append(f"| {name} | {t['processes']} | {t['trial']} | {t['exit0']}/{t['processes']} | {fmt(t['wall_ms'])} "
                         f"| {fmt(t['last_woke_late_ms'])} | {yn(gh == m['n'])} ({gh}) | {yn(t['verify']['ok'])} "
                         f"| {t['applied_sum'] if t['applied_sum'] is not None else '–'} | {errs[:400]} |")
        L.append("")
    rb = r.get("rebuild", {})
    tainted = set()
    if rb:
        L += ["## (d) Builds (`cargo build --release`, seconds)", "",
              "| contestant | binary MB | nothing changed | edit 1 migration: rebuild, median (samples) | rebuilt? "
              "| add migration N+1: build | rebuilt? | N+1 applied by that binary? | applied after a forced rebuild? |",
              "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
        for name in r["order"]:
            d = rb.get(name)
            if not d:
                continue
            ed, ad = d.get("edit_one"), d["add_file"]

            def dirty(b):
                if b and b.get("also_compiled"):
                    tainted.add(name)
                    return " ⚠"
                return ""
            L.append(f"| {name} | {d['binary_bytes'] / 1e6:.1f} | {d['nothing_changed']['secs']:.1f} "
                     + (f"| {ed['secs']:.1f}{dirty(ed)} ({', '.join(f'{s:.1f}' for s in ed['samples'])}) | {yn(ed['rebuilt'])} "
                        if ed else "| not needed (reads files at run time) | – ")
                     + f"| {ad['build']['secs']:.1f}{dirty(ad['build'])} "
                     + f"| {yn(ad['build']['rebuilt']) if c_embedded(name) else 'no (not needed)'} | {yn(ad['applied'])} "
                     f"| {yn(ad.get('applied_after_forced')) if 'forced_build' in ad else '–'} |")
        L.append("")
        if tainted:
            L += [f"⚠ These builds of {', '.join(sorted(tainted))} also compiled dependencies (their sources changed "
                  "during the run, e.g. an edit to the product's tree): their times are not comparable. Run again on a "
                  "quiet checkout.", ""]
    L += ["Notes: times are in-process (from `main()` entry: building the runner, connecting, migrating, closing) "
          "unless marked; psql's include starting psql. `raw` is tokio-postgres with a session advisory lock, one "
          "`BEGIN; sql; INSERT history; COMMIT` batch per migration, and one query when nothing is pending: the lower "
          "bound for a safe runner. `psql -1 -f` runs the concatenation in one transaction with no lock and no "
          "applied-check (a floor for the server's work; only one of concurrent starters can succeed). "
          "`pgratchet` runs `Migrations::run` on a deadpool pool of size 1 (reused check = the same pool). "
          "sqlx does not report how many it applied (applied: –). diesel links libpq dynamically (not in its size).", ""]
    return "\n".join(L)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pg-url", required=True, help="postgres://...:PORT/postgres?sslmode=disable (run.sh sets it)")
    ap.add_argument("--n", type=int, default=1000, help="migrations (default 1000)")
    ap.add_argument("--runs", type=int, default=9, help="fresh runs and noop processes per contestant (default 9)")
    ap.add_argument("--reps", type=int, default=50, help="noop repetitions per process (default 50)")
    ap.add_argument("--conc", default="16,32", help="process counts for (c), comma-separated (default 16,32)")
    ap.add_argument("--conc-trials", type=int, default=2, help="trials per process count (default 2)")
    ap.add_argument("--start-delay-ms", type=int, default=0, help="(c) start instant ahead of spawning (default 1000 + 60 per process)")
    ap.add_argument("--build-reps", type=int, default=3, help="(d) timed rebuilds per contestant (default 3)")
    ap.add_argument("--only", help="contestants, comma-separated: " + ",".join(c["name"] for c in CONTESTANTS))
    ap.add_argument("--skip", default="", help="parts to skip, comma-separated: fresh,noop,conc,rebuild")
    ap.add_argument("--out", default=os.path.join(HERE, "results"))
    ap.add_argument("--tag", default="", help="suffix of the result files: <date>-<tag>.md")
    a = ap.parse_args()
    # SIGTERM (run.sh's trap) -> SystemExit, so the finally below drops the databases and writes
    # what was measured so far.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    a.conc = [int(x) for x in a.conc.split(",") if x]
    skip = set(filter(None, a.skip.split(",")))
    unknown = skip - {"fresh", "noop", "conc", "rebuild"}
    if unknown:
        ap.error(f"unknown part(s) in --skip: {','.join(sorted(unknown))}")
    cs = CONTESTANTS
    if a.only:
        names = a.only.split(",")
        bad = set(names) - {c["name"] for c in CONTESTANTS}
        if bad:
            ap.error(f"unknown contestant(s): {','.join(sorted(bad))}")
        cs = [c for c in CONTESTANTS if c["name"] in names]
    if "fresh" in skip and not skip >= {"noop", "rebuild"}:
        log("note: noop and rebuild run on the databases the fresh part migrated; skipping them too")
        skip |= {"noop", "rebuild"}

    started = dt.datetime.now()
    meta = {"date": started.strftime("%Y-%m-%d %H:%M"), "command": " ".join(["benches/peers/run.sh", *user_args()]),
            "n": a.n, "runs": a.runs, "reps": a.reps, "conc": a.conc, "conc_trials": a.conc_trials,
            "build_reps": a.build_reps, "loadavg_start": loadavg(), "nproc": os.cpu_count(),
            "kernel": f"{platform.system()} {platform.release()}", "tokio_runtime": os.environ.get("BENCH_RT", "current_thread")}
    expected, stats = gen.generate(a.n)
    meta["expected"] = {k: v for k, v in expected.items() if k != "per_table"}

    cargo = [c for c in cs if c.get("bin")]
    # The peers have no build script, so cargo cannot see that their embedded set changed (the
    # very pitfall part (d) measures): a binary built for another --n would run a stale set.
    for c in cargo:
        if c["embedded"] and sum(stats.get(c["format"], (0, 0))) > 0:
            os.utime(os.path.join(HERE, c["src"]))
    if cargo:
        log(f"== build: cargo build --release ({', '.join(c['bin'] for c in cargo)})")
        t = time.perf_counter()
        args = [x for c in cargo for x in ("-p", c["package"], "--bin", c["bin"])]
        subprocess.run(["cargo", "build", "--release", *args], cwd=HERE, env=ENV, check=True)
        meta["initial_build_secs"] = round(time.perf_counter() - t, 1)

    pg = Cluster(a.pg_url)
    meta["pg_version"] = pg.psql("SHOW server_version")
    meta["pg_settings"] = dict(line.split("|") for line in pg.psql(
        "SELECT name, setting FROM pg_settings WHERE name IN ('fsync', 'synchronous_commit', 'shared_buffers', "
        "'max_connections') ORDER BY name").splitlines())
    meta["rustc"] = subprocess.run(["rustc", "--version"], capture_output=True, text=True).stdout.strip()
    vers = lock_versions()
    meta["pgratchet_version"] = "/".join(vers.get("pgratchet", ["?"]))
    meta["pgratchet_git"] = git_describe()
    meta["versions"] = {k: vers[k] for c in cs for k in c["crates"] if k in vers and k != "pgratchet"}

    bench = Bench(a, pg, expected)
    r = {"meta": meta, "order": [c["name"] for c in cs]}
    dbs = {}
    try:
        if "fresh" not in skip:
            log(f"== (a) fresh apply: {a.runs} runs × {len(cs)} contestants, n={a.n}")
            r["fresh"], dbs = bench.fresh(cs)
            meta["loadavg_after_fresh"] = loadavg()
        if "noop" not in skip:
            log(f"== (b) nothing pending: {a.runs} processes × {a.reps} reps")
            r["noop"] = bench.noop(cs, dbs)
        if "conc" not in skip:
            log(f"== (c) concurrent starters: {a.conc} × {a.conc_trials} trials")
            r["conc"] = bench.conc(cs)
        if "rebuild" not in skip:
            r["rebuild"] = {}
            for c in cargo:
                if c["name"] in dbs:
                    log(f"== (d) builds: {c['name']}")
                    r["rebuild"][c["name"]] = bench.rebuild(c, dbs[c["name"]])
    finally:
        for db in dbs.values():
            try:
                pg.drop(db)
            except Exception as e:  # the cluster may be gone; run.sh removes it anyway
                log(f"drop {db}: {e}")
        meta["loadavg_end"] = loadavg()
        meta["elapsed_s"] = round((dt.datetime.now() - started).total_seconds())
        os.makedirs(a.out, exist_ok=True)
        stem = os.path.join(a.out, started.strftime("%Y-%m-%d") + (f"-{a.tag}" if a.tag else ""))
        with open(stem + ".json", "w") as f:
            json.dump(r, f, indent=1)
        md = markdown(r)
        with open(stem + ".md", "w") as f:
            f.write(md)
        log(f"wrote {stem}.md and {stem}.json ({meta['elapsed_s']} s)")
    print(md)
    failed = [k for k, v in r.get("fresh", {}).items() if not v["all_verified"]]
    failed += [k for k, v in r.get("noop", {}).items() if not v["all_ok"]]
    if failed:
        log(f"contestants that failed a fresh run or a noop process: {sorted(set(failed))}")


if __name__ == "__main__":
    main()
