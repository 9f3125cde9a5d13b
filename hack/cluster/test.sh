#!/usr/bin/env bash
# Check the running built-in cluster end to end and print how long each check took:
# node Ready, CoreDNS answering, a two-replica Deployment running an image just pushed to the
# local registry, its Service reached from another pod by DNS name, a StatefulSet PVC bound on
# the default StorageClass, an Ingress of class nginx answering on the local ports (HTTP, TLS),
# NetworkPolicies enforced (a pod of another namespace refused by a deny-all policy and admitted by
# one that selects its namespace; the Ingress answering where only namespace ingress-nginx is
# admitted), `kubectl top node` giving numbers and a CPU HorizontalPodAutoscaler reading a
# utilisation (metrics-server behind the aggregation layer).
#   hack/cluster/test.sh        (exit 0 when every check passed; leaves nothing behind)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
STATE=${CLUSTER_STATE:-/run/schedule-ci/cluster}
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
failed=0 passed=0

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
  printf 'FROM %s\nRUN mkdir -p /www && echo %s > /www/index.html\n' "$BUSYBOX_IMAGE" "$TOKEN" >"$ctx/Dockerfile"
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

tls_secret() { # a self-signed certificate for the test host, as a kubernetes.io/tls Secret
  local dir
  dir=$(mktemp -d)
  openssl req -x509 -nodes -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -days 1 \
    -subj /CN=web.cluster-test.local -addext subjectAltName=DNS:web.cluster-test.local \
    -keyout "$dir/tls.key" -out "$dir/tls.crt" 2>/dev/null
  cp "$dir/tls.crt" "$STATE/test-ingress.crt"
  k -n "$NS" create secret tls web-tls --cert "$dir/tls.crt" --key "$dir/tls.key" &&
    k -n "$NS" patch ingress web --type merge \
      -p '{"spec":{"tls":[{"hosts":["web.cluster-test.local"],"secretName":"web-tls"}]}}'
  rm -rf "$dir"
}

ingress_tls_answers() { # verified against the Secret's certificate
  local port=${TLS_URL##*:}
  curl -fsS -m 5 --cacert "$STATE/test-ingress.crt" \
    --resolve "web.cluster-test.local:$port:127.0.0.1" "https://web.cluster-test.local:$port/" |
    grep -q "$TOKEN"
}

# "schedule-ci   123m   6%   1510Mi   19%": metrics-server answers through the aggregation layer
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
check "pod of another namespace reaches web (no policy)" peer_reaches_unrestricted
check "NetworkPolicy deny-all refuses it and the Ingress" deny_all_refuses
check "Ingress answers with only ingress-nginx admitted" ingress_only_admitted
check "NetworkPolicy selecting its namespace admits it" namespace_admitted
check "kubectl top node returns numbers" retry 60 top_node
check "HPA on CPU reports a current utilisation" retry 150 hpa_utilisation
printf 'checks took %.1f s; cluster start took %s s (recorded in %s)\n' \
  "$(awk -v a="$t_all" -v b="$(now)" 'BEGIN{print b-a}')" "$(field startup_seconds)" "$json"
echo "$passed passed, $failed failed"
((failed == 0))
