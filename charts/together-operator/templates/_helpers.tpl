{{/* The prefix of every object's name: "together-operator" for a release of that name. */}}
{{- define "together-operator.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 40 | trimSuffix "-" -}}
{{- else if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 40 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 40 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "together-operator.labels" -}}
app.kubernetes.io/name: together-operator
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end -}}

{{- define "together-operator.selectorLabels" -}}
control-plane: controller-manager
{{- end -}}

{{- define "together-operator.serviceAccountName" -}}
{{ include "together-operator.fullname" . }}-controller-manager
{{- end -}}

{{- define "together-operator.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end -}}

{{- define "together-operator.eventsTLSSecret" -}}
{{ .Values.events.tls.secretName | default (printf "%s-events-tls" (include "together-operator.fullname" .)) }}
{{- end -}}

{{/* The events path prefix every subscription is served under. */}}
{{- define "together-operator.eventsPath" -}}
/webhooks/together/
{{- end -}}
