{{/*
Labels shared by every object of the chart.
*/}}
{{- define "kspm.labels" -}}
app.kubernetes.io/part-of: kspm
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end -}}

{{/*
Selector labels of the agent pods (stable across upgrades: a DaemonSet selector is immutable).
*/}}
{{- define "kspm.agent.selectorLabels" -}}
app.kubernetes.io/name: kspm-agent
app.kubernetes.io/part-of: kspm
{{- end -}}

{{- define "kspm.agent.labels" -}}
{{ include "kspm.labels" . }}
app.kubernetes.io/name: kspm-agent
app.kubernetes.io/component: agent
{{- end -}}

{{/*
Selector labels of the collector pods.
*/}}
{{- define "kspm.collector.selectorLabels" -}}
app.kubernetes.io/name: kspm-collector
app.kubernetes.io/part-of: kspm
{{- end -}}

{{- define "kspm.collector.labels" -}}
{{ include "kspm.labels" . }}
app.kubernetes.io/name: kspm-collector
app.kubernetes.io/component: collector
{{- end -}}

{{/*
Images: repository:tag, the tag defaulting to the chart's appVersion.
*/}}
{{- define "kspm.agent.image" -}}
{{ .Values.agent.image.repository }}:{{ .Values.agent.image.tag | default .Chart.AppVersion }}
{{- end -}}

{{- define "kspm.collector.image" -}}
{{ .Values.collector.image.repository }}:{{ .Values.collector.image.tag | default .Chart.AppVersion }}
{{- end -}}

{{/*
The collector's address as agents dial it; the collector's certificate must name this host.
*/}}
{{- define "kspm.collector.address" -}}
kspm-collector.{{ .Release.Namespace }}.svc:{{ .Values.collector.grpcPort }}
{{- end -}}

{{/*
"true" when agents enrol with a projected token, "" in static mode; any other mode fails the
rendering. Use as: if include "kspm.tokenEnrollment" .
*/}}
{{- define "kspm.tokenEnrollment" -}}
{{- if eq .Values.enrollment.mode "token" -}}
true
{{- else -}}
{{- if eq .Values.enrollment.mode "static" -}}
{{- else -}}
{{- fail "enrollment.mode must be token or static" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/*
"true" when the collector keeps posture in PostgreSQL (store.postgres.host set), "" on sqlite. A
host without a Secret for the password fails the rendering.
*/}}
{{- define "kspm.postgres" -}}
{{- if .Values.store.postgres.host -}}
{{- if .Values.store.postgres.existingSecret -}}
true
{{- else -}}
{{- fail "store.postgres.existingSecret must name a Secret with key password" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/*
The collector's --store URL, without the password (read from the Secret's file). verify-ca and
verify-full check the server against the Secret's ca.crt.
*/}}
{{- define "kspm.postgres.url" -}}
{{- with .Values.store.postgres -}}
postgres://{{ .user }}@{{ .host }}:{{ .port }}/{{ .database }}?sslmode={{ .sslMode }}
{{- if eq .sslMode "verify-full" -}}
&sslrootcert=/etc/kspm/postgres/ca.crt
{{- end -}}
{{- if eq .sslMode "verify-ca" -}}
&sslrootcert=/etc/kspm/postgres/ca.crt
{{- end -}}
{{- end -}}
{{- end -}}
