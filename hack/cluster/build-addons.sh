#!/usr/bin/env bash
# Build (once) the platform add-ons from the Go module proxy into the binary cache that build.sh
# fills, keyed by version:
#   hack/cluster/build-addons.sh traefik|gateway-api|prometheus-operator|prometheus|kube-state-metrics|otelcol|jaeger|victorialogs
#   hack/cluster/build-addons.sh crds   prints the paths of the upstream Gateway API and monitoring
#                                       CRDs the cluster installs (taken from their modules, nothing
#                                       compiled); `ci chart validate` reads the same pins as
#                                       schemas that `ci tools install crds` converts
# Otherwise prints nothing; the binaries land in $CLUSTER_CACHE/bin/NAME-VERSION/. One build of a component
# at a time (a lock per component), so cluster-up waits for a build already under way.
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

log() { echo "build-addons.sh: $*" >&2; }

wrapper() { # dir module version: a throwaway module that requires MODULE@VERSION
  local dir=$1 mod=$2 ver=$3
  rm -rf "$dir" && mkdir -p "$dir"
  printf 'module wrapper\n\ngo 1.24\n\nrequire %s %s\n' "$mod" "$ver" >"$dir/go.mod"
}

gobuild() { # gobuild NAME MODULE VERSION LDFLAGS PKG=BINARY...: go get and build into $out.tmp
  local name=$1 mod=$2 ver=$3 ld=$4; shift 4
  local dir=$work/$name-$ver spec
  wrapper "$dir" "$mod" "$ver"
  mkdir -p "$out.tmp"
  for spec in "$@"; do (cd "$dir" && go get "${spec%%=*}@$ver"); done
  for spec in "$@"; do
    (cd "$dir" && go build -trimpath -ldflags "-s -w $ld" -o "$out.tmp/${spec#*=}" "${spec%%=*}")
  done
}

moddir() { go mod download -json "$1@$2" | sed -n 's/.*"Dir": "\(.*\)".*/\1/p'; }

