{{/*
The chart name, or nameOverride when set.
*/}}
{{- define "pg-queue-scaler.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
The fully qualified app name, used for every resource name and for the Service's DNS name.
Kubernetes names are limited to 63 characters (DNS label), so the result is truncated.
When the release name already contains the chart name, it is used as is
(release "pg-queue-scaler" gives "pg-queue-scaler", not "pg-queue-scaler-pg-queue-scaler").
*/}}
{{- define "pg-queue-scaler.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/*
Chart name and version, as used by the helm.sh/chart label.
*/}}
{{- define "pg-queue-scaler.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Labels for every resource: the selector labels plus version, chart and commonLabels.
*/}}
{{- define "pg-queue-scaler.labels" -}}
helm.sh/chart: {{ include "pg-queue-scaler.chart" . }}
{{ include "pg-queue-scaler.selectorLabels" . }}
{{- if .Chart.AppVersion }}
app.kubernetes.io/version: {{ .Values.image.tag | default .Chart.AppVersion | trunc 63 | trimSuffix "-" | quote }}
{{- end }}
app.kubernetes.io/component: scaler
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/*
Selector labels.
IMPORTANT: a Deployment's selector is immutable. Any change to these labels makes
`helm upgrade` fail for existing releases, so keep them to name and instance only.
*/}}
{{- define "pg-queue-scaler.selectorLabels" -}}
app.kubernetes.io/name: {{ include "pg-queue-scaler.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/*
Name of the ServiceAccount the pods run as.
*/}}
{{- define "pg-queue-scaler.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "pg-queue-scaler.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/*
Container image reference. A digest wins over the tag; an empty tag means appVersion.
*/}}
{{- define "pg-queue-scaler.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion) }}
{{- end }}
{{- end }}

{{/*
In-cluster DNS name of the Service, as KEDA's scalerAddress host (and the TLS SAN).
*/}}
{{- define "pg-queue-scaler.serviceHost" -}}
{{- printf "%s.%s.svc.cluster.local" (include "pg-queue-scaler.fullname" .) .Release.Namespace }}
{{- end }}

{{/*
Name of the Secret that holds the server certificate (tls.crt, tls.key, optionally ca.crt).
*/}}
{{- define "pg-queue-scaler.tlsSecretName" -}}
{{- if .Values.tls.certManager.enabled }}
{{- printf "%s-tls" (include "pg-queue-scaler.fullname" .) }}
{{- else }}
{{- .Values.tls.existingSecret }}
{{- end }}
{{- end }}

{{/*
Name of the Secret rendered from the insecure inline database.url.
*/}}
{{- define "pg-queue-scaler.inlineDatabaseSecretName" -}}
{{- printf "%s-database" (include "pg-queue-scaler.fullname" .) }}
{{- end }}

{{/*
Converts a duration string such as "8s", "1m30s", "500ms" or "1h" to whole milliseconds.
Accepts a concatenation of <integer><unit> with unit ms, s, m or h (the subset of humantime
that values.schema.json allows). Fails on anything else, so a typo cannot slip through.
Usage: include "pg-queue-scaler.durationMillis" (list "shutdownGracePeriod" .Values.shutdownGracePeriod)
*/}}
{{- define "pg-queue-scaler.durationMillis" -}}
{{- $key := index . 0 }}
{{- $value := toString (index . 1) }}
{{- if not (regexMatch "^([0-9]+(ms|s|m|h))+$" $value) }}
{{- fail (printf "%s: %q is not a duration like 8s, 1m30s or 500ms" $key $value) }}
{{- end }}
{{- $total := 0 }}
{{- range (regexFindAll "[0-9]+(ms|s|m|h)" $value -1) }}
{{- $number := regexFind "^[0-9]+" . | atoi }}
{{- $unit := regexReplaceAll "^[0-9]+" . "" }}
{{- $factor := get (dict "ms" 1 "s" 1000 "m" 60000 "h" 3600000) $unit }}
{{- $total = add $total (mul $number $factor) }}
{{- end }}
{{- $total }}
{{- end }}

{{/*
Checks values that the schema cannot express and that concern the chart itself (Secrets, TLS
sources, the pod's termination grace period). Rules between the scaler's own settings (such as
staleAfter >= 2 x refreshInterval) are the binary's: it refuses them at start with exit code
64, and `pg-queue-scaler --check-config` runs them on every rendered configuration in CI.
Included once from the Deployment, so every render stops with a clear message.
*/}}
{{- define "pg-queue-scaler.validateValues" -}}
{{- $db := .Values.database }}
{{- if and $db.url $db.existingSecret.name }}
{{- fail "database: set either database.existingSecret.name or database.url, not both (database.url is an insecure development shortcut)" }}
{{- end }}
{{- if and $db.existingSecret.name (not $db.existingSecret.key) }}
{{- fail "database.existingSecret.key must name the key that holds the Postgres URL" }}
{{- end }}
{{- if not (or $db.url $db.existingSecret.name .Values.namedDatabases .Values.connectionFromEnv.enabled) }}
{{- fail "no database configured: set database.existingSecret.name, add namedDatabases, or enable connectionFromEnv" }}
{{- end }}
{{- $seen := dict }}
{{- range .Values.namedDatabases }}
{{- if hasKey $seen .name }}
{{- fail (printf "namedDatabases: %q is listed twice" .name) }}
{{- end }}
{{- $_ := set $seen .name true }}
{{- end }}
{{- if .Values.tls.enabled }}
{{- if and .Values.tls.certManager.enabled .Values.tls.existingSecret }}
{{- fail "tls: set either tls.existingSecret or tls.certManager.enabled, not both" }}
{{- end }}
{{- if not (or .Values.tls.certManager.enabled .Values.tls.existingSecret) }}
{{- fail "tls.enabled needs a certificate: set tls.existingSecret or tls.certManager.enabled" }}
{{- end }}
{{- if and .Values.tls.certManager.enabled (not .Values.tls.certManager.issuerRef.name) }}
{{- fail "tls.certManager.issuerRef.name is required when tls.certManager.enabled is true" }}
{{- end }}
{{- end }}
{{- $graceMs := include "pg-queue-scaler.durationMillis" (list "shutdownGracePeriod" .Values.shutdownGracePeriod) | atoi }}
{{- $terminationMs := mul (int .Values.terminationGracePeriodSeconds) 1000 }}
{{- if ge $graceMs $terminationMs }}
{{- fail (printf "terminationGracePeriodSeconds (%d) must be greater than shutdownGracePeriod (%s), or the kubelet kills the scaler before it has drained" (int .Values.terminationGracePeriodSeconds) .Values.shutdownGracePeriod) }}
{{- end }}
{{- end }}
