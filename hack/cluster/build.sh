#!/usr/bin/env bash
# Build (once) the binaries the built-in cluster runs, from the Go module proxy, into a cache
# shared by every clone on the machine:
#   hack/cluster/build.sh [k8s|etcd|coredns|pause|localpath|metrics|netpol|all]
# The cache is keyed by version, so a second cluster-up (or a new clone) never recompiles.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/versions.sh"
# shellcheck source=paths.sh
. "$here/paths.sh"
export PATH=$PATH:/usr/local/go/bin
export GOTOOLCHAIN=${GOTOOLCHAIN:-local} GOFLAGS=${GOFLAGS:--mod=mod} CGO_ENABLED=0
cache=$cluster_cache
work=$cache/src
mkdir -p "$cache/bin" "$work"

log() { echo "build.sh: $*" >&2; }

# A throwaway module that requires MODULE@VERSION with extra go.mod lines (replace directives).
wrapper() { # dir module version [go.mod extra lines on stdin]
  local dir=$1 mod=$2 ver=$3
  rm -rf "$dir" && mkdir -p "$dir"
  { echo "module wrapper"; echo; echo "go 1.24"; echo; echo "require $mod $ver"; cat; } >"$dir/go.mod"
}

k8s_replaces() { # the staging modules are v0.0.0 in k8s.io/kubernetes' go.mod; pin them to v0.MINOR.PATCH
  local stage=v0.${K8S_VERSION#v1.}
  local gomod
  gomod=$(go mod download -json "k8s.io/kubernetes@$K8S_VERSION" | sed -n 's/.*"GoMod": "\(.*\)".*/\1/p')
  grep '=> ./staging' "$gomod" | awk -v v="$stage" '{print "replace " $1 " => " $1 " " v}'
}

build_k8s() {
  local out=$cache/bin/k8s-$K8S_VERSION
  [[ -x $out/kubelet && -x $out/kubectl ]] && return 0
  log "building Kubernetes $K8S_VERSION (7-10 min on 2 idle cores, much longer under load)"
  local dir=$work/k8s-$K8S_VERSION
  k8s_replaces | wrapper "$dir" k8s.io/kubernetes "$K8S_VERSION"
  local cmds=(kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy kubectl)
  local pkgs=("${cmds[@]/#/k8s.io/kubernetes/cmd/}")
  local v=k8s.io/component-base/version cv=k8s.io/client-go/pkg/version
  local major=1 minor
  minor=$(echo "$K8S_VERSION" | cut -d. -f2)
  local ld="-s -w"
  for p in $v $cv; do
    ld+=" -X $p.gitVersion=$K8S_VERSION -X $p.gitMajor=$major -X $p.gitMinor=$minor"
    ld+=" -X $p.gitTreeState=clean -X $p.buildDate=1970-01-01T00:00:00Z"
  done
  (cd "$dir" && go get "${pkgs[@]/%/@$K8S_VERSION}" &&
    mkdir -p "$out.tmp" && go build -trimpath -ldflags "$ld" -o "$out.tmp/" "${pkgs[@]}")
  rm -rf "$out" && mv "$out.tmp" "$out"
}

build_etcd() {
  local out=$cache/bin/etcd-$ETCD_VERSION
  [[ -x $out/etcd ]] && return 0
  log "building etcd $ETCD_VERSION"
  local dir=$work/etcd-$ETCD_VERSION
  wrapper "$dir" go.etcd.io/etcd/server/v3 "$ETCD_VERSION" </dev/null
  (cd "$dir" && go get "go.etcd.io/etcd/server/v3@$ETCD_VERSION" &&
    mkdir -p "$out.tmp" && go build -trimpath -ldflags "-s -w" -o "$out.tmp/etcd" go.etcd.io/etcd/server/v3)
  rm -rf "$out" && mv "$out.tmp" "$out"
}

build_coredns() {
  local out=$cache/bin/coredns-$COREDNS_VERSION
  [[ -x $out/coredns ]] && return 0
  log "building CoreDNS $COREDNS_VERSION"
  local dir=$work/coredns-$COREDNS_VERSION
  wrapper "$dir" github.com/coredns/coredns "$COREDNS_VERSION" </dev/null
  (cd "$dir" && go get "github.com/coredns/coredns@$COREDNS_VERSION" &&
    mkdir -p "$out.tmp" && go build -trimpath -ldflags "-s -w" -o "$out.tmp/coredns" github.com/coredns/coredns)
  rm -rf "$out" && mv "$out.tmp" "$out"
}

build_localpath() {
  local out=$cache/bin/local-path-$LOCAL_PATH_VERSION
  [[ -x $out/local-path-provisioner ]] && return 0
  log "building local-path-provisioner $LOCAL_PATH_VERSION"
  local dir=$work/local-path-$LOCAL_PATH_VERSION m=github.com/rancher/local-path-provisioner
  wrapper "$dir" "$m" "$LOCAL_PATH_VERSION" </dev/null
  (cd "$dir" && go get "$m@$LOCAL_PATH_VERSION" &&
    mkdir -p "$out.tmp" && go build -trimpath -ldflags "-s -w" -o "$out.tmp/local-path-provisioner" "$m")
  rm -rf "$out" && mv "$out.tmp" "$out"
}

build_metrics() {
  local out=$cache/bin/metrics-server-$METRICS_SERVER_VERSION
  [[ -x $out/metrics-server ]] && return 0
  log "building metrics-server $METRICS_SERVER_VERSION"
  local dir=$work/metrics-server-$METRICS_SERVER_VERSION m=sigs.k8s.io/metrics-server
  wrapper "$dir" "$m" "$METRICS_SERVER_VERSION" </dev/null
  # its release build stamps the version into client-go's, which /version and the logs report
  local p=k8s.io/client-go/pkg/version
  local ld="-s -w -X $p.gitVersion=$METRICS_SERVER_VERSION -X $p.buildDate=1970-01-01T00:00:00Z"
  (cd "$dir" && go get "$m/cmd/metrics-server@$METRICS_SERVER_VERSION" &&
    mkdir -p "$out.tmp" && go build -trimpath -ldflags "$ld" -o "$out.tmp/metrics-server" "$m/cmd/metrics-server")
  rm -rf "$out" && mv "$out.tmp" "$out"
}

build_netpol() { # the NetworkPolicy agent kind runs: nftables rules plus an NFQUEUE verdict per new flow
  local out=$cache/bin/kube-network-policies-$NETPOL_VERSION
  [[ -x $out/kube-network-policies ]] && return 0
  log "building kube-network-policies $NETPOL_VERSION"
  local dir=$work/kube-network-policies-$NETPOL_VERSION m=sigs.k8s.io/kube-network-policies
  wrapper "$dir" "$m" "$NETPOL_VERSION" </dev/null
  # the module's command is its ./cmd package (the upstream image calls it /bin/netpol)
  (cd "$dir" && go get "$m/cmd@$NETPOL_VERSION" &&
    mkdir -p "$out.tmp" && go build -trimpath -ldflags "-s -w" -o "$out.tmp/kube-network-policies" "$m/cmd")
  rm -rf "$out" && mv "$out.tmp" "$out"
}

build_pause() { # a static pause: sleep until a signal; no libc needed
  local out=$cache/bin/pause-1
  [[ -x $out/pause ]] && return 0
  mkdir -p "$out.tmp"
  gcc -static -Os -o "$out.tmp/pause" "$here/images/pause/pause.c"
  strip "$out.tmp/pause"
  rm -rf "$out" && mv "$out.tmp" "$out"
}

# timed NAME DIR: run build_NAME; when it compiled, note the seconds in DIR/.build-seconds.
# One build of a component at a time (a lock per component, as in build-addons.sh): a second
# cluster-up, or another clone's, waits for the build under way instead of removing its folder.
timed() {
  local name=$1 out=$2 t0=$SECONDS
  [[ -d $out ]] && return 0
  exec 8>"$cache/bin/.$name.lock"
  flock 8
  [[ -d $out ]] && { exec 8>&-; return 0; }
  "build_$name"
  echo $((SECONDS - t0)) >"$out/.build-seconds"
  exec 8>&-
  log "$name built in $((SECONDS - t0)) s"
}

case ${1:-all} in
  k8s) timed k8s "$cache/bin/k8s-$K8S_VERSION" ;;
  etcd) timed etcd "$cache/bin/etcd-$ETCD_VERSION" ;;
  coredns) timed coredns "$cache/bin/coredns-$COREDNS_VERSION" ;;
  pause) timed pause "$cache/bin/pause-1" ;;
  localpath) timed localpath "$cache/bin/local-path-$LOCAL_PATH_VERSION" ;;
  metrics) timed metrics "$cache/bin/metrics-server-$METRICS_SERVER_VERSION" ;;
  netpol) timed netpol "$cache/bin/kube-network-policies-$NETPOL_VERSION" ;;
  all)
    timed pause "$cache/bin/pause-1"
    timed etcd "$cache/bin/etcd-$ETCD_VERSION"
    timed coredns "$cache/bin/coredns-$COREDNS_VERSION"
    timed localpath "$cache/bin/local-path-$LOCAL_PATH_VERSION"
    timed metrics "$cache/bin/metrics-server-$METRICS_SERVER_VERSION"
    timed netpol "$cache/bin/kube-network-policies-$NETPOL_VERSION"
    timed k8s "$cache/bin/k8s-$K8S_VERSION"
    ;;
  *) echo "usage: $0 [k8s|etcd|coredns|pause|localpath|metrics|netpol|all]" >&2; exit 2 ;;
esac
