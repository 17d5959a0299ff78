#!/usr/bin/env bash
# Checks the Helm chart, the rendered deploy/ manifests, the examples and the Dockerfile.
#
# Installs what it needs into the repository (helm into .tools/bin, a Python venv in .venv
# with kubernetes-validate, jsonschema and pyyaml), then runs every check, prints one line per
# check and a final "chart-checks: N passed, M failed" line. Exits non-zero on any failure.
# Needs no cluster and no network beyond the package registries (first run only).
#
# Usage: bash scripts/check-chart.sh        (from any directory)
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo_root"

chart=charts/pg-queue-scaler
crd_dir=tests/fixtures/keda-crds-v2.20.2
k8s_version=1.33.0
# Kinds with no built-in Kubernetes schema (their CRDs are not bundled): kubernetes-validate skips them.
crd_kinds=(ServiceMonitor PrometheusRule Certificate)
start_seconds=$SECONDS

# --- tools ------------------------------------------------------------------------------------

helm_bin="$(bash scripts/install-helm.sh)"
helm() { "$helm_bin" "$@"; }

# The repo's one venv; other scripts (e.g. scripts/setup-python.sh) add their own packages to it,
# so only what is missing here is installed, and nothing is removed.
venv=.venv
if [[ -d "$venv" ]] && ! "$venv/bin/python" -c 'import sys' >/dev/null 2>&1; then
  echo "$venv is broken; recreating it"
  rm -rf "$venv"
fi
if [[ ! -d "$venv" ]]; then
  python3 -m venv "$venv"
