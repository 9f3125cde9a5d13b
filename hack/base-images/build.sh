#!/usr/bin/env bash
# Build the local base images from Debian packages (no image can be pulled on this machine) and push
# them to the local registry, where the cluster pulls them:
#   hack/base-images/build.sh [NAME...]        (default: all, in dependency order)
# local/debian:SUITE comes from a debootstrap rootfs (tarball cached in $CI_CACHE); every other image
# is hack/base-images/NAME/Dockerfile FROM local/debian of its suite: bookworm, except the servers whose
# bookworm packages are older than the chart's default majors (PostgreSQL, RabbitMQ: trixie). Those are
# tagged with their suite and also :bookworm, the tag that names the whole local set. Each image carries a label with the hash of its inputs
# (Dockerfile, context files, parent image id), so an unchanged image is neither rebuilt nor re-pushed.
# Images of a pinned Go tool (postgres-exporter) copy its binary from $TOOLS_DIR (`make tools`).
# Env: CI_CACHE (default: the toolkit cache of hack/dirs.sh, ~/.cache/ci-delivery-steps), BASE_REGISTRY (default 127.0.0.1:5000/base; empty: no
# push), DEBIAN_MIRROR (default http://deb.debian.org/debian).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=hack/dirs.sh
. "$here/../dirs.sh"
cache=$ci_cache_home/base-images
registry=${BASE_REGISTRY-127.0.0.1:5000/base}
mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
suite=bookworm
set_tag=$suite # the tag every local base image carries (functions below have a local $suite)
label=org.schedule-ci.base-hash
all=(debian maven jre node nginx pgclient postgres rabbitmq postgres-exporter)
declare -A suite_of=([pgclient]=trixie [postgres]=trixie [rabbitmq]=trixie)
# image -> the pinned tool binary (ci/tools/specs.py) copied into its build context
declare -A binary_of=([postgres-exporter]=postgres_exporter)
tools_dir=${TOOLS_DIR:-$here/../../.tools/bin}
export DOCKER_BUILDKIT=0

log() { echo "base-images: $*" >&2; }
die() { log "error: $*"; exit 1; }
now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1fs", b - a }'; }

image_label() { # image -> the hash label, empty when the image is absent or unlabelled
  docker image inspect --format "{{ index .Config.Labels \"$label\" }}" "$1" 2>/dev/null || true
}

suite_for() { echo "${suite_of[$1]:-$suite}"; }

tool_binary() { # name -> the pinned binary its image copies, empty for images of Debian packages
  local bin=${binary_of[$1]:-}
  [[ -n $bin ]] || return 0
  [[ -x $tools_dir/$bin ]] || die "$1 needs $tools_dir/$bin: run \`make tools\` first"
  readlink -f "$tools_dir/$bin"
}

rootfs_tarball() { # suite -> the debootstrap tarball, made once; later runs reuse the cached one
  local suite=$1 tar=$cache/debian-$1-minbase.tar
  if [[ -s $tar ]]; then echo "$tar"; return 0; fi
  "$here/../ensure-packages.sh" debootstrap=debootstrap || die "could not install debootstrap"
  mkdir -p "$cache"
  local dir t0
  dir=$(mktemp -d "$cache/rootfs.XXXXXX")
  t0=$(now)
  log "debootstrap --variant=minbase $suite (about 30 s)"
  debootstrap --variant=minbase "$suite" "$dir" "$mirror" >"$cache/debootstrap-$suite.log" 2>&1 ||
    { rm -rf "$dir"; die "debootstrap failed; see $cache/debootstrap-$suite.log"; }
  tar --numeric-owner -C "$dir" -cf "$tar.tmp" . && mv "$tar.tmp" "$tar"
  rm -rf "$dir"
  log "rootfs tarball $tar ($(since "$t0"))"
  echo "$tar"
}

build_rootfs() { # suite -> local/debian-rootfs:SUITE, the plain debootstrap import
  local suite=$1 ref=local/debian-rootfs:$1 tar hash
  tar=$(rootfs_tarball "$suite")
  hash=$(stat -c '%s-%Y' "$tar")
  [[ $(image_label "$ref") == "$hash" ]] && return 0
  docker import --change "LABEL $label=$hash" --change 'CMD ["bash"]' "$tar" "$ref" >/dev/null
}

