#!/usr/bin/env python3
"""What the review (feature `lint`) costs at build time, beside sqlx, in one run.

    build_cost.py [--n 1000] [--reps 5] [--tag lint-build] [--out DIR]

On the benchmark's generated set (gen.py, N migrations, no `.migrate.toml`: every file is
reviewed, everything warns, nothing is denied), the release rebuild after editing one migration
(a comment appended to a middle file, as part (d) of bench.py does), for:
  pgratchet                  the contestant as a service builds it (feature `lint` off)
  pgratchet+lint             the same with `pgratchet/lint`: the macro reviews all N files
  pgratchet+lint, bo3        the same with proc macros built at opt-level 3
                             (CARGO_PROFILE_RELEASE_BUILD_OVERRIDE_OPT_LEVEL=3)
  sqlx                       `sqlx::migrate!` on the same set (the goal's reference)
Proc macros build at opt-level 0 by default, in release too (cargo's build-override), so the
first three rows measure the review where users meet it. Rounds are interleaved (each round
builds every variant once, in a rotating order); a variant's first build after a switch is not
timed. Also times the first build of the lint variants' extra crates (squawk, toml) from clean
artifacts: pgratchet-core's debug build with the feature after the one without, in a scratch
target dir (what the feature adds to CI).

Writes OUT/<date>-<tag>.md and .json and prints the markdown. Python 3 standard library only;
no database.
"""
import argparse
import datetime as dt
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import gen  # noqa: E402

TARGET = os.path.join(HERE, "target")

VARIANTS = [
    {"name": "pgratchet", "package": "pgratchet-contestant", "bin": "pgratchet", "format": "pgratchet",
     "features": [], "env": {}},
    {"name": "pgratchet+lint", "package": "pgratchet-contestant", "bin": "pgratchet", "format": "pgratchet",
     "features": ["lint"], "env": {}},
    {"name": "pgratchet+lint, bo3", "package": "pgratchet-contestant", "bin": "pgratchet", "format": "pgratchet",
     "features": ["lint"], "env": {"CARGO_PROFILE_RELEASE_BUILD_OVERRIDE_OPT_LEVEL": "3"}},
    {"name": "sqlx", "package": "bench-peers", "bin": "sqlx", "format": "sqlx", "features": [], "env": {}},
]


def log(*a):
    print(*a, file=sys.stderr, flush=True)


def build(variant, target=TARGET):
    env = dict(os.environ, CARGO_TARGET_DIR=target, **variant["env"])
    cmd = ["cargo", "build", "--release", "-p", variant["package"], "--bin", variant["bin"]]
    if variant["features"]:
        cmd += ["--features", ",".join(variant["features"])]
    started = time.perf_counter()
    p = subprocess.run(cmd, cwd=HERE, env=env, capture_output=True, text=True)
    secs = time.perf_counter() - started
    if p.returncode:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{p.stderr[-3000:]}")
    compiled = re.findall(r"^\s*Compiling (\S+) v", p.stderr, re.M)
    return round(secs, 2), compiled


def loadavg():
    try:
        return " ".join(open("/proc/loadavg").read().split()[:3])
    except OSError:
        return "?"


def lock_version(name):
    with open(os.path.join(HERE, "Cargo.lock")) as f:
        found = re.findall(r'name = "' + re.escape(name) + r'"\nversion = "([^"]+)"', f.read())
    return "/".join(found) or "?"


