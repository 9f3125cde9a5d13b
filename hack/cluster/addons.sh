#!/usr/bin/env bash
# The ingress controller and the platform add-ons of the built-in cluster; cluster.sh calls it:
#   hack/cluster/addons.sh up|wait|down
# up:   build (cached) and push their images, apply their manifests
# wait: until each one selected is ready
# down: remove what they leave outside the cluster's own state and data directories
# Settings: CLUSTER_ADDONS (all): the add-ons to run besides the ingress, "none" for none.
# cluster.sh passes CLUSTER_STATE, CLUSTER_DATA, CLUSTER_CACHE, CLUSTER_REGISTRY, CLUSTER_KUBECTL,
# CLUSTER_KUBECONFIG, CLUSTER_PKI, CLUSTER_INGRESS_PORT, CLUSTER_INGRESS_TLS_PORT, CLUSTER_INGRESS_HOST_IP.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=images.sh
. "$here/images.sh"  # versions, registry, build_push, ctx_hash, debian_base

STATE=${CLUSTER_STATE:-/run/schedule-ci/cluster}
DATA=${CLUSTER_DATA:-/var/lib/schedule-ci/cluster}
INGRESS_PORT=${CLUSTER_INGRESS_PORT:-18080}
INGRESS_TLS_PORT=${CLUSTER_INGRESS_TLS_PORT:-18443}
INGRESS_HOST_IP=${CLUSTER_INGRESS_HOST_IP:-127.0.0.1}

kubectl() { "${CLUSTER_KUBECTL:?}" --kubeconfig "${CLUSTER_KUBECONFIG:?}" "$@"; }
log() { echo "addons.sh: $*" >&2; }

wait_for() { # wait_for DESCRIPTION SECONDS COMMAND...: poll until COMMAND succeeds
  local what=$1 limit=$2; shift 2
  local end=$((SECONDS + limit))
  until "$@" >/dev/null 2>&1; do
    if ((SECONDS >= end)); then log "timed out after ${limit}s waiting for $what"; return 1; fi
    sleep 0.5
  done
}

# ---------------------------------------------------------------- ingress

ingress_up() {
  local image
  debian_base >/dev/null
  image=$(build_push "$repo/ingress-nginx:$(ctx_hash "$img/ingress/Dockerfile" "$img/ingress/controller.py")" "$img/ingress")
  sed -e "s#@INGRESS_IMAGE@#$image#g" -e "s#@INGRESS_HOST_IP@#$INGRESS_HOST_IP#g" \
    -e "s#@INGRESS_PORT@#$INGRESS_PORT#g" -e "s#@INGRESS_TLS_PORT@#$INGRESS_TLS_PORT#g" \
    "$here/manifests/ingress.yaml" | kubectl apply -f - >>"$STATE/logs/addons.log"
}

ingress_wait() {
  kubectl -n ingress-nginx rollout status deploy/ingress-nginx-controller --timeout 120s >/dev/null
  # the controller answers 404 on unknown hosts once it has its configuration
  wait_for "ingress on $INGRESS_HOST_IP:$INGRESS_PORT" 60 \
    bash -c "curl -s -o /dev/null -w '%{http_code}' http://$INGRESS_HOST_IP:$INGRESS_PORT/ | grep -q 404"
}

# ---------------------------------------------------------------- commands

img=$here/images
case ${1:-} in
  up) ingress_up ;;
  wait) ingress_wait ;;
  down) ;;
  *) echo "usage: $0 up|wait|down" >&2; exit 2 ;;
esac
