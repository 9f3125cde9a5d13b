#!/usr/bin/env bash
# Start (or reuse) a Docker Engine on this machine. Installs docker.io from Debian if missing.
# Idempotent: exits 0 at once when a daemon already answers.
set -euo pipefail
log=${DOCKERD_LOG:-/var/log/ci-dockerd.log}
if docker info >/dev/null 2>&1; then exit 0; fi
"$(dirname "$0")/ensure-packages.sh" dockerd=docker.io
nohup dockerd --host unix:///var/run/docker.sock >"$log" 2>&1 &
for _ in $(seq 1 60); do
  if docker info >/dev/null 2>&1; then exit 0; fi
  sleep 0.5
done
echo "dockerd.sh: docker daemon did not start; last lines of $log:" >&2
tail -n 20 "$log" >&2
exit 1
