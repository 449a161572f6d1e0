#!/usr/bin/env python3
"""The psql reference, behind the same command line and JSON line as the Rust contestants.

fresh / concurrent-child: `psql -X -q -v ON_ERROR_STOP=1 -1 -f migrations/concat/all.sql`: all
migrations and a psql_history row each, in one transaction, in one process. No lock and no
"already applied" check: a floor for the server's work, not a runner (in the concurrency test
only one process can succeed). wall_ms includes starting psql.
noop: per repetition, start psql and run one query on psql_history (process + connect + query);
no reused-connection variant.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def summary(xs):
    xs = sorted(xs)
    return {"median": round(statistics.median(xs), 3), "min": round(xs[0], 3), "max": round(xs[-1], 3),
            "mean": round(statistics.fmean(xs), 3), "reps": len(xs)}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--url", required=True)
    ap.add_argument("--mode", required=True, choices=["fresh", "noop", "concurrent-child"])
    ap.add_argument("--reps", type=int, default=50)
    ap.add_argument("--start-at", type=int)
    ap.add_argument("--dir", default=os.path.join(HERE, "migrations", "concat"))
    a = ap.parse_args()
    script = os.path.join(a.dir, "all.sql")
    with open(script, encoding="utf-8") as f:
        n = sum(1 for line in f if line.startswith("-- migration "))
    if a.mode == "noop":
        samples = []
        for _ in range(max(a.reps, 1)):
            t = time.perf_counter()
            p = subprocess.run(["psql", "-X", "-Atq", "-c", "SELECT max(version) FROM psql_history", a.url],
                               capture_output=True, text=True)
            if p.returncode:
                print(json.dumps({"contestant": "psql", "mode": "noop", "ok": False, "error": p.stderr.strip()}))
                sys.exit(1)
            samples.append((time.perf_counter() - t) * 1000)
        print(json.dumps({"contestant": "psql", "mode": "noop", "ok": True, "n": n,
                          "first_check_ms": round(samples[0], 3), "noop_connect_ms": summary(samples),
                          "noop_reuse_ms": None, "connect_only_ms": None}))
        return
    if a.start_at:
        delay = a.start_at / 1000 - time.time()
        if delay > 0:
            time.sleep(delay)
    woke = int(time.time() * 1000)
    t = time.perf_counter()
    p = subprocess.run(["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-1", "-f", script, a.url],
                       capture_output=True, text=True)
    wall = round((time.perf_counter() - t) * 1000, 3)
    line = {"contestant": "psql", "mode": a.mode, "ok": p.returncode == 0, "n": n,
            "applied": n if p.returncode == 0 else None, "wall_ms": wall, "woke_at_ms": woke}
    if p.returncode:
        line["error"] = " ".join(p.stderr.split())[:500]
        print(p.stderr, file=sys.stderr)
    print(json.dumps(line))
    sys.exit(1 if p.returncode else 0)


if __name__ == "__main__":
    main()
