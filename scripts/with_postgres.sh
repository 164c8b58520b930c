#!/usr/bin/env bash
# Runs a command against a throwaway PostgreSQL cluster: initdb in a temp dir (through
# runuser -u postgres when root, since initdb refuses root), start on a free port,
# export DATABASE_URL, run the command, stop and delete the cluster whatever happens.
set -euo pipefail

PGBIN=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
if [ -z "$PGBIN" ]; then
  echo "PostgreSQL is not installed (run scripts/system_deps.sh)" >&2
  exit 1
fi
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
DIR=$(mktemp -d /tmp/flywheel-pg.XXXXXX)
as_pg() {
  if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}
if [ "$(id -u)" -eq 0 ]; then
  id postgres >/dev/null 2>&1 || useradd --system --home-dir "$DIR" postgres
  chown postgres "$DIR"
fi
chmod 700 "$DIR"
cleanup() {
  as_pg "$PGBIN/pg_ctl" -D "$DIR/data" -m immediate stop >/dev/null 2>&1 || true
  rm -rf "$DIR"
}
trap cleanup EXIT INT TERM

as_pg "$PGBIN/initdb" -D "$DIR/data" -U postgres -A trust -E UTF8 --no-locale >/dev/null
as_pg "$PGBIN/pg_ctl" -D "$DIR/data" -l "$DIR/pg.log" -w -t 60 \
  -o "-p $PORT -k $DIR -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=200" \
  start >/dev/null
export DATABASE_URL="postgres://postgres@127.0.0.1:$PORT/flywheel"
export PGHOST=127.0.0.1 PGPORT=$PORT PGUSER=postgres
"$PGBIN/createdb" -h 127.0.0.1 -p "$PORT" -U postgres flywheel
echo "PostgreSQL $($PGBIN/postgres --version | awk '{print $3}') on port $PORT"
set +e
"$@"
status=$?
set -e
exit $status
