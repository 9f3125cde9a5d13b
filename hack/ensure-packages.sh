#!/usr/bin/env bash
# Install the Debian packages whose commands are missing, so every make target works on a fresh
# machine. Arguments are COMMAND=PACKAGE pairs; a COMMAND starting with / is a file that must be
# executable, one of the form file:PATH a file that must exist (a library or header: libc6-dev's
# libc.a for static builds), one of the form python3:MODULE a module python3 must import (Debian
# splits ensurepip, which `python3 -m venv` needs, into python3-venv). Nothing is installed (and
# apt is not touched) when every command is present.
#   hack/ensure-packages.sh debootstrap=debootstrap docker-registry=docker-registry python3:ensurepip=python3-venv
set -euo pipefail
missing=()
for pair in "$@"; do
  cmd=${pair%%=*} pkg=${pair#*=}
  if [[ $cmd == /* ]]; then [[ -x $cmd ]] || missing+=("$pkg")
  elif [[ $cmd == file:* ]]; then [[ -e ${cmd#file:} ]] || missing+=("$pkg")
  elif [[ $cmd == python3:* ]]; then python3 -c "import ${cmd#python3:}" >/dev/null 2>&1 || missing+=("$pkg")
  else command -v "$cmd" >/dev/null 2>&1 || missing+=("$pkg"); fi
done
((${#missing[@]})) || exit 0
echo "ensure-packages: installing ${missing[*]}" >&2
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
