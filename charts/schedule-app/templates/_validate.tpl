{{/* Checks of values that the schema cannot express (comparisons between keys) or that it
     would only report vaguely. Each failure names the key and what to do; rendered once, from
     validate.yaml, so `helm template`, `helm lint` and `helm install` all stop on them. */}}

{{/* A Kubernetes quantity as a plain number (cores or bytes): "250m" -> 0.25, "1Gi" ->
     1073741824. dict: value. */}}
{{- define "schedule-app.quantity" -}}
{{- $s := toString .value -}}
{{- $num := regexFind "^[0-9]+(\\.[0-9]+)?" $s -}}
{{- $suffix := trimPrefix $num $s -}}
{{- $units := dict "" 1.0 "m" 0.001 "k" 1000.0 "M" 1000000.0 "G" 1000000000.0 "T" 1000000000000.0 "Ki" 1024.0 "Mi" 1048576.0 "Gi" 1073741824.0 "Ti" 1099511627776.0 -}}
{{- if not (hasKey $units $suffix) -}}
{{- fail (printf "unsupported quantity %q" $s) -}}
{{- end -}}
{{- mulf (float64 $num) (index $units $suffix) -}}
{{- end -}}

{{- define "schedule-app.validate.resources" -}}
{{- range $component := list "backend" "frontend" "dbtools" "postgresql" "rabbitmq" -}}
{{- $r := (index $.Values $component).resources -}}
{{- range $res := list "cpu" "memory" -}}
{{- $req := index ($r.requests | default dict) $res -}}
{{- $lim := index ($r.limits | default dict) $res -}}
{{- if and $req $lim -}}
{{- if gt (float64 (include "schedule-app.quantity" (dict "value" $req))) (float64 (include "schedule-app.quantity" (dict "value" $lim))) -}}
{{- fail (printf "%s.resources.requests.%s (%v) is above %s.resources.limits.%s (%v): a request may not exceed its limit" $component $res $req $component $res $lim) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "schedule-app.validate.replicas" -}}
{{- $as := .Values.backend.autoscaling -}}
{{- if and $as.enabled (gt (int $as.minReplicas) (int $as.maxReplicas)) -}}
{{- fail (printf "backend.autoscaling.minReplicas (%v) is above backend.autoscaling.maxReplicas (%v)" $as.minReplicas $as.maxReplicas) -}}
{{- end -}}
{{- /* A PodDisruptionBudget that admits no eviction blocks every node drain. */ -}}
{{- range $component := list "backend" "frontend" -}}
{{- $v := index $.Values $component -}}
{{- if $v.pdb.enabled -}}
{{- $replicas := $v.replicaCount -}}
{{- $what := printf "%s.replicaCount" $component -}}
{{- if and (eq $component "backend") $v.autoscaling.enabled -}}
{{- $replicas = $v.autoscaling.minReplicas -}}
{{- $what = "backend.autoscaling.minReplicas" -}}
{{- end -}}
{{- if ge (int $v.pdb.minAvailable) (int $replicas) -}}
{{- fail (printf "%s.pdb.minAvailable (%v) must be below %s (%v): otherwise no %s pod may ever be evicted and node drains hang; lower it or set %s.pdb.enabled=false" $component $v.pdb.minAvailable $what $replicas $component $component) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "schedule-app.validate.credentials" -}}
{{- range $key := list "postgresql" "externalDatabase" "rabbitmq" "externalRabbitmq" -}}
{{- $v := index $.Values $key -}}
{{- if and $v.existingSecret $v.password -}}
{{- fail (printf "%s.password and %s.existingSecret are both set: the Secret would win and the password be ignored; set only one" $key $key) -}}
{{- end -}}
{{- end -}}
{{- $pg := .Values.postgresql -}}
{{- if and $pg.existingSecret $pg.adminPassword -}}
{{- fail "postgresql.adminPassword and postgresql.existingSecret are both set: the Secret would win and the password be ignored; set only one" -}}
{{- end -}}
{{- if and $pg.enabled (eq $pg.username $pg.adminUsername) -}}
{{- fail (printf "postgresql.username (%q) must differ from postgresql.adminUsername: the application connects as a user that is not a superuser" $pg.username) -}}
{{- end -}}
{{- if and $pg.enabled (eq $pg.passwordKey $pg.adminPasswordKey) -}}
{{- fail "postgresql.passwordKey and postgresql.adminPasswordKey must differ: the two users have passwords of their own" -}}
{{- end -}}
{{- end -}}

{{- define "schedule-app.validate.images" -}}
{{- range $key := list "backend" "frontend" "dbtools" "postgresql" "rabbitmq" -}}
{{- $_ := include "schedule-app.image" (dict "image" (index $.Values $key).image "root" $ "key" $key) -}}
{{- end -}}
{{- end -}}

{{- define "schedule-app.validate" -}}
{{- include "schedule-app.validate.images" . -}}
{{- include "schedule-app.validate.resources" . -}}
{{- include "schedule-app.validate.replicas" . -}}
{{- include "schedule-app.validate.credentials" . -}}
{{- $_ := include "schedule-app.fullname" . -}}
{{- end -}}