# Traefik is built as the main module: a wrapper would drop its replace directives (forks of
# go-http-auth, mux, minheap). Its ACME provider imports every DNS-01 provider of lego, and the
# module proxy refuses the SDKs of several (403 "This module version is not available": sakuracloud,
# huaweicloud, oraclecloud, ucloud, ...), so lego's provider table is replaced by one that has
# none: certificates come from Secrets here, never from ACME DNS-01 challenges. The web UI's
# assets are not in the module either (webui/static is empty): built without the dashboard.
# (v3.7 cannot be built: see README.md, "Traefik".)
build_traefik() {
  local m=github.com/traefik/traefik/v3 dir=$work/traefik-$TRAEFIK_VERSION src lego legomod legover
  rm -rf "$dir" && mkdir -p "$dir" "$out.tmp"
  src=$(cd "$work" && moddir $m "$TRAEFIK_VERSION")
  cp -r "$src" "$dir/traefik" && chmod -R u+w "$dir/traefik"
  legomod=$(awk '$1 ~ "^github.com/go-acme/lego/v[0-9]+$" && $2 ~ /^v/ {print $1; exit}' "$dir/traefik/go.mod")
  legover=$(awk -v m="$legomod" '$1 == m {print $2; exit}' "$dir/traefik/go.mod")
  lego=$(cd "$work" && moddir "$legomod" "$legover")
  cp -r "$lego" "$dir/lego" && chmod -R u+w "$dir/lego"
  rm -f "$dir"/lego/providers/dns/*.go
  cat >"$dir/lego/providers/dns/dns_providers.go" <<'GO'
// Package dns: this build carries no DNS-01 challenge providers (their SDKs are not all served).
package dns

import (
	"fmt"

	"LEGO/challenge"
)

// NewDNSChallengeProviderByName always fails: no DNS-01 provider is built in.
func NewDNSChallengeProviderByName(name string) (challenge.Provider, error) {
	return nil, fmt.Errorf("DNS-01 provider %q is not built in", name)
}
GO
  sed -i "s#LEGO/#$legomod/#" "$dir/lego/providers/dns/dns_providers.go"
  printf '\nreplace %s => ../lego\n' "$legomod" >>"$dir/traefik/go.mod"
  (cd "$dir/traefik" && go build -trimpath -ldflags "-s -w -X $m/pkg/version.Version=$TRAEFIK_VERSION" \
    -o "$out.tmp/traefik" ./cmd/traefik)
}

build_gateway_api() { # the standard channel's CRDs, taken from the module (not kept in the repository)
  local dir
  dir=$(cd "$work" && moddir sigs.k8s.io/gateway-api "$GATEWAY_API_VERSION")
  [[ -f $dir/config/crd/standard/gateway.networking.k8s.io_httproutes.yaml ]] || return 1
  mkdir -p "$out.tmp" && cp "$dir"/config/crd/standard/*.yaml "$out.tmp/"
  chmod 644 "$out.tmp"/*.yaml
}

build_prometheus_operator() { # the operator, its config reloader, and its CRDs from the module
  local m=github.com/prometheus-operator/prometheus-operator v=github.com/prometheus/common/version
  local ld="-X $v.Version=${PROM_OPERATOR_VERSION#v} -X $v.Revision=release -X $v.Branch=release"
  gobuild prometheus-operator $m "$PROM_OPERATOR_VERSION" "$ld" \
    "$m/cmd/operator=operator" "$m/cmd/prometheus-config-reloader=prometheus-config-reloader"
  local dir
  dir=$(cd "$work/prometheus-operator-$PROM_OPERATOR_VERSION" && moddir $m "$PROM_OPERATOR_VERSION")
  mkdir -p "$out.tmp/crds" && cp "$dir"/example/prometheus-operator-crd/*.yaml "$out.tmp/crds/"
  cp "$dir"/example/rbac/prometheus-operator/prometheus-operator-cluster-role.yaml "$out.tmp/"
  chmod 644 "$out.tmp"/crds/*.yaml "$out.tmp"/*.yaml
}

build_monitoring_crds() { # the operator's CRDs alone, from its module, without compiling anything
  local dir
  dir=$(cd "$work" && moddir github.com/prometheus-operator/prometheus-operator "$PROM_OPERATOR_VERSION")
  mkdir -p "$out.tmp" && cp "$dir"/example/prometheus-operator-crd/*.yaml "$out.tmp/"
  chmod 644 "$out.tmp"/*.yaml
}

build_prometheus() { # the module's v0.3XX.Y is Prometheus 3.XX.Y; UI assets are not built in
  local m=github.com/prometheus/prometheus v=github.com/prometheus/common/version
  local ver
  ver=3.$(echo "${PROMETHEUS_VERSION#v0.}" | awk -F. '{printf "%d.%s", substr($1,2), $2}')
  local ld="-X $v.Version=$ver -X $v.Revision=release -X $v.Branch=release"
  gobuild prometheus $m "$PROMETHEUS_VERSION" "$ld" "$m/cmd/prometheus=prometheus"
}

build_kube_state_metrics() { # the Kubernetes objects' state as metrics (Jobs, CronJobs, ...)
  local m=k8s.io/kube-state-metrics/v2 v=github.com/prometheus/common/version
  local ld="-X $v.Version=${KSM_VERSION#v} -X $v.Revision=release -X $v.Branch=release"
  gobuild kube-state-metrics $m "$KSM_VERSION" "$ld" "$m=kube-state-metrics"
}

build_otelcol() { # a distribution made by the OpenTelemetry Collector Builder from builder-config.yaml
  local dir=$work/otelcol-$OTELCOL_VERSION
  rm -rf "$dir" && mkdir -p "$dir" "$out.tmp"
  GOBIN=$dir/bin go install "go.opentelemetry.io/collector/cmd/builder@$OTELCOL_VERSION"
  sed -e "s#@OTELCOL_VERSION@#$OTELCOL_VERSION#g" -e "s#@OUT@#$dir/dist#g" \
    "$here/images/otel-collector/builder-config.yaml" >"$dir/builder-config.yaml"
  (cd "$dir" && "$dir/bin/builder" --config builder-config.yaml --ldflags "-s -w")
  cp "$dir/dist/otelcol-ci-delivery-steps" "$out.tmp/otelcol"
}

build_jaeger() { # Jaeger v2 (cmd/jaeger, an OpenTelemetry Collector distribution); UI not built in
  local m=github.com/jaegertracing/jaeger
  gobuild jaeger $m "$JAEGER_VERSION" "" "$m/cmd/jaeger=jaeger"
}

build_victorialogs() {
  local m=github.com/VictoriaMetrics/VictoriaLogs b=github.com/VictoriaMetrics/VictoriaMetrics/lib/buildinfo
  gobuild victorialogs $m "$VICTORIALOGS_VERSION" "-X $b.Version=victoria-logs-$VICTORIALOGS_VERSION" \
    "$m/app/victoria-logs=victoria-logs"
}

build() { # build NAME VERSION: once, under a lock, noting the seconds in .build-seconds
  local name=$1 ver=$2 t0=$SECONDS
  out=$cache/bin/$name-$ver
  [[ -d $out ]] && return 0
  exec 8>"$cache/bin/.$name.lock"
  flock 8
  [[ -d $out ]] && return 0
  log "building $name $ver"
  rm -rf "$out.tmp"
  "build_${name//-/_}"
  echo $((SECONDS - t0)) >"$out.tmp/.build-seconds"
  mv "$out.tmp" "$out"
  log "$name built in $((SECONDS - t0)) s"
}

case ${1:-} in
  traefik) build traefik "$TRAEFIK_VERSION" ;;
  gateway-api) build gateway-api "$GATEWAY_API_VERSION" ;;
  prometheus-operator) build prometheus-operator "$PROM_OPERATOR_VERSION" ;;
  prometheus) build prometheus "$PROMETHEUS_VERSION" ;;
  kube-state-metrics) build kube-state-metrics "$KSM_VERSION" ;;
  otelcol) build otelcol "$OTELCOL_VERSION" ;;
  jaeger) build jaeger "$JAEGER_VERSION" ;;
  victorialogs) build victorialogs "$VICTORIALOGS_VERSION" ;;
  crds) # the upstream CRD files the cluster installs, one path a line
    build gateway-api "$GATEWAY_API_VERSION"
    build monitoring-crds "$PROM_OPERATOR_VERSION"
    ls "$cache/bin/gateway-api-$GATEWAY_API_VERSION"/*.yaml "$cache/bin/monitoring-crds-$PROM_OPERATOR_VERSION"/*.yaml
    ;;
  *) echo "usage: $0 traefik|gateway-api|prometheus-operator|prometheus|kube-state-metrics|otelcol|jaeger|victorialogs|crds" >&2; exit 2 ;;
esac