context_hash() { # name parent-ref -> hash of the Dockerfile dir and the parent image id
  local name=$1 parent=$2
  {
    docker image inspect --format '{{.Id}}' "$parent"
    echo "$parent"
    (cd "$here/$name" && find . -type f -print0 | sort -z | xargs -0 sha256sum)
    if [[ $name == debian ]]; then cat /usr/local/share/ca-certificates/*.crt 2>/dev/null || true; fi
    local bin
    bin=$(tool_binary "$name")
    if [[ -n $bin ]]; then sha256sum <"$bin"; fi
  } | sha256sum | cut -c1-16
}

build_image() { # name [suite] -> local/NAME:SUITE built from hack/base-images/NAME/Dockerfile
  local name=$1 suite=${2:-$(suite_for "$1")}
  local ref=local/$1:$suite parent=local/debian:$suite ctx=$here/$1 hash tmp
  local args=()
  if [[ $name == debian ]]; then
    build_rootfs "$suite"
    parent=local/debian-rootfs:$suite
    args=(--build-arg "SUITE=$suite")
  fi
  [[ -f $ctx/Dockerfile ]] || die "no Dockerfile for $name in $ctx"
  hash=$(context_hash "$name" "$parent")
  if [[ $(image_label "$ref") == "$hash" ]]; then log "$ref up to date"; alias_tag "$name" "$suite"; return 0; fi
  tmp=$(mktemp -d)
  cp -r "$ctx/." "$tmp/"
  if [[ $name == debian ]]; then # trust the machine's extra CAs (a TLS-intercepting egress)
    mkdir -p "$tmp/certs"
    cp /usr/local/share/ca-certificates/*.crt "$tmp/certs/" 2>/dev/null || true
  fi
  local bin
  bin=$(tool_binary "$name")
  if [[ -n $bin ]]; then cp "$bin" "$tmp/${binary_of[$name]}"; fi
  log "building $ref"
  if ! docker build -q "${args[@]}" --label "$label=$hash" -t "$ref" "$tmp" >"$cache/build-$name.log" 2>&1; then
    rm -rf "$tmp"
    tail -n 30 "$cache/build-$name.log" >&2
    die "building $ref failed; full log: $cache/build-$name.log"
  fi
  rm -rf "$tmp"
  alias_tag "$name" "$suite"
}

alias_tag() { # name suite -> also local/NAME:bookworm for an image of another suite
  if [[ $1 != debian && $2 != "$set_tag" ]]; then docker tag "local/$1:$2" "local/$1:$set_tag"; fi
}

push_image() { # name [tag] -> REGISTRY/NAME:TAG, skipped when the registry already has this image
  local tag=${2:-$set_tag}
  local ref=local/$1:$tag remote=$registry/$1:$tag have want
  docker tag "$ref" "$remote"
  want=$(docker image inspect --format '{{ range .RepoDigests }}{{ println . }}{{ end }}' "$ref" |
    sed -n "s|^$registry/$1@||p" | head -n1)
  have=$({ curl -fsSI -H 'Accept: application/vnd.docker.distribution.manifest.v2+json' \
    "http://${registry%%/*}/v2/${registry#*/}/$1/manifests/$tag" 2>/dev/null || true; } |
    tr -d '\r' | sed -n 's/^[Dd]ocker-[Cc]ontent-[Dd]igest: //p')
  if [[ -n $want && $want == "$have" ]]; then log "$remote already pushed"; return 0; fi
  docker push -q "$remote" >"$cache/push-$1.log" 2>&1 ||
    { cat "$cache/push-$1.log" >&2; die "pushing $remote failed"; }
}

set_state() { # what a whole run depends on, in one hash: inputs, local images, pushed digests
  local name bin urls=()
  {
    (cd "$here" && find . -type f -print0 | sort -z | xargs -0 sha256sum)
    cat /usr/local/share/ca-certificates/*.crt 2>/dev/null || true
    for name in "${all[@]}"; do
      bin=$(tool_binary "$name")
      if [[ -n $bin ]]; then stat -c '%n %s %Y %i' "$bin"; fi
    done
    docker image ls --no-trunc --format '{{.Repository}}:{{.Tag}} {{.ID}}' | grep '^local/' | sort
    echo "$registry"
    if [[ -n $registry ]]; then
      for name in "${all[@]}"; do
        urls+=("http://${registry%%/*}/v2/${registry#*/}/$name/manifests/$set_tag")
        [[ $(suite_for "$name") == "$set_tag" ]] ||
          urls+=("http://${registry%%/*}/v2/${registry#*/}/$name/manifests/$(suite_for "$name")")
      done
      # one curl for every manifest: a missing one prints no digest and changes the hash
      curl -sI -H 'Accept: application/vnd.docker.distribution.manifest.v2+json' "${urls[@]}" 2>/dev/null |
        tr -d '\r' | sed -n 's/^[Dd]ocker-[Cc]ontent-[Dd]igest: //p'
    fi
  } | sha256sum | cut -c1-32
}

main() {
  local names=("$@") t0 total state=""
  [[ ${#names[@]} -gt 0 ]] || names=("${all[@]}")
  docker info >/dev/null 2>&1 || die "no docker daemon answers (start it: hack/dockerd.sh)"
  if [[ -n $registry ]]; then
    curl -fsS "http://${registry%%/*}/v2/" >/dev/null 2>&1 ||
      die "registry ${registry%%/*} does not answer (start it: hack/registry.sh up)"
  fi
  mkdir -p "$cache"
  # The whole set, unchanged since a run that built and pushed it: answered from one hash
  # (one docker call and one curl) instead of a dozen inspections per image.
  if [[ $# -eq 0 ]]; then
    state=$(set_state)
    if [[ -f $cache/set.state && $(cat "$cache/set.state") == "$state" ]]; then
      log "all up to date (inputs, local images and pushed digests unchanged)"
      return 0
    fi
    rm -f "$cache/set.state"
  fi
  for name in "${names[@]}"; do
    [[ -d $here/$name ]] || die "unknown base image '$name' (known: ${all[*]})"
  done
  total=$(now)
  build_image debian "$suite" # every other image starts FROM local/debian of its suite
  for name in "${names[@]}"; do
    t0=$(now)
    local own
    own=$(suite_for "$name")
    if [[ $name != debian ]]; then
      [[ $own == "$suite" ]] || build_image debian "$own"
      build_image "$name"
    fi
    if [[ -n $registry ]]; then
      push_image "$name"
      [[ $own == "$suite" ]] || push_image "$name" "$own"
    fi
    log "$name done in $(since "$t0")"
  done
  log "all done in $(since "$total")"
  # the state after this run (tags and pushes may have changed it), for the next one
  if [[ -n $state ]]; then set_state >"$cache/set.state"; fi
}

main "$@"