fi
py="$venv/bin/python"
missing=()
"$py" -c 'import kubernetes_validate' 2>/dev/null || missing+=(kubernetes-validate==1.37.0)
"$py" -c 'import jsonschema' 2>/dev/null || missing+=(jsonschema==4.26.0)
"$py" -c 'import yaml' 2>/dev/null || missing+=(pyyaml==6.0.3)
if ((${#missing[@]})); then
  echo "installing into $venv: ${missing[*]}"
  "$py" -m pip install --quiet --disable-pip-version-check "${missing[@]}"
fi

echo "helm $(helm version --short), kubernetes-validate $("$py" -c 'import kubernetes_validate.version as v; print(v.__version__)'), Kubernetes schemas $k8s_version"

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

# --- check bookkeeping ------------------------------------------------------------------------

passed=0
failed=0
failed_names=()

# check NAME COMMAND...: the command must succeed. Its output is shown only on failure.
check() {
  local name="$1"
  shift
  local log="$work/log"
  if "$@" >"$log" 2>&1; then
    passed=$((passed + 1))
    printf 'ok   %s\n' "$name"
  else
    failed=$((failed + 1))
    failed_names+=("$name")
    printf 'FAIL %s\n' "$name"
    sed 's/^/       /' "$log"
  fi
}

# check_rejects NAME PATTERN COMMAND...: the command must fail, with PATTERN (grep -E) in its output.
check_rejects() {
  local name="$1" pattern="$2"
  shift 2
  local log="$work/log"
  if "$@" >"$log" 2>&1; then
    failed=$((failed + 1))
    failed_names+=("$name")
    printf 'FAIL %s (the command succeeded, it must fail)\n' "$name"
  elif ! grep -Eq -- "$pattern" "$log"; then
    failed=$((failed + 1))
    failed_names+=("$name")
    printf 'FAIL %s (failed without the expected message /%s/)\n' "$name" "$pattern"
    sed 's/^/       /' "$log"
  else
    passed=$((passed + 1))
    printf 'ok   %s (rejected: %s)\n' "$name" "$(grep -Eo -m1 -- "$pattern" "$log")"
  fi
}

section() { printf '\n== %s\n' "$1"; }

render() { # render OUTPUT_FILE [helm template args...]
  local out="$1"
  shift
  helm template pg-queue-scaler "$chart" --namespace keda "$@" >"$out"
}

validate_k8s() {
  local skips=()
  for kind in "${crd_kinds[@]}"; do skips+=(--skip-kind "$kind"); done
  "$py" scripts/validate_k8s.py --kubernetes-version "$k8s_version" "${skips[@]}" "$@"
}

ci_files=("$chart"/ci/*-values.yaml)

# Small named checks used below (each returns non-zero when its claim does not hold).
assert_render() { "$py" scripts/assert_render.py "$@"; }
no_inline_url_in() { local f; for f in "$@"; do assert_render no-inline-url "$f" || return 1; done; }
kinds_count() { # kinds_count N FILE KIND...
  local n="$1" file="$2" kind
  shift 2
  for kind in "$@"; do assert_render count "$kind" "$n" "$file" || return 1; done
}
no_spread() { ! grep -q topologySpreadConstraints "$1"; }
tls_dir_mount() { grep -q "mountPath: /etc/pg-queue-scaler/tls$" "$1" && ! grep -B3 "subPath" "$1" | grep -q "name: tls"; }
user_spread() {
  helm template pg-queue-scaler "$chart" --set replicaCount=2 \
    --set-json 'topologySpreadConstraints=[{"maxSkew":1,"topologyKey":"kubernetes.io/hostname","whenUnsatisfiable":"DoNotSchedule"}]' \
    >"$work/user-spread.yaml" && assert_render spread "$work/user-spread.yaml"
}
config_rolls() {
  helm template p "$chart" >"$work/roll-a.yaml" &&
    helm template p "$chart" --set staleAfter=45s >"$work/roll-b.yaml" &&
    assert_render config-roll "$work/roll-a.yaml" "$work/roll-b.yaml"
}
inline_url_secret() {
  helm template p "$chart" --set database.url=postgres://u:p@db:5432/app >"$work/inline.yaml" &&
    assert_render count Secret 1 "$work/inline.yaml" &&
    assert_render env-secret PGQS_DATABASE_URL p-pg-queue-scaler-database url "$work/inline.yaml"
}
notes_contain() { # notes_contain TEXT [helm args...]
  local text="$1"
  shift
  helm install pg-queue-scaler "$chart" --namespace keda --dry-run=client "$@" >"$work/notes.txt" &&
    grep -qF -- "$text" "$work/notes.txt"
}
deploy_in_sync() { bash scripts/render-deploy.sh --out "$work/deploy" && diff -ru --exclude=README.md deploy "$work/deploy"; }
dashboard=$chart/dashboards/pg-queue-scaler.json
check_dashboard() { "$py" scripts/check_dashboard.py "$@"; }
# lint_edited SED_SCRIPT: lints the dashboard after one edit; an edit that changes nothing
# "passes", so check_rejects reports it rather than a lint that cannot fail.
lint_edited() {
  sed -e "$1" "$dashboard" >"$work/edited.json"
  if cmp -s "$work/edited.json" "$dashboard"; then
    echo "the edit $1 changed nothing"
    return 0
  fi
  check_dashboard lint "$work/edited.json"
}
dashboard_absent_by_default() { ! grep -q grafana_dashboard "$work/default.yaml"; }
dashboard_configurable() {
  helm template pg-queue-scaler "$chart" --namespace keda --show-only templates/grafana-dashboard.yaml \
    --set grafanaDashboard.enabled=true,grafanaDashboard.label=team/dashboards \
    --set grafanaDashboard.labelValue=queues,grafanaDashboard.namespace=monitoring >"$work/dashboard-custom.yaml" &&
    check_dashboard configmap "$work/dashboard-custom.yaml" "$dashboard" --label team/dashboards=queues --namespace monitoring
}
examples_address() { ! grep -h "scalerAddress:" examples/*.yaml | grep -v "scalerAddress: pg-queue-scaler.keda.svc.cluster.local:9090"; }
# --- chart: lint and values documentation -----------------------------------------------------

section "lint"
if command -v shellcheck >/dev/null 2>&1; then
  check "shellcheck (install-helm, render-deploy, check-chart)" shellcheck scripts/install-helm.sh scripts/render-deploy.sh scripts/check-chart.sh
else
  echo "note: shellcheck not installed, scripts not linted (apt-get install shellcheck)"
fi
check "values.yaml: every key has a '# --' comment; schema and README table in step" \
  "$py" scripts/chart_values_doc.py "$chart"
check "helm lint --strict (chart defaults)" helm lint --strict "$chart"
for f in "${ci_files[@]}"; do
  check "helm lint --strict -f ${f#"$chart"/}" helm lint --strict "$chart" -f "$f"
done

# --- chart: render and validate every CI values file ------------------------------------------

section "render + validate (Kubernetes $k8s_version schemas, strict; skipping CRD kinds: ${crd_kinds[*]})"
check "helm template (chart defaults)" render "$work/defaults.yaml"
check "kubernetes-validate (chart defaults)" validate_k8s "$work/defaults.yaml"
for f in "${ci_files[@]}"; do
  base="$(basename "$f" -values.yaml)"
  check "helm template -f ${f#"$chart"/}" render "$work/$base.yaml" -f "$f"
  check "kubernetes-validate ${base}" validate_k8s "$work/$base.yaml"
  check "terminationGracePeriodSeconds > shutdown grace (${base})" assert_render grace "$work/$base.yaml"
  check "secure pod and container settings (${base})" assert_render hardened "$work/$base.yaml"
  check "selectors are name+instance everywhere (${base})" assert_render same-selector "$work/$base.yaml"
done

# --- chart: behaviour -------------------------------------------------------------------------

section "chart behaviour"
r="$work/defaults.yaml"
check "no inline database URL in the default render" assert_render no-inline-url "$r"
check "no inline database URL in deploy/ and the ci renders" no_inline_url_in \
  deploy/pg-queue-scaler.yaml "$work"/default.yaml "$work"/ha.yaml "$work"/named-databases.yaml
check "PodDisruptionBudget absent at replicaCount=1" assert_render count PodDisruptionBudget 0 "$work/default.yaml"
check "PodDisruptionBudget present at replicaCount=3" assert_render count PodDisruptionBudget 1 "$work/ha.yaml"
check "hostname spread by default at replicaCount=3" assert_render spread "$work/ha.yaml"
check "no topology spread at replicaCount=1" no_spread "$work/default.yaml"
check "a topologySpreadConstraint without labelSelector gets the selector labels" user_spread
check "grpc probes (liveness/readiness services) without TLS" assert_render probes grpc "$work/default.yaml"
check "httpGet probes with TLS (cert-manager)" assert_render probes http "$work/tls-certmanager.yaml"
check "httpGet probes with TLS (existing Secret, mTLS)" assert_render probes http "$work/tls-existing-secret-mtls.yaml"
check "Certificate SANs cover <fullname>.keda.svc(.cluster.local)" \
  assert_render dns-names pg-queue-scaler keda "$work/tls-certmanager.yaml"
check "TLS files mounted as a directory, not subPath" tls_dir_mount "$work/tls-existing-secret-mtls.yaml"
check "mTLS: PGQS_TLS_CLIENT_CA_FILE set" grep -q "name: PGQS_TLS_CLIENT_CA_FILE" "$work/tls-existing-secret-mtls.yaml"
check "named database URL from its Secret (PGQS_DATABASES__ORDERS__URL)" \
  assert_render env-secret PGQS_DATABASES__ORDERS__URL orders-database url "$work/named-databases.yaml"
check "named database allowed_namespaces in the ConfigMap" \
  assert_render config databases.orders.allowed_namespaces '["team-a", "team-b"]' "$work/named-databases.yaml"
check "connectionFromEnv allowlist in the ConfigMap" \
  assert_render config connection_from_env_allowed_hosts '["postgres.databases.svc.cluster.local"]' "$work/named-databases.yaml"
check "default database URL from database.existingSecret" \
  assert_render env-secret PGQS_DATABASE_URL pg-queue-scaler-database url "$work/default.yaml"
check "monitoring render has ServiceMonitor, PrometheusRule, NetworkPolicy" \
  kinds_count 1 "$work/monitoring.yaml" ServiceMonitor PrometheusRule NetworkPolicy
check "monitoring kinds and Certificate absent by default" \
  kinds_count 0 "$work/default.yaml" ServiceMonitor PrometheusRule NetworkPolicy Certificate
check "config change rolls the pods (checksum/config)" config_rolls
check "database.url (dev only) goes through a rendered Secret" inline_url_secret
check "NOTES print the scalerAddress" \
  notes_contain "scalerAddress: pg-queue-scaler.keda.svc.cluster.local:9090"
check "NOTES print the TriggerAuthentication hint with TLS" \
  notes_contain "parameter: tlsClientCert" -f "$chart/ci/tls-existing-secret-mtls-values.yaml"

# --- chart: Grafana dashboard -----------------------------------------------------------------
# Schema-level checks of the JSON here; tests/prometheus.rs runs every panel query against a
# real Prometheus scraping the real scaler.

section "Grafana dashboard"
check "dashboard JSON: valid, \${datasource} everywhere, namespace/job only from variables, README panel table in step" \
  check_dashboard lint "$dashboard" --readme "$chart/README.md"
check "dashboard ConfigMap absent by default" dashboard_absent_by_default
check "dashboard ConfigMap in the monitoring render: label grafana_dashboard=1, the JSON unchanged" \
  check_dashboard configmap "$work/monitoring.yaml" "$dashboard" --label grafana_dashboard=1 --namespace keda
check "dashboard ConfigMap: label, value and namespace configurable" dashboard_configurable
check_rejects "schema: grafanaDashboard.label must be a label key" "grafanaDashboard/label" \
  helm template p "$chart" --set "grafanaDashboard.label=not a label"
check_rejects "dashboard lint rejects a hard-coded namespace in a variable" 'hard-coded namespace="keda"' \
  lint_edited '0,/namespace=~\\"\$namespace\\"/s//namespace=\\"keda\\"/'
check_rejects "dashboard lint rejects a hard-coded namespace in a panel query" 'hard-coded namespace="keda"' \
  lint_edited 's/oldest_waiting_seconds{namespace=~\\"\$namespace\\"/oldest_waiting_seconds{namespace=\\"keda\\"/'
check_rejects "dashboard lint rejects one fixed datasource uid" "P1809F7CD0C75ACF3" \
  lint_edited '0,/"uid": "\${datasource}"/s//"uid": "P1809F7CD0C75ACF3"/'
check_rejects "dashboard lint rejects a dashboard without the datasource variable" "template variable 'datasource'" \
  lint_edited 's/"type": "datasource"/"type": "custom"/'
check_rejects "dashboard lint rejects a panel query without the job filter" 'not scoped by job' \
  lint_edited 's/desired_replicas{namespace=~\\"\$namespace\\", job=~\\"\$job\\", /desired_replicas{namespace=~\\"\$namespace\\", /'
check_rejects "dashboard lint rejects invalid JSON" "not valid JSON" lint_edited '1s/^{/[/'

# --- chart: bad values must be rejected -------------------------------------------------------

section "bad values are rejected"
check_rejects "schema: unknown top-level key" "additional propert" helm template p "$chart" --set replicas=2
check_rejects "schema: unknown nested key" "additional propert" helm template p "$chart" --set tls.certManager.issuer=x
check_rejects "schema: wrong type (replicaCount=abc)" "want integer|expected integer" helm template p "$chart" --set replicaCount=abc
check_rejects "schema: wrong type (tls.enabled=yes)" "want boolean|expected boolean" helm template p "$chart" --set-string tls.enabled=yes
check_rejects "schema: enum (logging.format=xml)" "logging/format" helm template p "$chart" --set logging.format=xml
check_rejects "schema: duration format (shutdownGracePeriod=8 seconds)" "shutdownGracePeriod" helm template p "$chart" --set "shutdownGracePeriod=8 seconds"
check_rejects "schema: database.url and existingSecret.name together" "database/existingSecret/name" \
  helm template p "$chart" --set database.url=postgres://u:p@h/db,database.existingSecret.name=s
check_rejects "template: database.url and existingSecret.name together (schema skipped)" "not both" \
  helm template p "$chart" --skip-schema-validation --set database.url=postgres://u:p@h/db,database.existingSecret.name=s
check_rejects "schema: named database name must be lowercase" "namedDatabases/0/name" \
  helm template p "$chart" --set 'namedDatabases[0].name=Orders,namedDatabases[0].existingSecret.name=s,namedDatabases[0].existingSecret.key=url'
check_rejects "schema: named database cannot be called default" "namedDatabases/0/name" \
  helm template p "$chart" --set 'namedDatabases[0].name=default,namedDatabases[0].existingSecret.name=s,namedDatabases[0].existingSecret.key=url'
check_rejects "template: duplicate named database" "listed twice" \
  helm template p "$chart" --set 'namedDatabases[0].name=a,namedDatabases[0].existingSecret.name=s,namedDatabases[0].existingSecret.key=k,namedDatabases[1].name=a,namedDatabases[1].existingSecret.name=t,namedDatabases[1].existingSecret.key=k'
check_rejects "template: shutdownGracePeriod equal to terminationGracePeriodSeconds" "must be greater than shutdownGracePeriod" \
  helm template p "$chart" --set shutdownGracePeriod=15s,terminationGracePeriodSeconds=15
check_rejects "template: shutdownGracePeriod above terminationGracePeriodSeconds (1m vs 30)" "must be greater than shutdownGracePeriod" \
  helm template p "$chart" --set shutdownGracePeriod=1m,terminationGracePeriodSeconds=30
check "template: shutdownGracePeriod just below terminationGracePeriodSeconds (14999ms vs 15)" \
  helm template p "$chart" --set shutdownGracePeriod=14999ms,terminationGracePeriodSeconds=15
check_rejects "template: TLS without a certificate source" "needs a certificate" \
  helm template p "$chart" --set tls.enabled=true
check_rejects "template: TLS with both certificate sources" "not both" \
  helm template p "$chart" --set tls.enabled=true,tls.existingSecret=s,tls.certManager.enabled=true,tls.certManager.issuerRef.name=i
check_rejects "template: no database at all" "no database configured" \
  helm template p "$chart" --set connectionFromEnv.enabled=false

# --- the binary accepts what the chart renders -------------------------------------------------

section "the scaler binary accepts the rendered configuration"
binary=target/release/pg-queue-scaler
if [[ ! -x $binary ]]; then
  echo "building $binary"
  cargo build --locked --release --quiet
fi
for f in "${ci_files[@]}" deploy/pg-queue-scaler.yaml; do
  rendered="$f"
  [[ $f == "$chart"/ci/* ]] && rendered="$work/$(basename "$f" -values.yaml).yaml"
  check "pg-queue-scaler --check-config accepts $(basename "$rendered")" \
    "$py" scripts/check_chart_config.py "$rendered" "$binary"
done
# Rules between settings are the binary's alone (the chart keeps its JSON schema for shapes):
# a render the binary refuses must be refused by --check-config, with the binary's words.
helm template p "$chart" --set refreshInterval=30s,staleAfter=59s >"$work/stale-low.yaml"
helm template p "$chart" --set refreshInterval=30s,staleAfter=1m >"$work/stale-twice.yaml"
check_rejects "--check-config refuses a render with staleAfter below twice refreshInterval" \
  "at least twice refresh_interval" "$py" scripts/check_chart_config.py "$work/stale-low.yaml" "$binary"
check "--check-config accepts a render with staleAfter exactly twice refreshInterval" \
  "$py" scripts/check_chart_config.py "$work/stale-twice.yaml" "$binary"

# --- deploy/ ----------------------------------------------------------------------------------

section "deploy/"
check "deploy/ (manifests, extras/ dashboard JSON and ConfigMap) matches a fresh render (else run scripts/render-deploy.sh)" deploy_in_sync
check "kubernetes-validate deploy/pg-queue-scaler.yaml" validate_k8s deploy/pg-queue-scaler.yaml
check "kubernetes-validate deploy/extras/grafana-dashboard-configmap.yaml" validate_k8s deploy/extras/grafana-dashboard-configmap.yaml
check "deploy/README.md shows the render command" \
  grep -qF -- "--set database.existingSecret.name=pg-queue-scaler-database" deploy/README.md

# --- examples ---------------------------------------------------------------------------------

section "examples (KEDA CRDs from $crd_dir)"
check "KEDA objects in examples/ match the v2.20.2 CRD schemas and the trigger contract" \
  "$py" scripts/validate_crd.py --crd-dir "$crd_dir" --scaler "$binary" --ignore-other-kinds examples/*.yaml
check "core objects in examples/ (Deployment, Secret, Service) validate" \
  "$py" scripts/validate_k8s.py --kubernetes-version "$k8s_version" --skip-kind ScaledObject --skip-kind TriggerAuthentication examples/*.yaml
check "examples point at pg-queue-scaler.keda.svc.cluster.local:9090" examples_address

# The validators must be able to fail: feed them known-bad objects.
cat >"$work/bad-scaledobject.yaml" <<'EOF'
apiVersion: keda.sh/v1alpha1
kind: ScaledObject
metadata:
  name: bad
spec:
  scaleTargetRef:
    name: worker
  minReplicas: 0
  triggers:
    - type: external
      metadata:
        scalerAddress: pg-queue-scaler.keda.svc.cluster.local:9090
        queue: q
        workerConcurrency: 5
EOF
cat >"$work/bad-trigger.yaml" <<'EOF'
apiVersion: keda.sh/v1alpha1
kind: ScaledObject
metadata:
  name: bad-trigger
spec:
  scaleTargetRef:
    name: worker
  triggers:
    - type: external-push
      metadata:
        scalerAddress: grpc://pg-queue-scaler.keda:9090
        queueName: q
        aggregate: avg
EOF
cat >"$work/bad-version-trigger.yaml" <<'EOF'
apiVersion: keda.sh/v1alpha1
kind: ScaledObject
metadata:
  name: bad-version-trigger
spec:
  scaleTargetRef:
    name: worker
  triggers:
    - type: external-push
      metadata:
        scalerAddress: pg-queue-scaler.keda.svc.cluster.local:9090
        queue: q
        metric: latency
        concurrencyLimits: cap
        delayedLookahead: soon
        requireApplicationVersion: "true"
EOF
cat >"$work/bad-deployment.yaml" <<'EOF'
apiVersion: apps/v1
kind: Deployment
metadata:
  name: bad
spec:
  selector:
    matchLabels: {app: bad}
  template:
    metadata:
      labels: {app: bad}
    spec:
      containers:
        - name: c
          image: busybox
          envv: []
EOF
check_rejects "validate_crd.py rejects unknown fields and non-string metadata" "minReplicas|workerConcurrency" \
  "$py" scripts/validate_crd.py --crd-dir "$crd_dir" --scaler "$binary" "$work/bad-scaledobject.yaml"
check_rejects "validate_crd.py rejects a bad trigger (scheme in scalerAddress, unknown key, bad enum)" "queueName" \
  "$py" scripts/validate_crd.py --crd-dir "$crd_dir" --scaler "$binary" "$work/bad-trigger.yaml"
check_rejects "validate_crd.py rejects bad version, limit, lookahead and latency keys" "targetLatency is required" \
  "$py" scripts/validate_crd.py --crd-dir "$crd_dir" --scaler "$binary" "$work/bad-version-trigger.yaml"
check_rejects "validate_k8s.py rejects unknown fields" "envv" \
  "$py" scripts/validate_k8s.py --kubernetes-version "$k8s_version" "$work/bad-deployment.yaml"

# --- container image --------------------------------------------------------------------------

section "Dockerfile"
check "Dockerfile COPY sources exist and are not .dockerignored" "$py" scripts/check_dockerfile.py "$repo_root"
# The build stage's files alone must compile: copy exactly them and `cargo check` the binary
# (dependencies come from the shared target directory, so this is quick).
docker_context_compiles() {
  local context="$work/docker-context"
  rm -rf "$context" && mkdir -p "$context"
  local source
  while IFS= read -r source; do
    mkdir -p "$context/$(dirname "$source")"
    cp -r "$source" "$context/$source"
  done < <("$py" scripts/check_dockerfile.py "$repo_root" --print-sources)
  (cd "$context" && CARGO_TARGET_DIR="$repo_root/target" cargo check --locked --quiet --bin pg-queue-scaler)
}
check "the Dockerfile's build context alone compiles the binary" docker_context_compiles
check "Dockerfile: cargo build --release --locked; distroless nonroot, USER 65532, EXPOSE 9090 8080" \
  "$py" scripts/check_dockerfile.py "$repo_root" --runtime
mkdir -p "$work/docker-root" && sed -e 's/^USER 65532:65532/USER root/' Dockerfile >"$work/docker-root/Dockerfile"
check_rejects "check_dockerfile.py --runtime refuses an image running as root" "runs as root" \
  "$py" scripts/check_dockerfile.py "$work/docker-root" --runtime

# --- summary ----------------------------------------------------------------------------------

elapsed=$((SECONDS - start_seconds))
echo
if ((failed)); then
  echo "failed checks:"
  printf '  - %s\n' "${failed_names[@]}"
fi
echo "(${elapsed}s)"
echo "chart-checks: ${passed} passed, ${failed} failed"
((failed == 0))
