#!/usr/bin/env bash
# Install the Debian packages whose commands are missing, so every make target works on a fresh
# machine. Arguments are COMMAND=PACKAGE pairs; a COMMAND starting with / is a file that must be
# executable. Nothing is installed (and apt is not touched) when every command is present.
#   hack/ensure-packages.sh debootstrap=debootstrap docker-registry=docker-registry
set -euo pipefail
missing=()
for pair in "$@"; do
  cmd=${pair%%=*} pkg=${pair#*=}
  if [[ $cmd == /* ]]; then [[ -x $cmd ]] || missing+=("$pkg")
  else command -v "$cmd" >/dev/null 2>&1 || missing+=("$pkg"); fi
done
((${#missing[@]})) || exit 0
echo "ensure-packages: installing ${missing[*]}" >&2
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
