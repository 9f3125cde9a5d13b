#!/usr/bin/env bash
# Check the running built-in cluster end to end and print how long each check took:
# node Ready, CoreDNS answering, a two-replica Deployment running an image just pushed to the
# local registry, its Service reached from another pod by DNS name, a StatefulSet PVC bound on
# the default StorageClass, an Ingress of class nginx answering on the local ports (HTTP, TLS),
# NetworkPolicies enforced (a pod of another namespace refused by a deny-all policy and admitted by
# one that selects its namespace; the Ingress answering where only namespace ingress-nginx is
# admitted), `kubectl top node` giving numbers and a CPU HorizontalPodAutoscaler reading a
# utilisation (metrics-server behind the aggregation layer); and the platform: an HTTPRoute
# answering through Traefik's Gateway, Prometheus scraping a test ServiceMonitor's target and
# kube-state-metrics' series of the test Deployment (under its own namespace label), a span
# sent over OTLP to the collector found through Jaeger's API, a test pod's log line found in
# VictoriaLogs. An add-on left out at start-up (CLUSTER_ADDONS) is reported SKIP, never PASS.
#   hack/cluster/test.sh        (exit 0 when every check passed; leaves nothing behind)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=paths.sh
. "$here/paths.sh"
STATE=$cluster_state
json=$STATE/cluster.json
[[ -f $json ]] || { echo "test: no running cluster ($json missing); run make cluster-up" >&2; exit 1; }
field() { python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])' "$json" "$1"; }
KUBECTL=$(field kubectl)
KUBECONFIG=$(field kubeconfig)
REGISTRY=$(field registry)
INGRESS_URL=$(field ingress_url)
TLS_URL=$(field ingress_tls_url)
NODE=$(field node_name)
# shellcheck source=/dev/null  # written by cluster.sh at start-up
. "$STATE/images.env"
NS=cluster-test
PEER_NS=$NS-peer
TOKEN=token-$(date +%s)-$$
IMAGE=$REGISTRY/cluster/test-web:$TOKEN
k() { "$KUBECTL" --kubeconfig "$KUBECONFIG" "$@"; }
now() { date +%s.%N; }
failed=0 passed=0 skipped=0
# the add-ons cluster-up started (addons.sh writes them; the ingress always runs)
ADDONS=$(cat "$STATE/addons" 2>/dev/null || echo "")

check() { # check NAME COMMAND...: run, time and report one check
  local name=$1 t0 out
  shift
  t0=$(now)
  if out=$("$@" 2>&1); then
    passed=$((passed + 1))
    printf '  PASS %-52s %6.1f s\n' "$name" "$(awk -v a="$t0" -v b="$(now)" 'BEGIN{print b-a}')"
  else
    failed=$((failed + 1))
    printf '  FAIL %-52s %6.1f s\n' "$name" "$(awk -v a="$t0" -v b="$(now)" 'BEGIN{print b-a}')"
    printf '%s\n' "$out" | tail -n 15 | sed 's/^/       /'
  fi
}

