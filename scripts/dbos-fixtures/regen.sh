#!/usr/bin/env bash
# Regenerate the committed DBOS system-schema fixtures in tests/fixtures/dbos/.
#
# For every pinned SDK version this script:
#   1. installs that exact SDK into its own venv / npm dir under a temp dir,
#   2. lets the real SDK create its system schema in a fresh database of a
#      throwaway Postgres 15 cluster (launch, register a queue, shut down),
#   3. dumps the `dbos` schema (DDL) plus the rows of dbos.dbos_migrations,
#   4. rewrites the dump so it loads with ONE simple-query batch
#      (no psql meta-commands, no COPY ... FROM stdin, session settings reset),
#   5. loads the result into empty databases (psql -f, and a single
#      simple-query call) and checks it reproduces the live schema exactly.
#
# Usage: scripts/dbos-fixtures/regen.sh
# Env:   PG_BIN   directory of the Postgres 15 binaries (default /usr/lib/postgresql/15/bin)
#        PYTHON   python used to create venvs (default python3)
#        OUT_DIR  where fixtures are written (default <repo>/tests/fixtures/dbos)
#        KEEP_TMP=1 keeps the temp dir (cluster is still stopped) for debugging
#
# Must run as root (the cluster runs as the `postgres` OS user via runuser) or
# as a non-root user that can run initdb itself. Needs PyPI and npm access.
set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_ROOT=$(cd "$SCRIPT_DIR/../.." && pwd)
OUT_DIR=${OUT_DIR:-$REPO_ROOT/tests/fixtures/dbos}
PG_BIN=${PG_BIN:-/usr/lib/postgresql/15/bin}
PYTHON=${PYTHON:-python3}

# name|kind|package spec|min migration|max migration
# (the bounds document why each version is pinned; a mismatch fails the run)
SDKS=(
  "py-3.4.0|py|dbos==3.4.0|100|999999"
  "py-2.31.1|py|dbos==2.31.1|100|999999"
  "py-2.29.0|py|dbos==2.29.0|1|99"
  "ts-5.3.0|ts|@dbos-inc/dbos-sdk@5.3.0|100|999999"
)

log() { printf '[regen] %s\n' "$*" >&2; }
die() { printf '[regen] ERROR: %s\n' "$*" >&2; exit 1; }

for tool in initdb pg_ctl pg_dump psql createdb; do
  [[ -x "$PG_BIN/$tool" ]] || die "$PG_BIN/$tool not found (set PG_BIN)"
done
command -v npm >/dev/null || die "npm not found"
command -v "$PYTHON" >/dev/null || die "$PYTHON not found"

START_TS=$SECONDS
WORK=$(mktemp -d /tmp/dbos-fixtures.XXXXXX)
chmod 755 "$WORK"
PGDATA_DIR=$WORK/pgdata
PGSOCK_DIR=$WORK/sock
PGLOG=$WORK/postgres.log

# Run a server-side command as the cluster owner.
if [[ $(id -u) -eq 0 ]]; then
  PG_OWNER=postgres
  as_owner() { runuser -u "$PG_OWNER" -- "$@"; }
else
  PG_OWNER=$(id -un)
  as_owner() { "$@"; }
fi

# Background SDK installs still running when we exit are stopped (whole process tree).
pids=()
kill_tree() {
  local child
  for child in $(ps -o pid= --ppid "$1" 2>/dev/null); do kill_tree "$child"; done
  kill "$1" 2>/dev/null || true
}

