{{/* Names ---------------------------------------------------------------- */}}

{{- define "schedule-app.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "schedule-app.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* "<fullname>-<component>" for a dict with root and component. */}}
{{- define "schedule-app.componentName" -}}
{{- printf "%s-%s" (include "schedule-app.fullname" .root) .component | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "schedule-app.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "schedule-app.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* Labels --------------------------------------------------------------- */}}

{{- define "schedule-app.selectorLabels" -}}
app.kubernetes.io/name: {{ include "schedule-app.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "schedule-app.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .root.Chart.Name .root.Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "schedule-app.selectorLabels" . }}
app.kubernetes.io/version: {{ .root.Chart.AppVersion | quote }}
app.kubernetes.io/part-of: schedule-tracker
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
{{- with .root.Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* Pod labels of the stateful services: no chart or app version, so that a release of
     the application does not restart the database and the broker. */}}
{{- define "schedule-app.stableLabels" -}}
{{ include "schedule-app.selectorLabels" . }}
app.kubernetes.io/part-of: schedule-tracker
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
{{- with .root.Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* Release record annotations (deploy.gitSha, deploy.triggeredBy). */}}
{{- define "schedule-app.deployAnnotations" -}}
{{- with .Values.deployInfo.gitSha }}
deploy.gitSha: {{ . | quote }}
{{- end }}
{{- with .Values.deployInfo.triggeredBy }}
deploy.triggeredBy: {{ . | quote }}
{{- end }}
{{- end -}}

{{/* Images: "repository@digest" when a digest is set, else "repository:tag".
     Called with a dict: image (the values block) and root. */}}
{{- define "schedule-app.image" -}}
{{- $img := .image -}}
{{- if $img.digest -}}
{{- printf "%s@%s" $img.repository $img.digest -}}
{{- else -}}
{{- printf "%s:%s" $img.repository (toString (default .root.Chart.AppVersion $img.tag)) -}}
{{- end -}}
{{- end -}}

{{/* Security ------------------------------------------------------------- */}}

{{/* Pod securityContext for Pod Security "restricted"; dict: uid, fsGroup (optional). */}}
{{- define "schedule-app.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: {{ .uid }}
runAsGroup: {{ .uid }}
fsGroup: {{ .uid }}
fsGroupChangePolicy: OnRootMismatch
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{/* Container securityContext; dict: uid, readOnly (bool). */}}
{{- define "schedule-app.containerSecurityContext" -}}
runAsNonRoot: true
runAsUser: {{ .uid }}
runAsGroup: {{ .uid }}
allowPrivilegeEscalation: false
privileged: false
readOnlyRootFilesystem: {{ .readOnly }}
capabilities:
  drop:
    - ALL
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{/* Database and broker connection ------------------------------------- */}}

{{- define "schedule-app.db.host" -}}
{{- if .Values.postgresql.enabled -}}
{{- include "schedule-app.componentName" (dict "root" . "component" "postgresql") -}}
{{- else -}}
{{- required "externalDatabase.host is required when postgresql.enabled is false" .Values.externalDatabase.host -}}
{{- end -}}
{{- end -}}

{{- define "schedule-app.db.port" -}}
{{- if .Values.postgresql.enabled }}{{ .Values.postgresql.port }}{{ else }}{{ .Values.externalDatabase.port }}{{ end -}}
{{- end -}}

{{- define "schedule-app.db.name" -}}
{{- if .Values.postgresql.enabled }}{{ .Values.postgresql.database }}{{ else }}{{ .Values.externalDatabase.database }}{{ end -}}
{{- end -}}

{{- define "schedule-app.db.user" -}}
{{- if .Values.postgresql.enabled }}{{ .Values.postgresql.username }}{{ else }}{{ .Values.externalDatabase.username }}{{ end -}}
{{- end -}}

{{/* Secret and key holding the database password. */}}
{{- define "schedule-app.db.secretName" -}}
{{- $db := ternary .Values.postgresql .Values.externalDatabase .Values.postgresql.enabled -}}
{{- default (include "schedule-app.componentName" (dict "root" . "component" "db")) $db.existingSecret -}}
{{- end -}}

{{- define "schedule-app.db.secretKey" -}}
{{- $db := ternary .Values.postgresql .Values.externalDatabase .Values.postgresql.enabled -}}
{{- $db.passwordKey -}}
{{- end -}}

{{- define "schedule-app.mq.host" -}}
{{- if .Values.rabbitmq.enabled -}}
{{- include "schedule-app.componentName" (dict "root" . "component" "rabbitmq") -}}
{{- else -}}
{{- required "externalRabbitmq.host is required when rabbitmq.enabled is false" .Values.externalRabbitmq.host -}}
{{- end -}}
{{- end -}}

{{- define "schedule-app.mq.port" -}}
{{- if .Values.rabbitmq.enabled }}{{ .Values.rabbitmq.port }}{{ else }}{{ .Values.externalRabbitmq.port }}{{ end -}}
{{- end -}}

{{- define "schedule-app.mq.user" -}}
{{- if .Values.rabbitmq.enabled }}{{ .Values.rabbitmq.username }}{{ else }}{{ .Values.externalRabbitmq.username }}{{ end -}}
{{- end -}}

{{- define "schedule-app.mq.secretName" -}}
{{- $mq := ternary .Values.rabbitmq .Values.externalRabbitmq .Values.rabbitmq.enabled -}}
{{- default (include "schedule-app.componentName" (dict "root" . "component" "rabbitmq")) $mq.existingSecret -}}
{{- end -}}

{{- define "schedule-app.mq.secretKey" -}}
{{- $mq := ternary .Values.rabbitmq .Values.externalRabbitmq .Values.rabbitmq.enabled -}}
{{- $mq.passwordKey -}}
{{- end -}}

{{/* A generated secret value that survives upgrades: the value given, else the one
     already in the cluster, else a new random one. dict: root, name, key, value. */}}
{{- define "schedule-app.secretValue" -}}
{{- if .value -}}
{{- .value | b64enc -}}
{{- else -}}
{{- $existing := lookup "v1" "Secret" .root.Release.Namespace .name -}}
{{- if and $existing (index ($existing.data | default dict) .key) -}}
{{- index $existing.data .key -}}
{{- else -}}
{{- randAlphaNum 32 | b64enc -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* Environment of every container that talks to the database (PG* for dbtools). */}}
{{- define "schedule-app.pgEnv" -}}
- name: PGHOST
  value: {{ include "schedule-app.db.host" . | quote }}
- name: PGPORT
  value: {{ include "schedule-app.db.port" . | quote }}
- name: PGUSER
  value: {{ include "schedule-app.db.user" . | quote }}
- name: PGDATABASE
  value: {{ include "schedule-app.db.name" . | quote }}
- name: PGPASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ include "schedule-app.db.secretName" . }}
      key: {{ include "schedule-app.db.secretKey" . }}
{{- end -}}

{{/* URL path of an actuator endpoint; dict: root, path ("/health"). */}}
{{- define "schedule-app.backend.path" -}}
{{- trimSuffix "/" .root.Values.backend.actuatorPath -}}{{ .path }}
{{- end -}}

{{/* Helm hooks of the migration Job: the bundled database only exists after the first
     install, so there the first migration runs right after install (the backend's readiness
     needs the database, not the schema, so `helm --wait` is not blocked); an external
     database is migrated before anything else changes. */}}
{{- define "schedule-app.migration.hooks" -}}
{{- ternary "post-install,pre-upgrade" "pre-install,pre-upgrade" .Values.postgresql.enabled -}}
{{- end -}}
