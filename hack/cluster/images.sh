#!/usr/bin/env bash
# Build the cluster's own images and push them to the local registry, skipping any tag the
# registry already has (tags carry the version and a hash of the build context, so a change
# rebuilds and an unchanged warm start costs one HTTP request per image).
#   hack/cluster/images.sh            build/push all, print "name=ref" lines
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/versions.sh"
# shellcheck source=paths.sh
. "$here/paths.sh"
cache=$cluster_cache
registry=${CLUSTER_REGISTRY:-127.0.0.1:5000}
repo=$registry/cluster

log() { echo "images.sh: $*" >&2; }

# hash of the files that make an image: its directory plus any extra files given
ctx_hash() { cat "$@" | sha256sum | cut -c1-10; }

in_registry() { # ref -> success when the registry serves its manifest
  local ref=$1 name tag
  name=${ref#"$registry"/}; tag=${name##*:}; name=${name%:*}
  curl -fs -o /dev/null -H 'Accept: application/vnd.docker.distribution.manifest.v2+json' \
    "http://$registry/v2/$name/manifests/$tag"
}

# build_push REF DIR [SOURCE[=NAME] to copy into the context...]
build_push() {
  local ref=$1 dir=$2; shift 2
  if in_registry "$ref"; then echo "$ref"; return 0; fi
  log "building $ref"
  local ctx
  ctx=$(mktemp -d)
  cp -a "$dir"/. "$ctx"/
  local f
  for f in "$@"; do
    if [[ $f == *=* ]]; then cp -a "${f%%=*}" "$ctx/${f#*=}"; else cp -a "$f" "$ctx"/; fi
  done
  docker build -q -t "$ref" "$ctx" >/dev/null
  docker push -q "$ref" >/dev/null
  rm -rf "$ctx"
  echo "$ref"
}

debian_base() { # a Debian minbase image made with debootstrap (no image can be pulled)
  local ref=$repo/debian:bookworm
  if in_registry "$ref"; then echo "$ref"; return 0; fi
  if ! docker image inspect "$ref" >/dev/null 2>&1; then
    "$here/../ensure-packages.sh" debootstrap=debootstrap
    local root
    root=$(mktemp -d)
    log "debootstrap bookworm (about 30 s)"
    debootstrap --variant=minbase bookworm "$root" http://deb.debian.org/debian >/dev/null
    tar -C "$root" -c . | docker import - "$ref" >/dev/null
    rm -rf "$root"
  fi
  docker push -q "$ref" >/dev/null
  echo "$ref"
}

busybox_rootfs() { # Debian's static busybox, unpacked with its applet links
  local out=$cache/busybox-rootfs
  [[ -x $out/bin/busybox ]] && return 0
  "$here/../ensure-packages.sh" busybox=busybox-static
  rm -rf "$out" && mkdir -p "$out/bin" "$out/tmp" "$out/etc"
  cp "$(command -v busybox)" "$out/bin/busybox"
  for applet in $("$out/bin/busybox" --list); do
    [[ $applet == busybox ]] || ln -sf busybox "$out/bin/$applet"
  done
  echo 'root:x:0:0:root:/root:/bin/sh' >"$out/etc/passwd"
  echo 'nobody:x:65534:65534:nobody:/:/bin/sh' >>"$out/etc/passwd"
  chmod 1777 "$out/tmp"
}

# sourced (by addons.sh): only the functions above
[[ ${BASH_SOURCE[0]} == "$0" ]] || return 0

"$here/build.sh" pause
"$here/build.sh" coredns
"$here/build.sh" localpath
"$here/build.sh" metrics
"$here/build.sh" netpol
busybox_rootfs
img=$here/images
k=$cache/bin
# assign before printing, so that a failed build stops the script (set -e)
ref=$(build_push "$repo/pause:3.10-$(ctx_hash "$img/pause/Dockerfile" "$img/pause/pause.c")" "$img/pause" "$k/pause-1/pause")
echo "pause=$ref"
ref=$(build_push "$repo/coredns:$COREDNS_VERSION" "$img/coredns" "$k/coredns-$COREDNS_VERSION/coredns")
echo "coredns=$ref"
tree=$(cd "$cache/busybox-rootfs" && find . -printf '%p %l %s\n' | sort | sha256sum | cut -c1-6)
ref=$(build_push "$repo/busybox:1.35-$(ctx_hash "$img/busybox/Dockerfile")$tree" "$img/busybox" \
  "$cache/busybox-rootfs=rootfs")
echo "busybox=$ref"
ref=$(build_push "$repo/local-path-provisioner:$LOCAL_PATH_VERSION" "$img/local-path" \
  "$k/local-path-$LOCAL_PATH_VERSION/local-path-provisioner")
echo "localpath=$ref"
ref=$(debian_base)
echo "debian=$ref"
ref=$(build_push "$repo/metrics-server:$METRICS_SERVER_VERSION-$(ctx_hash "$img/metrics-server/Dockerfile")" \
  "$img/metrics-server" "$k/metrics-server-$METRICS_SERVER_VERSION/metrics-server")
echo "metrics=$ref"
ref=$(build_push "$repo/kube-network-policies:$NETPOL_VERSION-$(ctx_hash "$img/network-policies/Dockerfile")" \
  "$img/network-policies" "$k/kube-network-policies-$NETPOL_VERSION/kube-network-policies")
echo "netpol=$ref"