cleanup() {
  local rc=$?
  local p
  for p in "${pids[@]}"; do kill_tree "$p"; done
  if [[ -f "$PGDATA_DIR/postmaster.pid" ]]; then
    as_owner "$PG_BIN/pg_ctl" -D "$PGDATA_DIR" -m fast -w stop >/dev/null 2>&1 || true
  fi
  if [[ "${KEEP_TMP:-0}" == 1 ]]; then
    log "keeping $WORK"
  else
    rm -rf "$WORK"
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---------------------------------------------------------------- cluster ---
PORT=$("$PYTHON" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()')
mkdir -p "$PGDATA_DIR" "$PGSOCK_DIR"
chown "$PG_OWNER" "$PGDATA_DIR" "$PGSOCK_DIR"
touch "$PGLOG" && chown "$PG_OWNER" "$PGLOG"

log "initdb (port $PORT, temp dir $WORK)"
as_owner "$PG_BIN/initdb" -D "$PGDATA_DIR" -U postgres --auth=trust \
  --encoding=UTF8 --locale=C.UTF-8 >"$WORK/initdb.log" 2>&1 \
  || { cat "$WORK/initdb.log" >&2; die "initdb failed"; }
as_owner "$PG_BIN/pg_ctl" -D "$PGDATA_DIR" -l "$PGLOG" -w \
  -o "-c listen_addresses=127.0.0.1 -p $PORT -k $PGSOCK_DIR -c fsync=off" start >/dev/null \
  || { cat "$PGLOG" >&2; die "postgres did not start"; }

export PGHOST=127.0.0.1 PGPORT=$PORT PGUSER=postgres
unset PGPASSWORD PGDATABASE PGSERVICE PGOPTIONS || true
db_url() { printf 'postgresql://postgres@127.0.0.1:%s/%s' "$PORT" "$1"; }
q() { "$PG_BIN/psql" -X -At -v ON_ERROR_STOP=1 -d "$1" -c "$2"; }

# ------------------------------------------------------------ SDK installs ---
# Installs run in parallel; each gets its own directory under $WORK.
install_sdk() {
  local name=$1 kind=$2 spec=$3 dir=$WORK/sdk/$1
  mkdir -p "$dir"
  if [[ $kind == py ]]; then
    "$PYTHON" -m venv "$dir/venv" &&
      "$dir/venv/bin/pip" install --quiet --disable-pip-version-check "$spec"
  else
    (cd "$dir" && printf '{"name":"dbos-fixture-%s","private":true}\n' "$name" >package.json &&
      npm install --silent --no-audit --no-fund "$spec")
  fi
}

log "installing SDKs: ${SDKS[*]}"
for entry in "${SDKS[@]}"; do
  IFS='|' read -r name kind spec _ _ <<<"$entry"
  install_sdk "$name" "$kind" "$spec" >"$WORK/install-$name.log" 2>&1 &
  pids+=("$!")
done
for i in "${!pids[@]}"; do
  if ! wait "${pids[$i]}"; then
    cat "$WORK/install-${SDKS[$i]%%|*}.log" >&2
    die "install of ${SDKS[$i]} failed"
  fi
done

# --------------------------------------------------------- schema creators ---
cat >"$WORK/create_schema.py" <<'PY'
"""Let the installed DBOS Python SDK create its system schema, then exit."""
import os
import sys

from dbos import DBOS

url = os.environ["FIXTURE_SYSTEM_DATABASE_URL"]
DBOS(config={"name": "dbos-fixture-app", "system_database_url": url})
DBOS.listen_queues([])  # never dequeue anything while we are up
DBOS.launch()
try:
    if hasattr(DBOS, "register_queue"):  # DB-backed queues (2.x late, 3.x)
        DBOS.register_queue("fixture_queue", worker_concurrency=2)
finally:
    DBOS.destroy()
sys.exit(0)
PY

cat >"$WORK/create_schema.cjs" <<'JS'
// Let the installed DBOS TypeScript SDK create its system schema, then exit.
const { DBOS } = require("@dbos-inc/dbos-sdk");

async function main() {
  DBOS.setConfig({
    name: "dbos-fixture-app",
    systemDatabaseUrl: process.env.FIXTURE_SYSTEM_DATABASE_URL,
  });
  await DBOS.launch();
  try {
    if (typeof DBOS.registerQueue === "function") {
      await DBOS.registerQueue("fixture_queue", { workerConcurrency: 2 });
    }
  } finally {
    await DBOS.shutdown();
  }
}

main().then(
  () => process.exit(0),
  (err) => {
    console.error(err && err.message ? err.message : err);
    process.exit(1);
  },
);
JS

# Loads a file with ONE simple-query call (what tokio-postgres batch_execute
# does); uses psycopg from the first Python venv.
cat >"$WORK/simple_query_load.py" <<'PY'
import sys

import psycopg

url, path = sys.argv[1], sys.argv[2]
with open(path, encoding="utf-8") as f:
    sql = f.read()
with psycopg.connect(url, autocommit=True) as conn:
    # No parameters => psycopg uses the simple query protocol (PQsendQuery),
    # so the whole file travels as one multi-statement query string.
    conn.execute(sql)
PY

# Canonical description of a dbos schema, for comparing live vs. reloaded.
SCHEMA_SIGNATURE_SQL="
SELECT 'col ' || table_name || '.' || column_name || ' ' || data_type || ' ' ||
       is_nullable || ' ' || coalesce(column_default, '-')
  FROM information_schema.columns WHERE table_schema = 'dbos'
UNION ALL
SELECT 'idx ' || indexname || ' ' || indexdef FROM pg_indexes WHERE schemaname = 'dbos'
UNION ALL
SELECT 'con ' || conrelid::regclass || ' ' || conname || ' ' || pg_get_constraintdef(oid)
  FROM pg_constraint WHERE connamespace = 'dbos'::regnamespace
UNION ALL
SELECT 'fn ' || p.oid::regprocedure || ' ' || md5(pg_get_functiondef(p.oid))
  FROM pg_proc p WHERE p.pronamespace = 'dbos'::regnamespace
UNION ALL
SELECT 'trg ' || tgrelid::regclass || ' ' || tgname FROM pg_trigger
  WHERE NOT tgisinternal AND tgrelid IN (SELECT oid FROM pg_class WHERE relnamespace = 'dbos'::regnamespace)
UNION ALL
SELECT 'mig ' || version FROM dbos.dbos_migrations
ORDER BY 1"

FIRST_PY_VENV=""
for entry in "${SDKS[@]}"; do
  IFS='|' read -r name kind _ _ _ <<<"$entry"
  if [[ $kind == py && -z $FIRST_PY_VENV ]]; then FIRST_PY_VENV=$WORK/sdk/$name/venv; fi
done
[[ -n $FIRST_PY_VENV ]] || die "need at least one Python SDK (its psycopg is used for checks)"

mkdir -p "$OUT_DIR"
summary=()

for entry in "${SDKS[@]}"; do
  IFS='|' read -r name kind spec min_mig max_mig <<<"$entry"
  db="src_${name//[.-]/_}"
  sdk_dir=$WORK/sdk/$name
  log "$name: creating schema with $spec"
  "$PG_BIN/createdb" "$db"

  if [[ $kind == py ]]; then
    pkg_version=$("$sdk_dir/venv/bin/python" -c 'import importlib.metadata as m; print(m.version("dbos"))')
    FIXTURE_SYSTEM_DATABASE_URL=$(db_url "$db") \
      "$sdk_dir/venv/bin/python" "$WORK/create_schema.py" >"$WORK/$name.run.log" 2>&1 \
      || { cat "$WORK/$name.run.log" >&2; die "$name: SDK run failed"; }
    pkg_label="Python package dbos==$pkg_version (PyPI)"
  else
    pkg_version=$(node -p 'require(process.argv[1]).version' "$sdk_dir/node_modules/@dbos-inc/dbos-sdk/package.json")
    cp "$WORK/create_schema.cjs" "$sdk_dir/"
    (cd "$sdk_dir" && FIXTURE_SYSTEM_DATABASE_URL=$(db_url "$db") node create_schema.cjs) \
      >"$WORK/$name.run.log" 2>&1 \
      || { cat "$WORK/$name.run.log" >&2; die "$name: SDK run failed"; }
    pkg_label="npm package @dbos-inc/dbos-sdk@$pkg_version"
  fi
  [[ "$spec" == *"$pkg_version" ]] || die "$name: installed version $pkg_version does not match $spec"

  mig=$(q "$db" "SELECT max(version) FROM dbos.dbos_migrations")
  [[ $mig =~ ^[0-9]+$ ]] || die "$name: no migration level found"
  ((mig >= min_mig && mig <= max_mig)) || die "$name: migration level $mig outside expected [$min_mig, $max_mig]"
  has_queues=$(q "$db" "SELECT to_regclass('dbos.queues') IS NOT NULL")
  queue_rows=0
  if [[ $has_queues == t ]]; then queue_rows=$(q "$db" "SELECT count(*) FROM dbos.queues WHERE name = 'fixture_queue'"); fi
  log "$name: migration level $mig, dbos.queues present: $has_queues (fixture_queue rows: $queue_rows)"

  # ---- dump
  "$PG_BIN/pg_dump" --schema-only --no-owner --no-privileges --schema=dbos -d "$db" >"$WORK/$name.schema.sql"
  "$PG_BIN/pg_dump" --data-only --column-inserts --no-owner --no-privileges \
    --table=dbos.dbos_migrations -d "$db" >"$WORK/$name.data.sql"
  if grep -qiE '^[[:space:]]*CREATE EXTENSION' "$WORK/$name.schema.sql"; then
    die "$name: dump contains CREATE EXTENSION; review before committing"
  fi
  if grep -qE '^COPY .* FROM stdin' "$WORK/$name.schema.sql" "$WORK/$name.data.sql"; then
    die "$name: dump contains COPY FROM stdin (cannot load with one simple query)"
  fi

  out=$OUT_DIR/$name.sql
  {
    echo "-- DBOS system schema fixture: $name"
    echo "-- Produced by the real $pkg_label creating its system"
    echo "-- database schema \"dbos\" on PostgreSQL $(q "$db" 'SHOW server_version' | cut -d' ' -f1)."
    echo "-- System-schema migration level (dbos.dbos_migrations.version): $mig"
    echo "-- dbos.queues table present: $([[ $has_queues == t ]] && echo yes || echo no)"
    echo "--"
    echo "-- Contents: pg_dump --schema-only --no-owner --no-privileges --schema=dbos, then the"
    echo "-- rows of dbos.dbos_migrations (pg_dump --data-only --column-inserts)."
    printf '%s\n' "-- Edited only mechanically: psql meta-command lines (\\restrict etc.) removed and a"
    echo "-- final RESET ALL added, so the file loads with ONE simple-query batch into an empty"
    echo "-- database and leaves the session's settings (search_path!) as they were."
    echo "--"
    echo "-- Do not edit by hand: regenerate with scripts/dbos-fixtures/regen.sh"
    echo
    grep -v '^[\]' "$WORK/$name.schema.sql"
    echo
    grep -v '^[\]' "$WORK/$name.data.sql"
    echo
    echo "-- Undo the session settings made by the dump preamble (search_path, etc.)."
    echo "RESET ALL;"
  } >"$out.tmp"
  mv "$out.tmp" "$out"

  # ---- verify
  live_sig=$(q "$db" "$SCHEMA_SIGNATURE_SQL")

  vdb="verify_psql_${name//[.-]/_}"
  "$PG_BIN/createdb" "$vdb"
  "$PG_BIN/psql" -X -q -v ON_ERROR_STOP=1 -d "$vdb" -f "$out" >/dev/null \
    || die "$name: fixture failed to load with psql -f"

  sdb="verify_simple_${name//[.-]/_}"
  "$PG_BIN/createdb" "$sdb"
  "$FIRST_PY_VENV/bin/python" "$WORK/simple_query_load.py" "$(db_url "$sdb")" "$out" \
    || die "$name: fixture failed to load as one simple query"

  for check_db in "$vdb" "$sdb"; do
    [[ $(q "$check_db" "SELECT to_regclass('dbos.workflow_status') IS NOT NULL") == t ]] \
      || die "$name: dbos.workflow_status missing after load into $check_db"
    [[ $(q "$check_db" "SELECT max(version) FROM dbos.dbos_migrations") == "$mig" ]] \
      || die "$name: dbos.dbos_migrations rows missing/wrong after load into $check_db"
    [[ $(q "$check_db" "SELECT to_regclass('dbos.queues') IS NOT NULL") == "$has_queues" ]] \
      || die "$name: dbos.queues presence differs after load into $check_db"
    [[ $(q "$check_db" "$SCHEMA_SIGNATURE_SQL") == "$live_sig" ]] \
      || die "$name: schema loaded into $check_db differs from the SDK-created one"
  done
  if grep -q '^[\]' "$out"; then die "$name: meta-command line left in fixture"; fi

  summary+=("$name: migration $mig, dbos.queues=$has_queues, $(wc -l <"$out") lines")
  log "$name: wrote $out (verified with psql -f and one simple query)"
done

log "done in $((SECONDS - START_TS)) s"
printf '  %s\n' "${summary[@]}" >&2
