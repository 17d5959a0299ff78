#!/usr/bin/env bash
# Renders deploy/pg-queue-scaler.yaml (plain manifests for `kubectl apply`) from the Helm chart,
# so the chart stays the single source of truth. scripts/check-chart.sh fails when the
# committed file differs from a fresh render.
#
# Usage: scripts/render-deploy.sh            write deploy/pg-queue-scaler.yaml
#        scripts/render-deploy.sh --stdout   print the render instead (used by the drift check)
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo_root"
helm_bin="$(bash scripts/install-helm.sh)"

# Keep this command in sync with deploy/README.md.
render_args=(template pg-queue-scaler charts/pg-queue-scaler --namespace keda
  --set database.existingSecret.name=pg-queue-scaler-database)

render() {
  cat <<HEADER
# pg-queue-scaler: plain Kubernetes manifests, generated from charts/pg-queue-scaler.
# Do not edit; regenerate with scripts/render-deploy.sh. Rendered with:
#
#   helm ${render_args[*]}
#
# Installs into namespace "keda" and reads the default database URL from
# Secret keda/pg-queue-scaler-database, key "url" (create it first; see deploy/README.md).
# KEDA reaches the scaler at pg-queue-scaler.keda.svc.cluster.local:9090.
HEADER
  "$helm_bin" "${render_args[@]}"
}

if [[ "${1:-}" == "--stdout" ]]; then
  render
else
  render >deploy/pg-queue-scaler.yaml.tmp
  mv -f deploy/pg-queue-scaler.yaml.tmp deploy/pg-queue-scaler.yaml
  echo "wrote deploy/pg-queue-scaler.yaml" >&2
fi
