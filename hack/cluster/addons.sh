#!/usr/bin/env bash
# The ingress controller and the platform add-ons of the built-in cluster; cluster.sh calls it:
#   hack/cluster/addons.sh up|wait|down
# up:   build (cached) and push their images, apply their manifests, start the loopback forwards
# wait: until each one started is ready
# down: stop the forwards; everything else lives in the cluster's state and data directories
# The ingress (Traefik, with the Gateway API CRDs) always runs: the pipeline deploys behind it.
# CLUSTER_ADDONS selects the others: "all" (the default) or a list of prometheus, otel, jaeger, logs;
# "none" for none.
# cluster.sh passes CLUSTER_STATE, CLUSTER_DATA, CLUSTER_CACHE, CLUSTER_REGISTRY, CLUSTER_KUBECTL,
# CLUSTER_KUBECONFIG, CLUSTER_PKI, CLUSTER_INGRESS_PORT, CLUSTER_INGRESS_TLS_PORT, CLUSTER_INGRESS_HOST_IP.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=images.sh
. "$here/images.sh"  # versions, $cache, $repo, build_push, ctx_hash

STATE=$cluster_state  # paths.sh, through images.sh
DATA=$cluster_data
INGRESS_PORT=${CLUSTER_INGRESS_PORT:-18080}
INGRESS_TLS_PORT=${CLUSTER_INGRESS_TLS_PORT:-18443}
INGRESS_HOST_IP=${CLUSTER_INGRESS_HOST_IP:-127.0.0.1}
TRAEFIK_SERVICE_IP=10.96.0.80  # fixed, so the host's forward needs no lookup
ALL_ADDONS="prometheus otel jaeger logs"
case ${CLUSTER_ADDONS:-all} in
  all) ADDONS=$ALL_ADDONS ;;
  none) ADDONS="" ;;
  *) ADDONS=${CLUSTER_ADDONS//,/ } ;;
esac
img=$here/images
man=$here/manifests

kubectl() { "${CLUSTER_KUBECTL:?}" --kubeconfig "${CLUSTER_KUBECONFIG:?}" "$@"; }
log() { echo "addons.sh: $*" >&2; }
selected() { [[ " $ADDONS " == *" $1 "* ]]; }

wait_for() { # wait_for DESCRIPTION SECONDS COMMAND...: poll until COMMAND succeeds
  local what=$1 limit=$2; shift 2
  local end=$((SECONDS + limit))
  until "$@" >/dev/null 2>&1; do
    if ((SECONDS >= end)); then log "timed out after ${limit}s waiting for $what"; return 1; fi
    sleep 0.5
  done
}

render() { # render MANIFEST: fill the @PLACEHOLDERS@ from the environment of this script
  sed -e "s#@INGRESS_HOST_IP@#$INGRESS_HOST_IP#g" -e "s#@INGRESS_PORT@#$INGRESS_PORT#g" \
    -e "s#@INGRESS_TLS_PORT@#$INGRESS_TLS_PORT#g" -e "s#@TRAEFIK_SERVICE_IP@#$TRAEFIK_SERVICE_IP#g" \
    -e "s#@TRAEFIK_IMAGE@#${TRAEFIK_IMAGE:-}#g" -e "s#@DATA@#$DATA#g" "$man/$1"
}

# server-side: the CRDs are too large for the last-applied annotation of a client-side apply
apply() { kubectl apply --server-side --force-conflicts -f - >>"$STATE/logs/addons.log"; }
documents() { local f; for f in "$@"; do echo "---"; cat "$f"; done; }  # files as one YAML stream

established() { # established CRD...: served, so that objects of their kinds can be applied
  local crd
  for crd in "$@"; do
    # a CRD just created has no conditions yet, which kubectl wait reports as an error: retry
    wait_for "CRD $crd" 60 kubectl wait --for condition=Established --timeout 5s "crd/$crd"
  done
}

binary_image() { # binary_image NAME VERSION IMAGE-DIR FILE...: build NAME, then its image; prints the ref
  local name=$1 ver=$2 dir=$3; shift 3
  "$here/build-addons.sh" "$name"
  local files=() f
  for f in "$@"; do files+=("$cache/bin/$name-$ver/$f"); done
  build_push "$repo/$name:$ver-$(ctx_hash "$img/$dir"/*)" "$img/$dir" "${files[@]}"
}

# ---------------------------------------------------------------- ingress and Gateway API

forward() { # forward PORT: loopback PORT on the host to the same port of Traefik's Service
  local pidfile=$STATE/pids/forward-$1.pid
  [[ -f $pidfile ]] && kill -0 "$(cat "$pidfile")" 2>/dev/null && return 0
  "$here/../ensure-packages.sh" socat=socat
  setsid socat "TCP-LISTEN:$1,bind=$INGRESS_HOST_IP,reuseaddr,fork" "TCP:$TRAEFIK_SERVICE_IP:$1" \
    >"$STATE/logs/forward-$1.log" 2>&1 </dev/null &
  echo $! >"$pidfile"
}

ingress_up() {
  "$here/build-addons.sh" gateway-api
  # the standard channel's CRDs, straight from the module
  documents "$cache/bin/gateway-api-$GATEWAY_API_VERSION"/*.yaml | apply
  established gatewayclasses.gateway.networking.k8s.io gateways.gateway.networking.k8s.io \
    httproutes.gateway.networking.k8s.io
  TRAEFIK_IMAGE=$(binary_image traefik "$TRAEFIK_VERSION" traefik traefik)
  render traefik.yaml | apply
  forward "$INGRESS_PORT"
  forward "$INGRESS_TLS_PORT"
}

ingress_wait() {
  kubectl -n ingress-nginx rollout status deploy/traefik --timeout 120s >/dev/null
  # Traefik answers 404 on unknown hosts once its providers have synced
  wait_for "ingress on $INGRESS_HOST_IP:$INGRESS_PORT" 60 \
    bash -c "curl -s -o /dev/null -w '%{http_code}' http://$INGRESS_HOST_IP:$INGRESS_PORT/ | grep -q 404"
  kubectl -n ingress-nginx wait --for condition=Programmed gateway/local --timeout 60s >/dev/null
}

# ---------------------------------------------------------------- Prometheus

prometheus_up() {
  "$here/build-addons.sh" prometheus-operator
  local op=$cache/bin/prometheus-operator-$PROM_OPERATOR_VERSION
  documents "$op"/crds/*.yaml | apply
  established prometheuses.monitoring.coreos.com servicemonitors.monitoring.coreos.com
  local operator_image prometheus_image ksm_image release
  operator_image=$(binary_image prometheus-operator "$PROM_OPERATOR_VERSION" prometheus-operator \
    operator prometheus-config-reloader)
  prometheus_image=$(binary_image prometheus "$PROMETHEUS_VERSION" prometheus prometheus)
  ksm_image=$(binary_image kube-state-metrics "$KSM_VERSION" kube-state-metrics kube-state-metrics)
  release=v3.$(echo "${PROMETHEUS_VERSION#v0.}" | awk -F. '{printf "%d.%s", substr($1,2), $2}')
  # its ServiceMonitor of Traefik goes into Traefik's namespace, which ingress_up creates meanwhile
  wait_for "namespace ingress-nginx" 120 kubectl get namespace ingress-nginx
  { cat "$op/prometheus-operator-cluster-role.yaml"; echo "---"; render prometheus.yaml
    echo "---"; render kube-state-metrics.yaml; } |
    sed -e "s#@PROM_OPERATOR_IMAGE@#$operator_image#g" -e "s#@PROMETHEUS_IMAGE@#$prometheus_image#g" \
      -e "s#@PROMETHEUS_RELEASE@#$release#g" -e "s#@KSM_IMAGE@#$ksm_image#g" | apply
}

prometheus_ready() { # the operator made the StatefulSet and Prometheus answers ready
  kubectl -n monitoring get statefulset prometheus-local &&
    kubectl -n monitoring rollout status statefulset/prometheus-local --timeout 5s
}

prometheus_wait() {
  kubectl -n monitoring rollout status deploy/prometheus-operator --timeout 120s >/dev/null
  kubectl -n monitoring rollout status deploy/kube-state-metrics --timeout 120s >/dev/null
  wait_for "Prometheus (statefulset monitoring/prometheus-local)" 180 prometheus_ready
}

# ---------------------------------------------------------------- Jaeger, VictoriaLogs, collector

jaeger_up() {
  local image
  image=$(binary_image jaeger "$JAEGER_VERSION" jaeger jaeger)
  render jaeger.yaml | sed -e "s#@JAEGER_IMAGE@#$image#g" \
    -e "s#@JAEGER_CONFIG_HASH@#$(ctx_hash "$man/jaeger.yaml")#g" | apply
}

jaeger_wait() { kubectl -n monitoring rollout status deploy/jaeger --timeout 120s >/dev/null; }

logs_up() {
  local image
  image=$(binary_image victorialogs "$VICTORIALOGS_VERSION" victorialogs victoria-logs)
  render victorialogs.yaml | sed -e "s#@VICTORIALOGS_IMAGE@#$image#g" | apply
}

logs_wait() { kubectl -n monitoring rollout status deploy/victorialogs --timeout 120s >/dev/null; }

otel_up() { # traces and logs go to Jaeger and VictoriaLogs when those run, else to the debug exporter
  local image traces=debug logs=debug
  image=$(binary_image otelcol "$OTELCOL_VERSION" otel-collector otelcol)
  selected jaeger && traces=otlp/jaeger
  selected logs && logs=otlphttp/victorialogs
  render otel-collector.yaml | sed -e "s#@OTEL_IMAGE@#$image#g" -e "s#@PODLOGS@#$DATA/pod-logs#g" \
    -e "s#@TRACES_EXPORTERS@#$traces#g" -e "s#@LOGS_EXPORTERS@#$logs#g" \
    -e "s#@OTEL_CONFIG_HASH@#$(echo "$traces $logs" | cat - "$man/otel-collector.yaml" | ctx_hash)#g" | apply
}

otel_wait() { kubectl -n observability rollout status ds/otel-collector --timeout 120s >/dev/null; }

# ---------------------------------------------------------------- commands

timed() { # timed NAME: run NAME_up and log how long it took
  local t0=$SECONDS
  "${1}_up"
  log "$1 applied in $((SECONDS - t0)) s"
}

up() { # all at once: the API server's time goes mostly into the CRDs, which do not depend on each other
  echo "$ADDONS" >"$STATE/addons"  # for cluster-test: what was started
  local a pids=() failed=0
  for a in $ADDONS; do
    [[ " $ALL_ADDONS " == *" $a "* ]] || { log "unknown add-on $a (known: $ALL_ADDONS)"; return 2; }
  done
  for a in $ADDONS ingress; do timed "$a" & pids+=($!); done
  for a in "${pids[@]}"; do wait "$a" || failed=1; done
  return "$failed"
}

wait_all() {
  ingress_wait
  local a
  for a in $ADDONS; do "${a}_wait"; done
}

down() { # the forwards are processes on the host; the rest goes with the cluster's directories
  local f
  for f in "$STATE"/pids/forward-*.pid; do
    [[ -f $f ]] || continue
    kill -- "-$(cat "$f")" 2>/dev/null || true  # socat and the children it forked per connection
    rm -f "$f"
  done
  wait_for "the ingress forwards to exit" 5 bash -c "! pgrep -f 'soca[t] .*TCP:$TRAEFIK_SERVICE_IP:'" || {
    log "left behind: $(pgrep -af "soca[t] .*TCP:$TRAEFIK_SERVICE_IP:" | tr '\n' ' ')"
    return 1
  }
}

case ${1:-} in
  up) up ;;
  wait) wait_all ;;
  down) down ;;
  *) echo "usage: $0 up|wait|down" >&2; exit 2 ;;
esac
