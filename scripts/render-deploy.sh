#!/usr/bin/env bash
# Renders deploy/ (plain manifests for `kubectl apply`, and the Grafana dashboard for users
# without the chart) from the Helm chart, so the chart stays the single source of truth:
#   deploy/pg-queue-scaler.yaml                     the scaler (chart defaults, namespace keda)
#   deploy/extras/grafana-dashboard.json            the dashboard JSON, for Grafana's Import
#   deploy/extras/grafana-dashboard-configmap.yaml  the same, as the chart's sidecar ConfigMap
# scripts/check-chart.sh fails when the committed files differ from a fresh render.
#
# Usage: scripts/render-deploy.sh              write into deploy/
#        scripts/render-deploy.sh --out DIR    write into DIR instead (used by the drift check)
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo_root"
helm_bin="$(bash scripts/install-helm.sh)"

out=deploy
if [[ "${1:-}" == "--out" ]]; then
  out="${2:?--out needs a directory}"
fi

# Keep these commands in sync with deploy/README.md.
render_args=(template pg-queue-scaler charts/pg-queue-scaler --namespace keda
  --set database.existingSecret.name=pg-queue-scaler-database)
dashboard_args=(template pg-queue-scaler charts/pg-queue-scaler --namespace keda
  --set grafanaDashboard.enabled=true --show-only templates/grafana-dashboard.yaml)

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

render_dashboard_configmap() {
  cat <<HEADER
# pg-queue-scaler's Grafana dashboard as a ConfigMap for the Grafana sidecar (label
# grafana_dashboard: "1"), generated from charts/pg-queue-scaler. Do not edit; regenerate with
# scripts/render-deploy.sh. Rendered with:
#
#   helm ${dashboard_args[*]}
#
# The sidecar must watch namespace "keda" (or apply it with another metadata.namespace).
HEADER
  "$helm_bin" "${dashboard_args[@]}"
}

# write FILE COMMAND...: the command's output replaces FILE only when the command succeeds.
write() {
  local file="$1"
  shift
  mkdir -p "$(dirname "$file")"
  "$@" >"$file.tmp"
  mv -f "$file.tmp" "$file"
  echo "wrote $file" >&2
}

write "$out/pg-queue-scaler.yaml" render
write "$out/extras/grafana-dashboard-configmap.yaml" render_dashboard_configmap
write "$out/extras/grafana-dashboard.json" cat charts/pg-queue-scaler/dashboards/pg-queue-scaler.json
