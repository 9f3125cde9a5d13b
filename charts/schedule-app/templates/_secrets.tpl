{{/* Credentials: generated Secrets, the files they become, and the checksum that rolls the
     backend when one changes. */}}

{{/* data of the generated database Secret (none with existingSecret). */}}
{{- define "schedule-app.db.secretData" -}}
{{- $name := include "schedule-app.componentName" (dict "root" . "component" "db") -}}
{{- if .Values.postgresql.enabled -}}
{{- $pg := .Values.postgresql -}}
{{ $pg.passwordKey }}: {{ include "schedule-app.secretValue" (dict "root" . "name" $name "key" $pg.passwordKey "value" $pg.password) }}
{{ $pg.adminPasswordKey }}: {{ include "schedule-app.secretValue" (dict "root" . "name" $name "key" $pg.adminPasswordKey "value" $pg.adminPassword) }}
{{- else -}}
{{- $db := .Values.externalDatabase -}}
{{ $db.passwordKey }}: {{ $db.password | toString | b64enc }}
{{- end -}}
{{- end -}}

{{/* data of the generated RabbitMQ Secret (none with existingSecret). */}}
{{- define "schedule-app.mq.secretData" -}}
{{- $mq := ternary .Values.rabbitmq .Values.externalRabbitmq .Values.rabbitmq.enabled -}}
{{- $name := include "schedule-app.componentName" (dict "root" . "component" "rabbitmq") -}}
{{ $mq.passwordKey }}: {{ include "schedule-app.secretValue" (dict "root" . "name" $name "key" $mq.passwordKey "value" $mq.password) }}
{{- end -}}

{{/* Whether the chart makes the database / RabbitMQ Secret (else existingSecret names it). */}}
{{- define "schedule-app.db.ownSecret" -}}
{{- $db := ternary .Values.postgresql .Values.externalDatabase .Values.postgresql.enabled -}}
{{- if not $db.existingSecret }}true{{ end -}}
{{- end -}}

{{- define "schedule-app.mq.ownSecret" -}}
{{- $mq := ternary .Values.rabbitmq .Values.externalRabbitmq .Values.rabbitmq.enabled -}}
{{- if not $mq.existingSecret }}true{{ end -}}
{{- end -}}

{{/* Hash of every credential value the chart knows: a new password or a changed
     backend.secretEnv gives the pods a new annotation, so they restart and read it. Values in
     an existingSecret are not visible to the chart: restart the pods after changing one. */}}
{{- define "schedule-app.backend.secretChecksum" -}}
{{- $parts := list -}}
{{- if include "schedule-app.db.ownSecret" . }}{{ $parts = append $parts (include "schedule-app.db.secretData" .) }}{{ end -}}
{{- if include "schedule-app.mq.ownSecret" . }}{{ $parts = append $parts (include "schedule-app.mq.secretData" .) }}{{ end -}}
{{- $parts = append $parts (toYaml .Values.backend.secretEnv) -}}
{{- $parts = append $parts (list .Values.postgresql.existingSecret .Values.externalDatabase.existingSecret .Values.rabbitmq.existingSecret .Values.externalRabbitmq.existingSecret .Values.backend.existingSecret | join ",") -}}
{{- join "\n" $parts | sha256sum -}}
{{- end -}}

{{/* Where the backend reads its credentials: Spring Boot's configtree import (the file name
     is the property name). */}}
{{- define "schedule-app.backend.secretsDir" -}}/run/secrets/schedule{{- end -}}

{{/* Projected volume of the backend's credential files. dict: root, admin (bool: the
     migration, which connects as the schema owner and needs no broker or application secret). */}}
{{- define "schedule-app.backend.secretsVolume" -}}
{{- $root := .root -}}
projected:
  defaultMode: 0440
  sources:
    - secret:
        name: {{ include "schedule-app.db.secretName" $root }}
        items:
          - key: {{ ternary (include "schedule-app.db.adminSecretKey" $root) (include "schedule-app.db.secretKey" $root) .admin }}
            path: spring.datasource.password
    {{- if not .admin }}
    - secret:
        name: {{ include "schedule-app.mq.secretName" $root }}
        items:
          - key: {{ include "schedule-app.mq.secretKey" $root }}
            path: spring.rabbitmq.password
    {{- if $root.Values.backend.secretEnv }}
    - secret:
        name: {{ include "schedule-app.componentName" (dict "root" $root "component" "backend") }}
    {{- end }}
    {{- with $root.Values.backend.existingSecret }}
    - secret:
        name: {{ . }}
    {{- end }}
    {{- end }}
{{- end -}}

{{/* Creates the application's database user, or brings it up to date (password, grants): a
     login role that is no superuser, may not create roles or databases, and may read and
     write the rows of the schema's tables, not change the schema. The migrations run as the
     admin user, which owns the tables; default privileges grant the application user the
     tables they create. Run as the admin user, on the first start of the bundled server
     (/docker-entrypoint-initdb.d, local socket) and before each migration (PGHOST, PGPASSFILE).
     Env: APP_USER, APP_PASSWORD_FILE; PGUSER/PGDATABASE or POSTGRES_USER/POSTGRES_DB. */}}
{{- define "schedule-app.db.appUserScript" -}}
set -euo pipefail
admin=${PGUSER:-$POSTGRES_USER}
psql -X -q -v ON_ERROR_STOP=1 -U "$admin" -d "${PGDATABASE:-$POSTGRES_DB}" \
  -v app_user="$APP_USER" -v admin_user="$admin" <<'SQL'
\set app_password `cat "$APP_PASSWORD_FILE"`
SELECT format('CREATE ROLE %I LOGIN', :'app_user')
  WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = :'app_user') \gexec
ALTER ROLE :"app_user" WITH LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS
  PASSWORD :'app_password';
SELECT format('GRANT CONNECT, TEMPORARY ON DATABASE %I TO %I', current_database(), :'app_user') \gexec
REVOKE CREATE ON SCHEMA public FROM PUBLIC;
GRANT USAGE ON SCHEMA public TO :"app_user";
GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO :"app_user";
GRANT USAGE, SELECT, UPDATE ON ALL SEQUENCES IN SCHEMA public TO :"app_user";
ALTER DEFAULT PRIVILEGES FOR ROLE :"admin_user" IN SCHEMA public
  GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO :"app_user";
ALTER DEFAULT PRIVILEGES FOR ROLE :"admin_user" IN SCHEMA public
  GRANT USAGE, SELECT, UPDATE ON SEQUENCES TO :"app_user";
SQL
echo "database user $APP_USER: login, no superuser, read and write access to the tables"
{{- end -}}