def first_build_of_the_feature():
    """Seconds to build what the feature adds to the product's own debug build (what CI pays):
    pgratchet-core without the feature, then with it, in a scratch target dir."""
    repo = os.path.dirname(os.path.dirname(HERE))
    scratch = tempfile.mkdtemp(prefix="pgratchet-lint-cost-")
    env = dict(os.environ, CARGO_TARGET_DIR=scratch)
    try:
        subprocess.run(["cargo", "build", "--locked", "-p", "pgratchet-core"], cwd=repo, env=env,
                       check=True, capture_output=True)
        started = time.perf_counter()
        p = subprocess.run(["cargo", "build", "--locked", "-p", "pgratchet-core", "--features", "lint"],
                           cwd=repo, env=env, check=True, capture_output=True, text=True)
        secs = round(time.perf_counter() - started, 1)
        return {"secs": secs, "compiled": sorted(set(re.findall(r"^\s*Compiling (\S+) v", p.stderr, re.M)))}
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--reps", type=int, default=5, help="timed rebuilds per variant (default 5)")
    ap.add_argument("--tag", default="lint-build")
    ap.add_argument("--out", default=os.path.join(HERE, "results"))
    ap.add_argument("--skip-first-build", action="store_true", help="do not time the feature's first build")
    a = ap.parse_args()

    started = dt.datetime.now()
    gen.generate(a.n)
    meta = {"date": started.strftime("%Y-%m-%d %H:%M"), "n": a.n, "reps": a.reps, "nproc": os.cpu_count(),
            "kernel": f"{platform.system()} {platform.release()}", "loadavg_start": loadavg(),
            "rustc": subprocess.run(["rustc", "--version"], capture_output=True, text=True).stdout.strip(),
            "git": subprocess.run(["git", "describe", "--always", "--dirty"], cwd=HERE, capture_output=True,
                                  text=True).stdout.strip(),
            "versions": {k: lock_version(k) for k in ("squawk-linter", "sqlx", "toml")}}

    files = {fmt: gen.migration_path(fmt, max(1, a.n // 2), a.n) for fmt in {v["format"] for v in VARIANTS}}
    originals = {fmt: open(path, "rb").read() for fmt, path in files.items()}
    samples = {v["name"]: [] for v in VARIANTS}
    try:
        for v in VARIANTS:
            log(f"== warm: {v['name']}")
            build(v)
        for round_ in range(a.reps):
            order = VARIANTS[round_ % len(VARIANTS):] + VARIANTS[:round_ % len(VARIANTS)]
            for v in order:
                build(v)  # back to this variant's features: not timed
                with open(files[v["format"]], "wb") as f:
                    f.write(originals[v["format"]] + f"-- edited {round_}\n".encode())
                secs, compiled = build(v)
                log(f"  round {round_} {v['name']:20} {secs:6.2f} s  compiled {compiled}")
                samples[v["name"]].append({"secs": secs, "compiled": compiled})
    finally:
        for fmt, path in files.items():
            with open(path, "wb") as f:
                f.write(originals[fmt])
    if not a.skip_first_build:
        log("== first build of the feature's crates (scratch target)")
        meta["first_build"] = first_build_of_the_feature()
    meta["loadavg_end"] = loadavg()
    meta["elapsed_s"] = round((dt.datetime.now() - started).total_seconds())

    med = {name: statistics.median(s["secs"] for s in xs) for name, xs in samples.items()}
    lines = [
        f"# The review's build cost, {meta['date']}",
        "",
        f"Command: `benches/peers/build_cost.py --n {a.n} --reps {a.reps}`",
        "",
        f"Machine: {meta['nproc']} CPUs, {meta['kernel']}; load average {meta['loadavg_start']} at the start, "
        f"{meta['loadavg_end']} at the end. {meta['rustc']}. pgratchet at {meta['git']}; "
        + ", ".join(f"{k} {v}" for k, v in meta["versions"].items()) + ".",
        "",
        f"Release rebuild after editing one of {a.n} migrations (a comment appended), median of {a.reps} "
        "interleaved rounds; no `.migrate.toml`, so every file is reviewed and nothing is denied.",
        "",
        "| variant | rebuild, s: median (samples) | − pgratchet | × sqlx |",
        "|---|---:|---:|---:|",
    ]
    for v in VARIANTS:
        xs = [s["secs"] for s in samples[v["name"]]]
        lines.append(f"| {v['name']} | {med[v['name']]:.2f} ({', '.join(f'{x:.2f}' for x in xs)}) | "
                     f"{med[v['name']] - med['pgratchet']:+.2f} | {med[v['name']] / med['sqlx']:.2f} |")
    if "first_build" in meta:
        fb = meta["first_build"]
        lines += ["", f"First debug build of what the feature adds to pgratchet-core (after its default build, "
                      f"in a scratch target; what CI pays once): {fb['secs']:.0f} s ({', '.join(fb['compiled'])})."]
    md = "\n".join(lines) + "\n"
    os.makedirs(a.out, exist_ok=True)
    stem = os.path.join(a.out, started.strftime("%Y-%m-%d") + f"-{a.tag}")
    with open(stem + ".json", "w") as f:
        json.dump({"meta": meta, "samples": samples, "median": med}, f, indent=1)
    with open(stem + ".md", "w") as f:
        f.write(md)
    log(f"wrote {stem}.md and .json ({meta['elapsed_s']} s)")
    print(md)


if __name__ == "__main__":
    main()
