{{/* The chart name. */}}
{{- define "vigil.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Prefix of every object name. */}}
{{- define "vigil.fullname" -}}
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

{{/* Labels selecting the operator's pods. */}}
{{- define "vigil.selectorLabels" -}}
app.kubernetes.io/name: {{ include "vigil.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: operator
{{- end }}

{{/* Labels of every object. */}}
{{- define "vigil.labels" -}}
{{ include "vigil.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/part-of: vigil
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* The webhook Service, whose DNS name the serving certificate carries. */}}
{{- define "vigil.webhookService" -}}
{{- printf "%s-webhook" (include "vigil.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The Secret holding the webhook certificate (self-managed or cert-manager's). */}}
{{- define "vigil.webhookSecret" -}}
{{- printf "%s-webhook-tls" (include "vigil.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Name of both webhook configurations (cluster-scoped). */}}
{{- define "vigil.webhookConfiguration" -}}
{{- include "vigil.fullname" . }}
{{- end }}

{{/*
An image reference from a dict with repository, tag and registry: with a registry
(global.imageRegistry) the repository's own registry is replaced by it, the rest of the path
kept. As in Docker, the first path component is a registry when it has a "." or ":" or is
"localhost"; a repository without one gets the registry put in front.
*/}}
{{- define "vigil.imageRef" -}}
{{- $repository := .repository }}
{{- if .registry }}
{{- $parts := splitList "/" $repository }}
{{- $first := first $parts }}
{{- if and (gt (len $parts) 1) (or (contains "." $first) (contains ":" $first) (eq $first "localhost")) }}
{{- $repository = rest $parts | join "/" }}
{{- end }}
{{- $repository = printf "%s/%s" .registry $repository }}
{{- end }}
{{- printf "%s:%s" $repository .tag }}
{{- end }}

{{/* Operator and agent images. */}}
{{- define "vigil.image" -}}
{{- include "vigil.imageRef" (dict "repository" .Values.image.repository "tag" (default .Chart.AppVersion .Values.image.tag) "registry" ((.Values.global).imageRegistry)) }}
{{- end }}
{{- define "vigil.agentImage" -}}
{{- include "vigil.imageRef" (dict "repository" .Values.agent.image.repository "tag" (default .Chart.AppVersion .Values.agent.image.tag) "registry" ((.Values.global).imageRegistry)) }}
{{- end }}

{{/* Name of the analytics engine's objects. */}}
{{- define "vigil.analyticsName" -}}
{{- printf "%s-analytics" (include "vigil.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels selecting the analytics engine's pods (not the operator's: the component differs). */}}
{{- define "vigil.analyticsSelectorLabels" -}}
app.kubernetes.io/name: {{ include "vigil.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: analytics
{{- end }}

{{/* Labels of every analytics object. */}}
{{- define "vigil.analyticsLabels" -}}
{{ include "vigil.analyticsSelectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/part-of: vigil
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}
