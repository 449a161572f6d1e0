#!/usr/bin/env bash
# The peers benchmark, end to end: benches/peers/run.sh [options]   (--help lists them)
#
# Starts one throwaway PostgreSQL cluster (initdb in a new /tmp/pgratchet-bench-pg.* directory,
# as user postgres when run as root; 127.0.0.1 on the first free port of 55440-55449; trust
# auth; fsync and everything else at their defaults), runs bench.py against it (generate the
# set, build every contestant in release, measure, write results/), and stops and removes the
# cluster when it exits, however it exits.
#
# Needs cargo, python3 >= 3.8 (standard library only), psql, PostgreSQL server binaries
# (newest /usr/lib/postgresql/*/bin, or PGBIN=...), libpq (diesel links it).
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

for arg in "$@"; do
  case "$arg" in -h|--help) exec python3 "$here/bench.py" --pg-url unused --help;; esac
done

PGBIN=${PGBIN:-$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)}
[ -x "${PGBIN:-}/initdb" ] || { echo "run.sh: no PostgreSQL server binaries (set PGBIN=.../bin)" >&2; exit 2; }
for tool in cargo python3 psql; do
  command -v "$tool" >/dev/null || { echo "run.sh: $tool is missing" >&2; exit 2; }
done

as_pg() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }

dir=$(mktemp -d /tmp/pgratchet-bench-pg.XXXXXX)
[ "$(id -u)" = 0 ] && chown postgres:postgres "$dir"
chmod 700 "$dir"
child=
cleanup() {
  local rc=$?
  trap - EXIT INT TERM HUP
  if [ -n "$child" ] && kill -0 "$child" 2>/dev/null; then
    kill -TERM "$child" 2>/dev/null || true   # bench.py writes what it has, then exits
    wait "$child" 2>/dev/null || true
  fi
  if [ -f "$dir/data/postmaster.pid" ]; then
    as_pg "$PGBIN/pg_ctl" -D "$dir/data" -m fast -w -t 60 stop >/dev/null 2>&1 \
      || as_pg "$PGBIN/pg_ctl" -D "$dir/data" -m immediate -w -t 30 stop >/dev/null 2>&1 || true
  fi
  if [ "$rc" != 0 ] && [ -f "$dir/server.log" ]; then
    echo "run.sh: exit $rc; last lines of the server log:" >&2
    tail -n 15 "$dir/server.log" >&2 || true
  fi
  rm -rf "$dir"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
trap 'exit 129' HUP

as_pg "$PGBIN/initdb" -D "$dir/data" -U postgres --auth=trust -E UTF8 --locale=C.UTF-8 >"$dir/initdb.log" 2>&1 \
  || { cat "$dir/initdb.log" >&2; exit 1; }

listening() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
port=
for p in $(seq 55440 55449); do
  listening "$p" && continue
  if as_pg "$PGBIN/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 \
       -o "-c listen_addresses=127.0.0.1 -c port=$p -c unix_socket_directories=$dir" start >/dev/null 2>&1; then
    port=$p
    break
  fi
done
[ -n "$port" ] || { echo "run.sh: no free port in 55440-55449 (or the server did not start)" >&2; exit 1; }
echo "run.sh: $("$PGBIN/postgres" --version) on 127.0.0.1:$port, data in $dir" >&2

cd "$here"
# In the background and waited for, so a signal to this script runs the trap at once.
python3 "$here/bench.py" --pg-url "postgres://postgres@127.0.0.1:$port/postgres?sslmode=disable" "$@" &
child=$!
wait "$child"
