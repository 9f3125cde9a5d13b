{{/* Names and labels shared by every object of the chart. */}}

{{- define "app.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{/* The name of one service's objects; dict: root, name. */}}
{{- define "app.serviceName" -}}
{{- printf "%s-%s" (include "app.fullname" .root) .name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "app.selectorLabels" -}}
app.kubernetes.io/name: {{ .root.Chart.Name }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .name }}
{{- end -}}

{{- define "app.labels" -}}
{{ include "app.selectorLabels" . }}
app.kubernetes.io/version: {{ .root.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .root.Chart.Name .root.Chart.Version }}
{{- end -}}

{{/* repository@@digest when the pipeline deployed by digest, else repository:tag (appVersion). */}}
{{- define "app.image" -}}
{{- $img := .image -}}
{{- if $img.digest -}}
{{- printf "%s@@%s" $img.repository $img.digest -}}
{{- else -}}
{{- $tag := toString (default .root.Chart.AppVersion $img.tag) -}}
{{- if eq $tag "latest" -}}
{{- fail (printf "services.%s.image.tag: \"latest\" is not a version" .name) -}}
{{- end -}}
{{- printf "%s:%s" $img.repository $tag -}}
{{- end -}}
{{- end -}}
