#!/usr/bin/env python3
"""Writes the benchmark's migration set: the same SQL under each contestant's file naming.

    gen.py [--n 1000] [--out DIR]
        DIR/<format>/... for every format in LAYOUTS, DIR/concat/all.sql (the psql reference:
        every migration plus its psql_history row, for `psql -1 -f`) and DIR/expected.json
        (the end state a correct run leaves). Deterministic. A file whose content is already
        right is not rewritten (its mtime, and so cargo's fingerprints, stay put); files that
        do not belong to the set (left over from a larger --n) are removed.
    gen.py --extra FORMAT [--n N] [--out DIR]
        Writes migration N+1 (CREATE TABLE bench_extra) in FORMAT and prints its path.

Python 3 standard library only. DIR defaults to migrations/ beside this file.
"""
import argparse
import json
import os
import shutil
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_OUT = os.path.join(HERE, "migrations")

# format -> path of migration (version, name) inside DIR/<format>/
LAYOUTS = {
    "pgratchet": lambda v, name: f"{v}_{name}.sql",
    "refinery": lambda v, name: f"V{v}__{name}.sql",
    "sqlx": lambda v, name: f"{v}_{name}.sql",
    "diesel": lambda v, name: f"{v:014d}_{name}/up.sql",
    "raw": lambda v, name: f"{v}_{name}.sql",
}

EXTRA_NAME = "extra"
EXTRA_SQL = "CREATE TABLE bench_extra (id integer PRIMARY KEY);\n"


def migration_set(n):
    """[(version, name, sql)] and the expected end state of applying all of them once."""
    out = []
    tables = {}  # table -> {"rows": .., "amount": .., "columns": ..}
    current = None
    for v in range(1, n + 1):
        if v % 50 == 0:
            name = f"do_t{current}"
            sql = (
                f"-- {v}: a DO block; the semicolons inside its body must not split it\n"
                "DO $body$\n"
                "DECLARE\n"
                "    i integer;\n"
                "BEGIN\n"
                "    FOR i IN 1..2 LOOP\n"
                f"        INSERT INTO bench_t{current} (label, amount) VALUES (format('do-%s-%s', {v}, i), i);\n"
                "    END LOOP;\n"
                f"    IF (SELECT count(*) FROM bench_t{current}) < 0 THEN\n"
                "        RAISE EXCEPTION 'impossible; a negative count';\n"
                "    END IF;\n"
                "END\n"
                "$body$;\n"
            )
            tables[current]["rows"] += 2
            tables[current]["amount"] += 1 + 2
        elif v % 3 == 1:
            current = v
            name = f"create_t{v}"
            sql = (
                f"-- {v}: table bench_t{v}\n"
                f"CREATE TABLE bench_t{v} (\n"
                "    id bigserial PRIMARY KEY,\n"
                "    label text NOT NULL,\n"
                "    amount integer NOT NULL DEFAULT 0\n"
                ");\n"
                f"CREATE INDEX bench_t{v}_label ON bench_t{v} (label);\n"
            )
            tables[v] = {"rows": 0, "amount": 0, "columns": 3}
        elif v % 3 == 2:
            name = f"alter_t{current}_c{v}"
            sql = f"ALTER TABLE bench_t{current} ADD COLUMN c{v} integer NOT NULL DEFAULT {v};\n"
            tables[current]["columns"] += 1
        else:
            name = f"insert_t{current}"
            sql = (
                f"INSERT INTO bench_t{current} (label, amount) VALUES\n"
                f"    ('v{v}-a', 1),\n"
                f"    ('v{v}-b', 2),\n"
                f"    ('v{v}-c; a semicolon in a string', 3),\n"
                f"    ('v{v}-d', 4);\n"
            )
            tables[current]["rows"] += 4
            tables[current]["amount"] += 1 + 2 + 3 + 4
        out.append((v, name, sql))
    expected = {
        "tables": len(tables),
        "columns": sum(t["columns"] for t in tables.values()),
        "indexes": 2 * len(tables),  # primary key + label index
        "rows": sum(t["rows"] for t in tables.values()),
        "amount": sum(t["amount"] for t in tables.values()),
        "per_table": {f"bench_t{k}": [t["rows"], t["amount"]] for k, t in tables.items()},
    }
    counts = {}
    for _, name, _ in out:
        kind = name.split("_")[0]
        counts[kind] = counts.get(kind, 0) + 1
    expected["counts"] = counts
    return out, expected


