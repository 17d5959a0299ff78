#!/usr/bin/env bash
# The whole test suite, set-up included, on a fresh machine or a developer's:
#   1. PostgreSQL server binaries, PgBouncer and Prometheus (apt-get install postgresql /
#      pgbouncer / prometheus when initdb / pgbouncer / prometheus or promtool is missing),
#      and helm (scripts/install-helm.sh; tests/prometheus.rs renders the chart with it),
#   2. the Python venv with the pinned DBOS and gRPC packages (scripts/setup-python.sh),
#   3. formatting, lints and docs (cargo fmt --check, cargo clippy and cargo doc, warnings denied),
#   4. the release binary, used by the end-to-end test as a user would run it,
#   5. unit, integration and end-to-end tests (cargo test),
#   6. chart, manifest and example checks (scripts/check-chart.sh).
# Tests start their own throwaway Postgres clusters unless TEST_DATABASE_URL is set, and their
# own PgBouncers in front of them (tests/pooler.rs) either way.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo"

step() { printf '\n==> %s\n' "$*"; }

have_postgres_server() {
  command -v initdb >/dev/null 2>&1 || compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null
}

# Where tests/common/pgbouncer.rs looks: PGBOUNCER, PATH, Debian's /usr/sbin.
have_pgbouncer() {
  [[ -n ${PGBOUNCER:-} && -x ${PGBOUNCER} ]] || command -v pgbouncer >/dev/null 2>&1 ||
    [[ -x /usr/sbin/pgbouncer ]]
}

can_apt_get() {
  [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null 2>&1
}

apt_updated=false
apt_get_install() {
  export DEBIAN_FRONTEND=noninteractive
  if ! $apt_updated; then
    apt-get update -qq
    apt_updated=true
  fi
  apt-get install -y -qq "$@" >/dev/null
}

step "PostgreSQL server binaries"
if [[ -z ${TEST_DATABASE_URL:-} ]] && ! have_postgres_server; then
  if can_apt_get; then
    apt_get_install postgresql
  else
    echo "initdb not found: install the PostgreSQL server (apt-get install -y postgresql)," >&2
    echo "or set TEST_DATABASE_URL to a server where the tests may create databases" >&2
    exit 1
  fi
fi

step "PgBouncer"
if ! have_pgbouncer; then
  if can_apt_get; then
    apt_get_install pgbouncer
  else
    echo "pgbouncer not found: install it (apt-get install -y pgbouncer), or set PGBOUNCER" >&2
    echo "to the binary" >&2
    exit 1
  fi
fi

# tests/prometheus.rs runs Prometheus and promtool (Debian's `prometheus` package): PROMETHEUS /
# PROMTOOL, then PATH, then /usr/bin.
have_prometheus() {
  { [[ -n ${PROMETHEUS:-} && -x ${PROMETHEUS} ]] || command -v prometheus >/dev/null 2>&1 || [[ -x /usr/bin/prometheus ]]; } &&
    { [[ -n ${PROMTOOL:-} && -x ${PROMTOOL} ]] || command -v promtool >/dev/null 2>&1 || [[ -x /usr/bin/promtool ]]; }
}

# Debian's prometheus package enables and starts a system Prometheus (on :9090) from its
# postinst. The tests never use it (they start their own on free 127.0.0.1 ports), so service
# starts are refused during the install: a policy-rc.d that exits 101, which invoke-rc.d and
# deb-systemd-invoke honour (container images usually ship one already; then it is left as is).
apt_get_install_without_starting() {
  local policy=/usr/sbin/policy-rc.d created=false status=0
  if [[ ! -e $policy ]]; then
    printf '#!/bin/sh\n# scripts/test.sh: no service starts while it installs packages.\nexit 101\n' >"$policy"
    chmod 755 "$policy"
    created=true
  fi
  apt_get_install --no-install-recommends "$@" || status=$?
  if $created; then rm -f "$policy"; fi
  return "$status"
}

step "Prometheus and promtool"
if ! have_prometheus; then
  if can_apt_get; then
    apt_get_install_without_starting prometheus
  else
    echo "prometheus/promtool not found: install them (apt-get install -y prometheus), or set" >&2
    echo "PROMETHEUS and PROMTOOL to the binaries" >&2
    exit 1
  fi
fi

step "helm"
PGQS_HELM=$(bash scripts/install-helm.sh)
export PGQS_HELM

step "Python venv (dbos, grpcio-reflection)"
PGQS_TEST_PYTHON=$(scripts/setup-python.sh)
export PGQS_TEST_PYTHON

step "cargo fmt --check, cargo clippy, cargo doc"
cargo fmt --all --check
cargo clippy --locked --all-targets -- -D warnings
RUSTDOCFLAGS="-D warnings" cargo doc --locked --no-deps --quiet

step "release build"
cargo build --locked --release
export PGQS_E2E_BINARY="$repo/target/release/pg-queue-scaler"

step "cargo test"
cargo test --locked --all-targets

step "chart, manifests and examples"
scripts/check-chart.sh
