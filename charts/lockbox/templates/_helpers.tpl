{{/* The chart's name, at most 63 characters. */}}
{{- define "lockbox.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The release's full name, at most 63 characters. */}}
{{- define "lockbox.fullname" -}}
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

{{- define "lockbox.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "lockbox.selectorLabels" -}}
app.kubernetes.io/name: {{ include "lockbox.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "lockbox.labels" -}}
helm.sh/chart: {{ include "lockbox.chart" . }}
{{ include "lockbox.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/component: control-plane
app.kubernetes.io/part-of: lockbox
{{- end }}

{{- define "lockbox.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "lockbox.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "lockbox.tlsSecretName" -}}
{{- default (printf "%s-tls" (include "lockbox.fullname" .)) .Values.tls.existingSecret }}
{{- end }}

{{- define "lockbox.clientCASecretName" -}}
{{- default (include "lockbox.tlsSecretName" .) .Values.tls.clientCA.existingSecret }}
{{- end }}

{{- define "lockbox.databaseSecretName" -}}
{{- default (printf "%s-database" (include "lockbox.fullname" .)) .Values.database.existingSecret.name }}
{{- end }}

{{- define "lockbox.migrationSecretName" -}}
{{- default (printf "%s-database-owner" (include "lockbox.fullname" .)) .Values.database.migration.existingSecret.name }}
{{- end }}

{{/* Always a Secret: the signing key never lives in the database. */}}
{{- define "lockbox.auditKeySecretName" -}}
{{- default (printf "%s-audit-signing-key" (include "lockbox.fullname" .)) .Values.auditSigningKey.existingSecret }}
{{- end }}

{{- define "lockbox.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}