def concat(migrations):
    parts = [
        "CREATE TABLE psql_history (version bigint PRIMARY KEY, name text NOT NULL,\n"
        "    applied_at timestamptz NOT NULL DEFAULT now());\n"
    ]
    for v, name, sql in migrations:
        parts.append(f"\n-- migration {v}\n{sql}INSERT INTO psql_history (version, name) VALUES ({v}, '{name}');\n")
    return "".join(parts)


def write_if_changed(path, text):
    """Writes text to path unless it already holds exactly that. True when it wrote."""
    try:
        with open(path, encoding="utf-8") as f:
            if f.read() == text:
                return False
    except FileNotFoundError:
        pass
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)
    return True


def sync_dir(root, files):
    """Makes root hold exactly files ({relative path: text}); returns (written, removed)."""
    written = sum(write_if_changed(os.path.join(root, rel), text) for rel, text in files.items())
    keep_dirs = {os.path.dirname(rel) for rel in files}
    removed = 0
    for dirpath, dirnames, filenames in os.walk(root, topdown=False):
        rel_dir = os.path.relpath(dirpath, root)
        rel_dir = "" if rel_dir == "." else rel_dir
        for f in filenames:
            if os.path.join(rel_dir, f) not in files:
                os.remove(os.path.join(dirpath, f))
                removed += 1
        if rel_dir and rel_dir not in keep_dirs and not os.listdir(dirpath):
            os.rmdir(dirpath)
    return written, removed


def generate(n, out=DEFAULT_OUT):
    migrations, expected = migration_set(n)
    stats = {}
    for fmt, layout in LAYOUTS.items():
        stats[fmt] = sync_dir(os.path.join(out, fmt), {layout(v, name): sql for v, name, sql in migrations})
    stats["concat"] = sync_dir(os.path.join(out, "concat"), {"all.sql": concat(migrations)})
    write_if_changed(os.path.join(out, "expected.json"), json.dumps(dict(expected, n=n), indent=1) + "\n")
    return expected, stats


def migration_path(fmt, v, n, out=DEFAULT_OUT):
    """Path of migration v of an n-migration set in fmt (v = n + 1: the extra one)."""
    if v == n + 1:
        return os.path.join(out, fmt, LAYOUTS[fmt](v, EXTRA_NAME))
    name = next(name for ver, name, _ in migration_set(v)[0] if ver == v)
    return os.path.join(out, fmt, LAYOUTS[fmt](v, name))


def write_extra(fmt, n, out=DEFAULT_OUT):
    path = migration_path(fmt, n + 1, n, out)
    write_if_changed(path, EXTRA_SQL)
    return path


def remove_extra(fmt, n, out=DEFAULT_OUT):
    path = migration_path(fmt, n + 1, n, out)
    if os.path.exists(path):
        os.remove(path)
    top = os.path.join(out, fmt, LAYOUTS[fmt](n + 1, EXTRA_NAME).split("/")[0])
    if os.path.isdir(top):
        shutil.rmtree(top)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--out", default=DEFAULT_OUT)
    ap.add_argument("--extra", metavar="FORMAT", choices=sorted(LAYOUTS))
    a = ap.parse_args()
    if a.extra:
        print(write_extra(a.extra, a.n, a.out))
        return
    expected, stats = generate(a.n, a.out)
    changed = {k: v for k, v in stats.items() if v != (0, 0)}
    print(f"gen.py: n={a.n} {expected['counts']} in {a.out}: "
          + (", ".join(f"{k} {w} written {r} removed" for k, (w, r) in changed.items()) or "unchanged"),
          file=sys.stderr)


if __name__ == "__main__":
    main()
