{{/*
Names, labels, and the one piece of logic the chart has: the broker's
lightstream.toml, computed from values and rendered as TOML.
*/}}

{{- define "lightstream.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Full name: release-chart, or the release name alone when it already holds
the chart name. At most 52 characters: a StatefulSet's pods carry the label
controller-revision-hash=<name>-<10-character hash>, which must fit in 63.
*/}}
{{- define "lightstream.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 52 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 52 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 52 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "lightstream.headlessName" -}}
{{- printf "%s-headless" (include "lightstream.fullname" .) }}
{{- end }}

{{- define "lightstream.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Selector labels: few and fixed, since a StatefulSet's selector cannot change. */}}
{{- define "lightstream.selectorLabels" -}}
app.kubernetes.io/name: {{ include "lightstream.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "lightstream.labels" -}}
helm.sh/chart: {{ include "lightstream.chart" . }}
{{ include "lightstream.selectorLabels" . }}
app.kubernetes.io/component: broker
app.kubernetes.io/version: {{ .Values.image.tag | default .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: lightstream
{{- end }}

{{- define "lightstream.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "lightstream.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "lightstream.image" -}}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion) }}
{{- end }}

{{/* Where the chart mounts things in the container. */}}
{{- define "lightstream.configPath" -}}/etc/lightstream/lightstream.toml{{- end }}
{{- define "lightstream.scyllaPasswordDir" -}}/etc/lightstream/scylla{{- end }}
{{- define "lightstream.scyllaCaDir" -}}/etc/lightstream/scylla-ca{{- end }}

{{/* The Secret holding the S3 keys, or "" when the SDK's default chain is used. */}}
{{- define "lightstream.s3SecretName" -}}
{{- if .Values.s3.existingSecret }}
{{- .Values.s3.existingSecret }}
{{- else if .Values.s3.accessKeyId }}
{{- printf "%s-s3" (include "lightstream.fullname" .) }}
{{- end }}
{{- end }}

{{/* The Secret holding the ScyllaDB password, or "" when there is none. */}}
{{- define "lightstream.scyllaSecretName" -}}
{{- if .Values.scylla.existingSecret }}
{{- .Values.scylla.existingSecret }}
{{- else if .Values.scylla.password }}
{{- printf "%s-scylla" (include "lightstream.fullname" .) }}
{{- end }}
{{- end }}

{{- define "lightstream.scyllaPasswordKey" -}}
{{- if .Values.scylla.existingSecret }}{{ .Values.scylla.existingSecretPasswordKey }}{{ else }}password{{ end }}
{{- end }}

{{/*
metadata_url: scylla://host:port,host:port/keyspace?option=value&…
Only the options docs/configuration.md lists; the schema keeps &, ? and ,
out of every part, since the broker splits the URL on them undecoded.
*/}}
{{- define "lightstream.metadataUrl" -}}
{{- $s := .Values.scylla }}
{{- $options := list }}
{{- with $s.localDatacenter }}{{ $options = append $options (printf "dc=%s" .) }}{{ end }}
{{- with $s.consistency }}{{ $options = append $options (printf "consistency=%s" .) }}{{ end }}
{{- with $s.serialConsistency }}{{ $options = append $options (printf "serial_consistency=%s" .) }}{{ end }}
{{- with $s.requestTimeoutMs }}{{ $options = append $options (printf "request_timeout_ms=%d" (int64 .)) }}{{ end }}
{{- with $s.replication }}{{ $options = append $options (printf "replication=%s" .) }}{{ end }}
{{- if $s.tls.enabled }}
{{- $options = append $options (printf "tls_ca_file=%s/%s" (include "lightstream.scyllaCaDir" .) $s.tls.caSecretKey) }}
{{- end }}
{{- printf "scylla://%s/%s" (join "," $s.hosts) $s.keyspace }}
{{- if $options }}?{{ join "&" $options }}{{ end }}
{{- end }}

{{/*
The broker's shutdown_timeout_ms: the pod's grace period less a 5 s margin
(the broker must finish its handover before the kubelet's SIGKILL), at
least 1000. charts/test.sh checks the rendered pair agrees.
*/}}
{{- define "lightstream.shutdownTimeoutMs" -}}
{{- max 1000 (sub (mul (int64 .Values.terminationGracePeriodSeconds) 1000) 5000) }}
{{- end }}

{{/* The settings the chart computes; .Values.config is merged over them. */}}
{{- define "lightstream.settings" -}}
{{- $s := dict
  "listen" (printf "0.0.0.0:%d" (int64 .Values.ports.kafka))
  "admin_listen" (printf "0.0.0.0:%d" (int64 .Values.ports.admin))
  "data_dir" "/var/lib/lightstream"
  "storage_url" (printf "s3://%s/%s" .Values.s3.bucket .Values.s3.prefix)
  "s3_region" .Values.s3.region
  "s3_path_style" .Values.s3.pathStyle
  "metadata_url" (include "lightstream.metadataUrl" .)
  "shutdown_timeout_ms" (int64 (include "lightstream.shutdownTimeoutMs" .))
  "log_format" "json"
}}
{{- with .Values.s3.endpoint }}{{ $_ := set $s "s3_endpoint" . }}{{ end }}
{{- if include "lightstream.scyllaSecretName" . }}
{{- $_ := set $s "metadata_password_file" (printf "%s/password" (include "lightstream.scyllaPasswordDir" .)) }}
{{- end }}
{{- toJson (mergeOverwrite $s .Values.config) }}
{{- end }}

{{/*
One TOML value. Strings become basic strings: backslash, quote and the
three common control characters escaped, any other control character
refused (TOML forbids them raw). Helm reads YAML numbers as float64, so
whole numbers are printed as integers (8388608, not 8.388608e+06) and only
true fractions as floats.
*/}}
{{- define "lightstream.tomlValue" -}}
{{- if kindIs "string" . }}
{{- if regexMatch "[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]" . }}
{{- fail (printf "config: %q holds a control character" .) }}
{{- end -}}
"{{ . | replace `\` `\\` | replace `"` `\"` | replace "\n" `\n` | replace "\r" `\r` | replace "\t" `\t` }}"
{{- else if kindIs "bool" . }}{{ . }}
{{- else if kindIs "float64" . }}
{{- if eq . (float64 (int64 .)) }}{{ int64 . }}{{ else }}{{ . }}{{ end }}
{{- else if or (kindIs "int" .) (kindIs "int64" .) }}{{ . }}
{{- else }}{{ fail (printf "config: %v (%s) is not a string, number or boolean" . (kindOf .)) }}
{{- end }}
{{- end }}

{{- define "lightstream.toml" -}}
{{- $settings := include "lightstream.settings" . | fromJson }}
{{- range $key := keys $settings | sortAlpha }}
{{ $key }} = {{ include "lightstream.tomlValue" (get $settings $key) }}
{{- end }}
{{- end }}
