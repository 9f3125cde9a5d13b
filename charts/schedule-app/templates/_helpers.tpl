{{/* Names ---------------------------------------------------------------- */}}

{{- define "schedule-app.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Longest full name: the longest object name built on it is the StatefulSet
     "<fullname>-postgresql", which must stay within 52 characters because its pods carry the
     label controller-revision-hash "<name>-<10-character hash>" (label values: 63). */}}
{{- define "schedule-app.fullnameMax" -}}41{{- end -}}

{{/* The release's name prefix. A generated one that would be too long is cut and given a hash
     of the whole name, so that two long release names never share their objects' names. */}}
{{- define "schedule-app.fullname" -}}
{{- $max := int (include "schedule-app.fullnameMax" .) -}}
{{- if .Values.fullnameOverride -}}
{{- if gt (len .Values.fullnameOverride) $max -}}
{{- fail (printf "fullnameOverride %q has %d characters, at most %d fit: the StatefulSet <fullname>-postgresql must stay within 52 characters (its pods' controller-revision-hash label adds 11 to the 63-character limit of label values)" .Values.fullnameOverride (len .Values.fullnameOverride) $max) -}}
{{- end -}}
{{- .Values.fullnameOverride | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- $full := ternary .Release.Name (printf "%s-%s" .Release.Name $name) (contains $name .Release.Name) -}}
{{- if gt (len $full) $max -}}
{{- $full = printf "%s-%s" ($full | trunc (sub $max 7 | int) | trimSuffix "-") ($full | sha256sum | trunc 6) -}}
{{- end -}}
{{- $full -}}
{{- end -}}
{{- end -}}

{{/* "<fullname>-<component>" for a dict with root and component. */}}
{{- define "schedule-app.componentName" -}}
{{- printf "%s-%s" (include "schedule-app.fullname" .root) .component -}}
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
     Called with a dict: image (the values block), root and key (its values path, for errors).
     "latest" is refused: it names no version, so a rollback or a rescheduled pod may run
     something else than what was tested. */}}
{{- define "schedule-app.image" -}}
{{- $img := .image -}}
{{- if $img.digest -}}
{{- printf "%s@%s" $img.repository $img.digest -}}
{{- else -}}
{{- $tag := toString (default .root.Chart.AppVersion $img.tag) -}}
{{- if eq $tag "latest" -}}
{{- fail (printf "%s.image.tag: \"latest\" is not a version; set a version tag or %s.image.digest" .key .key) -}}
{{- end -}}
{{- printf "%s:%s" $img.repository $tag -}}
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

{{/* The user that owns the schema and runs the migrations: the bundled server's admin
     (POSTGRES_USER, a superuser) or, for an external database, the one user given. */}}
{{- define "schedule-app.db.adminUser" -}}
{{- if .Values.postgresql.enabled }}{{ .Values.postgresql.adminUsername }}{{ else }}{{ .Values.externalDatabase.username }}{{ end -}}
{{- end -}}

{{- define "schedule-app.db.adminSecretKey" -}}
{{- if .Values.postgresql.enabled }}{{ .Values.postgresql.adminPasswordKey }}{{ else }}{{ .Values.externalDatabase.passwordKey }}{{ end -}}
{{- end -}}

{{/* Secret and key holding the application user's database password. */}}
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
     already in the cluster, else a new random one, drawn once per render (the Secret and the
     checksum annotation that rolls the pods see the same value). dict: root, name, key, value. */}}
{{- define "schedule-app.secretValue" -}}
{{- if .value -}}
{{- .value | toString | b64enc -}}
{{- else -}}
{{- $memo := .root.Values.__generated | default dict -}}
{{- $id := printf "%s/%s" .name .key -}}
{{- if not (hasKey $memo $id) -}}
{{- $existing := lookup "v1" "Secret" .root.Release.Namespace .name -}}
{{- if and $existing (index ($existing.data | default dict) .key) -}}
{{- $_ := set $memo $id (index $existing.data .key) -}}
{{- else -}}
{{- $_ := set $memo $id (randAlphaNum 32 | b64enc) -}}
{{- end -}}
{{- $_ := set .root.Values "__generated" $memo -}}
{{- end -}}
{{- index $memo $id -}}
{{- end -}}
{{- end -}}

{{/* Connection settings of every dbtools container (libpq variables; no password: that is a
     file, see pgpassInit). dict: root, admin (bool: the admin user instead of the app's). */}}
{{- define "schedule-app.pgEnv" -}}
- name: PGHOST
  value: {{ include "schedule-app.db.host" .root | quote }}
- name: PGPORT
  value: {{ include "schedule-app.db.port" .root | quote }}
- name: PGUSER
  value: {{ ternary (include "schedule-app.db.adminUser" .root) (include "schedule-app.db.user" .root) (default false .admin) | quote }}
- name: PGDATABASE
  value: {{ include "schedule-app.db.name" .root | quote }}
- name: PGPASSFILE
  value: /tmp/pgpass
{{- end -}}

{{/* Init container writing /tmp/pgpass (mode 0600, as libpq demands: a Secret volume's files
     are group-readable once fsGroup applies) from the password file mounted at
     /run/secrets/db/password. dict: root. */}}
{{- define "schedule-app.pgpassInit" -}}
- name: pgpass
  image: {{ include "schedule-app.image" (dict "image" .root.Values.dbtools.image "root" .root "key" "dbtools") }}
  imagePullPolicy: {{ .root.Values.dbtools.image.pullPolicy }}
  command:
    - bash
    - -c
    - |
      umask 077
      printf '*:*:*:*:%s\n' "$(sed 's/[\\:]/\\&/g' /run/secrets/db/password)" >/tmp/pgpass
  resources:
    {{- toYaml .root.Values.dbtools.resources | nindent 4 }}
  securityContext:
    {{- include "schedule-app.containerSecurityContext" (dict "uid" .root.Values.dbtools.uid "readOnly" true) | nindent 4 }}
  volumeMounts:
    - name: tmp
      mountPath: /tmp
    - name: db-password
      mountPath: /run/secrets/db
      readOnly: true
{{- end -}}

{{/* Volume with a database password as the file "password"; dict: root, admin (bool: the
     admin user's instead of the application's), name (default db-password). */}}
{{- define "schedule-app.db.passwordVolume" -}}
- name: {{ .name | default "db-password" }}
  secret:
    secretName: {{ include "schedule-app.db.secretName" .root }}
    defaultMode: 0440
    items:
      - key: {{ ternary (include "schedule-app.db.adminSecretKey" .root) (include "schedule-app.db.secretKey" .root) (default false .admin) }}
        path: password
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