addon_check() { # addon_check ADDON[,ADDON] NAME COMMAND...: needs those add-ons; SKIP if left out
  local addon
  for addon in ${1//,/ }; do
    [[ " $ADDONS " == *" $addon "* ]] && continue
    skipped=$((skipped + 1))
    printf '  SKIP %-52s (add-on %s not started: CLUSTER_ADDONS)\n' "$2" "$addon"
    return 0
  done
  shift
  check "$@"
}

retry() { # retry SECONDS COMMAND...: until it succeeds
  local end=$((SECONDS + $1)); shift
  until "$@"; do ((SECONDS < end)) || return 1; sleep 1; done
}

cleanup() { k delete namespace "$NS" "$PEER_NS" --ignore-not-found --wait=false >/dev/null 2>&1 || true; }
trap cleanup EXIT

node_ready() {
  [[ $(k get node "$NODE" -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}') == True ]]
}

push_image() { # an image only this run has: proves the pods run what was pushed
  local ctx
  ctx=$(mktemp -d)
  # /www/metrics.txt: a Prometheus text exposition (".txt" makes httpd send text/plain, which
  # Prometheus 3 needs to parse it)
  printf 'FROM %s\nRUN mkdir -p /www && echo %s > /www/index.html && echo "cluster_test_up 1" > /www/metrics.txt\n' \
    "$BUSYBOX_IMAGE" "$TOKEN" >"$ctx/Dockerfile"
  docker build -q -t "$IMAGE" "$ctx" && docker push -q "$IMAGE"
  rm -rf "$ctx"
}

apply_workloads() {
  sed -e "s#@IMAGE@#$IMAGE#g" -e "s#@BUSYBOX_IMAGE@#$BUSYBOX_IMAGE#g" -e "s#@NS@#$NS#g" \
    "$here/manifests/test-workloads.yaml" | k apply -f -
}

deployment_running() {
  k -n "$NS" rollout status deploy/web --timeout 120s &&
    [[ $(k -n "$NS" get pods -l app=web --field-selector status.phase=Running -o name | wc -l) == 2 ]] &&
    k -n "$NS" get pods -l app=web -o jsonpath='{.items[*].status.containerStatuses[0].image}' | grep -q "$TOKEN"
}

client() { k -n "$NS" exec client -- "$@"; }
client_ready() { k -n "$NS" wait --for=condition=Ready pod/client --timeout 120s; }
dns_answers() { client nslookup kubernetes.default.svc.cluster.local | grep -q 'Address.*10\.96\.0\.1'; }
# HTTP by hand over nc: Debian's static busybox wget crashes (SIGSEGV) on this glibc/kernel
service_by_dns() {
  client sh -c "printf 'GET / HTTP/1.0\r\nHost: web\r\n\r\n' | nc -w 5 web.$NS.svc.cluster.local 80" |
    grep -q "$TOKEN"
}

pvc_bound() {
  retry 120 bash -c "[[ \$('$KUBECTL' --kubeconfig '$KUBECONFIG' -n $NS get pvc data-store-0 -o jsonpath='{.status.phase}' 2>/dev/null) == Bound ]]" &&
    k -n "$NS" wait --for=condition=Ready pod/store-0 --timeout 120s &&
    k -n "$NS" exec store-0 -- cat /data/hello | grep -q "$TOKEN"
}

# ---- NetworkPolicy: the web pods, seen from the peer pod of another namespace and from the Ingress
peer_reaches() {
  k -n "$PEER_NS" exec peer -- sh -c \
    "printf 'GET / HTTP/1.0\r\nHost: web\r\n\r\n' | nc -w 3 web.$NS.svc.cluster.local 80" | grep -q "$TOKEN"
}
peer_refused() { ! peer_reaches; }
peer_reaches_unrestricted() { # before any policy: proves the refusals below come from the policies
  k -n "$PEER_NS" wait --for=condition=Ready pod/peer --timeout 120s && retry 60 peer_reaches
}

policy() { # policy NAME POD-SELECTOR [SOURCE-NAMESPACE]: admit that namespace, or nothing at all
  local from='[]'
  [[ -n ${3:-} ]] && from='[{"from": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "'$3'"}}}]}]'
  k -n "$NS" apply -f - <<EOF
{"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy", "metadata": {"name": "$1"},
 "spec": {"podSelector": $2, "policyTypes": ["Ingress"], "ingress": $from}}
EOF
}

deny_all_refuses() { # the whole namespace closed: the peer pod and the ingress controller alike
  policy deny-all '{}' && retry 30 peer_refused && ingress_refused
}

ingress_only_admitted() { # web open to namespace ingress-nginx only: the Ingress answers, the peer not
  policy web-from-ingress '{"matchLabels": {"app": "web"}}' ingress-nginx &&
    retry 30 ingress_answers && peer_refused
}

namespace_admitted() { policy web-from-peer '{"matchLabels": {"app": "web"}}' "$PEER_NS" && retry 30 peer_reaches; }

ingress_refused() { ! curl -fsS -m 4 -H 'Host: web.cluster-test.local' "$INGRESS_URL/" >/dev/null 2>&1; }

ingress_answers() { curl -fsS -m 5 -H 'Host: web.cluster-test.local' "$INGRESS_URL/" | grep -q "$TOKEN"; }

tls_secret() { # a self-signed certificate for the test host, as a kubernetes.io/tls Secret; as with
  # ingress-nginx, a TLS host redirects HTTP to HTTPS unless told not to (the checks below use HTTP)
  local dir
  dir=$(mktemp -d)
  openssl req -x509 -nodes -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -days 1 \
    -subj /CN=web.cluster-test.local -addext subjectAltName=DNS:web.cluster-test.local \
    -keyout "$dir/tls.key" -out "$dir/tls.crt" 2>/dev/null
  cp "$dir/tls.crt" "$STATE/test-ingress.crt"
  k -n "$NS" create secret tls web-tls --cert "$dir/tls.crt" --key "$dir/tls.key" &&
    k -n "$NS" patch ingress web --type merge \
      -p '{"metadata":{"annotations":{"nginx.ingress.kubernetes.io/ssl-redirect":"false"}},"spec":{"tls":[{"hosts":["web.cluster-test.local"],"secretName":"web-tls"}]}}'
  rm -rf "$dir"
}

ingress_tls_answers() { # verified against the Secret's certificate
  local port=${TLS_URL##*:}
  curl -fsS -m 5 --cacert "$STATE/test-ingress.crt" \
    --resolve "web.cluster-test.local:$port:127.0.0.1" "https://web.cluster-test.local:$port/" |
    grep -q "$TOKEN"
}

# ---- platform add-ons
proxy() { # proxy NAMESPACE SERVICE:PORT PATH: GET through the API server's service proxy
  k get --raw "/api/v1/namespaces/$1/services/$2/proxy$3"
}

httproute() { # an HTTPRoute on the Gateway ingress-nginx/local, for its own host name
  k -n "$NS" apply -f - <<EOF
{"apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute", "metadata": {"name": "web"},
 "spec": {"parentRefs": [{"name": "local", "namespace": "ingress-nginx"}],
          "hostnames": ["route.cluster-test.local"],
          "rules": [{"backendRefs": [{"name": "web", "port": 80}]}]}}
EOF
}

httproute_answers() {
  curl -fsS -m 5 -H 'Host: route.cluster-test.local' "$INGRESS_URL/" | grep -q "$TOKEN"
}

target_up() { # Prometheus lists the ServiceMonitor's targets, healthy
  proxy monitoring prometheus:9090 /api/v1/targets | python3 -c '
import json, sys
pool = "serviceMonitor/'"$NS"'/web/0"
targets = [t for t in json.load(sys.stdin)["data"]["activeTargets"] if t["scrapePool"] == pool]
sys.exit(0 if targets and all(t["health"] == "up" for t in targets) else 1)'
}

servicemonitor_scraped() { # the web pods' /metrics.txt, every 5 s
  k -n "$NS" apply -f - <<EOF
{"apiVersion": "monitoring.coreos.com/v1", "kind": "ServiceMonitor", "metadata": {"name": "web"},
 "spec": {"selector": {"matchLabels": {"app": "web"}},
          "endpoints": [{"targetPort": 8080, "path": "/metrics.txt", "interval": "5s"}]}}
EOF
  # the operator writes the config Secret; the kubelet refreshes the mounted copy on its own
  # sync period (a minute or more on a loaded node) before the reloader sees it
  retry 240 target_up
}

ksm_series() { # kube-state-metrics' series of the test Deployment, under its own namespace label
  proxy monitoring prometheus:9090 \
    "/api/v1/query?query=kube_deployment_status_replicas_available%7Bnamespace%3D%22$NS%22%2Cdeployment%3D%22web%22%7D" |
    python3 -c 'import json, sys; r = json.load(sys.stdin)["data"]["result"]; sys.exit(0 if r and float(r[0]["value"][1]) == 2 else 1)'
}

span_json() { # one span of service cluster-test-TOKEN, in OTLP/JSON
  python3 - "$1" "$TOKEN" <<'PY'
import json, sys, time
trace_id, token = sys.argv[1], sys.argv[2]
now = time.time_ns()
print(json.dumps({"resourceSpans": [{
    "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "cluster-test-" + token}}]},
    "scopeSpans": [{"spans": [{"traceId": trace_id, "spanId": trace_id[:16], "name": "cluster-test",
                               "kind": 2, "startTimeUnixNano": str(now - 5_000_000),
                               "endTimeUnixNano": str(now)}]}]}]}))
PY
}

span_sent() { # from the client pod to the collector's Service, by the name the chart defaults to
  local body
  body=$(span_json "$TRACE_ID")
  client sh -c "printf 'POST /v1/traces HTTP/1.0\r\nHost: otel-collector\r\nContent-Type: application/json\r\nContent-Length: ${#body}\r\n\r\n%s' '$body' |
    nc -w 5 otel-collector.observability 4318" | head -n 1 | grep -q ' 200 '
}

span_found() { proxy monitoring jaeger:16686 "/api/traces/$TRACE_ID" | grep -q "cluster-test-$TOKEN"; }

log_found() { # LogsQL: the line, with the pod's namespace added by the collector
  proxy monitoring victorialogs:9428 "/select/logsql/query?query=%22cluster-test-log-$TOKEN%22" |
    grep "cluster-test-log-$TOKEN" | grep -q "\"k8s.namespace.name\":\"$NS\""
}

log_stored() { # a pod that writes one line with this run's token, then the line in the store
  k -n "$NS" run logger --image "$BUSYBOX_IMAGE" --restart Never -- \
    sh -c "echo cluster-test-log-$TOKEN; exec sleep 3600" >/dev/null &&
    retry 90 log_found
}

# "ci-delivery-steps   123m   6%   1510Mi   19%": metrics-server answers through the aggregation layer
top_node() { k top node "$NODE" --no-headers | grep -Eq "^$NODE +[0-9]+m +[0-9]+% +[0-9]+Mi +[0-9]+%"; }

hpa_utilisation() { # the HPA's current CPU utilisation: a number, not <unknown>
  local pct
  pct=$(k -n "$NS" get hpa cpu -o jsonpath='{.status.currentMetrics[0].resource.current.averageUtilization}')
  [[ $pct =~ ^[0-9]+$ ]] && ((pct > 0)) && echo "cpu at ${pct}% of its request"
}

echo "cluster checks (node $NODE, ingress $INGRESS_URL):"
t_all=$(now)
# a previous run's namespace may still be terminating: wait for it to go
k delete namespace "$NS" "$PEER_NS" --ignore-not-found --timeout 120s >/dev/null
check "node Ready" retry 60 node_ready
check "image pushed to the local registry" push_image
check "workloads applied" apply_workloads
check "client pod Ready" client_ready
check "CoreDNS answers kubernetes.default" retry 60 dns_answers
check "Deployment: 2 replicas Running (registry image)" deployment_running
check "Service reached from a pod by DNS name" retry 60 service_by_dns
check "StatefulSet PVC Bound (default StorageClass)" pvc_bound
check "Ingress (class nginx) answers on $INGRESS_URL" retry 60 ingress_answers
check "TLS Secret added to the Ingress" tls_secret
check "Ingress TLS answers on $TLS_URL" retry 60 ingress_tls_answers
check "HTTPRoute applied (Gateway ingress-nginx/local)" httproute
check "HTTPRoute answers through Traefik on $INGRESS_URL" retry 60 httproute_answers
addon_check prometheus "Prometheus scrapes a test ServiceMonitor's targets" servicemonitor_scraped
addon_check prometheus "kube-state-metrics: the Deployment's replicas in Prometheus" retry 120 ksm_series
TRACE_ID=$(openssl rand -hex 16)
addon_check otel "span sent over OTLP to otel-collector.observability" retry 30 span_sent
addon_check otel,jaeger "the span found through Jaeger's query API" retry 60 span_found
addon_check otel,logs "a pod's log line found in VictoriaLogs (LogsQL)" log_stored
check "pod of another namespace reaches web (no policy)" peer_reaches_unrestricted
check "NetworkPolicy deny-all refuses it and the Ingress" deny_all_refuses
check "Ingress answers with only ingress-nginx admitted" ingress_only_admitted
check "NetworkPolicy selecting its namespace admits it" namespace_admitted
check "kubectl top node returns numbers" retry 60 top_node
check "HPA on CPU reports a current utilisation" retry 150 hpa_utilisation
printf 'checks took %.1f s; cluster start took %s s (recorded in %s)\n' \
  "$(awk -v a="$t_all" -v b="$(now)" 'BEGIN{print b-a}')" "$(field startup_seconds)" "$json"
echo "$passed passed, $failed failed, $skipped skipped"
((failed == 0))
