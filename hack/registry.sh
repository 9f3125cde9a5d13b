#!/usr/bin/env bash
# Start, stop or query the local OCI registry (Debian's docker-registry) on 127.0.0.1.
#   hack/registry.sh up|down|status
# REGISTRY_ADDR (default 127.0.0.1:5000), REGISTRY_DIR (storage, default $ci_cache_home/registry)
# and REGISTRY_RUN (pid, config and log; default $ci_run_dir/registry): folders of hack/dirs.sh.
set -euo pipefail
# shellcheck source=hack/dirs.sh
. "$(dirname "$0")/dirs.sh"
addr=${REGISTRY_ADDR:-127.0.0.1:5000}
dir=${REGISTRY_DIR:-$ci_cache_home/registry}
run=${REGISTRY_RUN:-$(ci_prefer_legacy "$ci_run_dir/registry" /run/schedule-ci-registry)}
mkdir -p "$run"
pidfile=$run/registry.pid

up() {
  "$(dirname "$0")/ensure-packages.sh" curl=curl
  if curl -fsS "http://$addr/v2/" >/dev/null 2>&1; then return 0; fi
  if ! command -v docker-registry >/dev/null 2>&1; then
    "$(dirname "$0")/ensure-packages.sh" docker-registry=docker-registry
    # The package starts a system service on :5000; this script manages its own instance.
    systemctl stop docker-registry >/dev/null 2>&1 || service docker-registry stop >/dev/null 2>&1 || true
    pkill -x docker-registry >/dev/null 2>&1 || true
  fi
  mkdir -p "$dir"
  cat >"$run/config.yml" <<CFG
version: 0.1
log:
  level: warn
storage:
  filesystem:
    rootdirectory: $dir
  delete:
    enabled: true
http:
  addr: $addr
CFG
  nohup docker-registry serve "$run/config.yml" >"$run/registry.log" 2>&1 &
  echo $! >"$pidfile"
  for _ in $(seq 1 50); do
    if curl -fsS "http://$addr/v2/" >/dev/null 2>&1; then return 0; fi
    sleep 0.2
  done
  echo "registry.sh: registry did not answer on $addr; log:" >&2
  tail -n 20 "$run/registry.log" >&2
  return 1
}

down() {
  if [ -f "$pidfile" ]; then
    kill "$(cat "$pidfile")" >/dev/null 2>&1 || true
    rm -f "$pidfile"
  fi
}

case "${1:-}" in
  up) up ;;
  down) down ;;
  status) curl -fsS "http://$addr/v2/" >/dev/null && echo "registry up on $addr" ;;
  *) echo "usage: $0 up|down|status" >&2; exit 2 ;;
esac
