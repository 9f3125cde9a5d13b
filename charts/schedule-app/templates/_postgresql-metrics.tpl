{{/* PostgreSQL metrics: the postgres_exporter Deployment beside the bundled server and its
     monitoring role. */}}

{{/* "true" when the exporter runs: it watches the bundled server (an external database is
     monitored where it runs). */}}
{{- define "schedule-app.pgMetrics.enabled" -}}
{{- if and .Values.postgresql.enabled .Values.postgresql.metrics.enabled }}true{{ end -}}
{{- end -}}

{{/* Where the exporter and the role script read the monitoring role's password. */}}
{{- define "schedule-app.pgMetrics.passwordFile" -}}/run/secrets/metrics/password{{- end -}}

{{/* Secret holding the monitoring role's password: postgresql.existingSecret (which must then
     hold postgresql.metrics.passwordKey) or the chart's own <release>-postgresql-metrics. */}}
{{- define "schedule-app.pgMetrics.secretName" -}}
{{- default (include "schedule-app.componentName" (dict "root" . "component" "postgresql-metrics")) .Values.postgresql.existingSecret -}}
{{- end -}}

{{/* data of the generated Secret: the value given, else the one already in the cluster, else
     a new random one (schedule-app.secretValue). */}}
{{- define "schedule-app.pgMetrics.secretData" -}}
{{- $name := include "schedule-app.componentName" (dict "root" . "component" "postgresql-metrics") -}}
{{- $m := .Values.postgresql.metrics -}}
{{ $m.passwordKey }}: {{ include "schedule-app.secretValue" (dict "root" . "name" $name "key" $m.passwordKey "value" $m.password) }}
{{- end -}}

{{/* Creates the monitoring role, or brings it up to date: LOGIN and a member of pg_monitor
     (read access to the statistics views and settings, no table data), no other attribute, at
     most three connections. Run as the admin user by the migration Job's metrics-user init
     container (after the first install, before each upgrade), so a volume initialised before
     metrics were turned on gets it too, and the database pod's spec does not change. Env:
     METRICS_USER, METRICS_PASSWORD_FILE, PGUSER, PGDATABASE. */}}
{{- define "schedule-app.pgMetrics.userScript" -}}
set -euo pipefail
psql -X -q -v ON_ERROR_STOP=1 -U "$PGUSER" -d "$PGDATABASE" \
  -v metrics_user="$METRICS_USER" <<'SQL'
\set metrics_password `cat "$METRICS_PASSWORD_FILE"`
SELECT format('CREATE ROLE %I LOGIN', :'metrics_user')
  WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = :'metrics_user') \gexec
ALTER ROLE :"metrics_user" WITH LOGIN INHERIT NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION
  NOBYPASSRLS CONNECTION LIMIT 3 PASSWORD :'metrics_password';
GRANT pg_monitor TO :"metrics_user";
SQL
echo "monitoring user $METRICS_USER: login, member of pg_monitor only"
{{- end -}}

{{/* Env of a container that runs the role script. dict: root, file (password file). */}}
{{- define "schedule-app.pgMetrics.userEnv" -}}
- name: METRICS_USER
  value: {{ .root.Values.postgresql.metrics.username | quote }}
- name: METRICS_PASSWORD_FILE
  value: {{ .file }}
{{- end -}}

{{/* Volume with the monitoring role's password as the file "password". dict: root. */}}
{{- define "schedule-app.pgMetrics.passwordVolume" -}}
- name: metrics-password
  secret:
    secretName: {{ include "schedule-app.pgMetrics.secretName" .root }}
    defaultMode: 0440
    items:
      - key: {{ .root.Values.postgresql.metrics.passwordKey }}
        path: password
{{- end -}}
