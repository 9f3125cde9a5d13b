# shellcheck shell=bash
# Pinned versions of everything the built-in cluster builds from source. Sourced by the other scripts.
# kubelet 1.34 is the newest that still runs on cgroup v1 without an opt-out (1.35 wants failCgroupV1: false).
K8S_VERSION=${K8S_VERSION:-v1.34.4}
ETCD_VERSION=${ETCD_VERSION:-v3.6.16}
COREDNS_VERSION=${COREDNS_VERSION:-v1.14.7}
LOCAL_PATH_VERSION=${LOCAL_PATH_VERSION:-v0.0.30}
METRICS_SERVER_VERSION=${METRICS_SERVER_VERSION:-v0.8.0}
NETPOL_VERSION=${NETPOL_VERSION:-v0.8.0}
# platform add-ons (addons.sh, built by build-addons.sh)
TRAEFIK_VERSION=${TRAEFIK_VERSION:-v3.6.12}     # v3.7 needs modules the proxy refuses (README)
GATEWAY_API_VERSION=${GATEWAY_API_VERSION:-v1.4.1}  # the release Traefik v3.6 is built against
PROM_OPERATOR_VERSION=${PROM_OPERATOR_VERSION:-v0.85.0}
PROMETHEUS_VERSION=${PROMETHEUS_VERSION:-v0.316.0}     # the module version of Prometheus 3.x
KSM_VERSION=${KSM_VERSION:-v2.20.0}                    # kube-state-metrics, beside Prometheus
OTELCOL_VERSION=${OTELCOL_VERSION:-v0.160.0}           # the newest release k8sattributesprocessor is served at
JAEGER_VERSION=${JAEGER_VERSION:-v1.76.0}              # the module version; cmd/jaeger is Jaeger v2
VICTORIALOGS_VERSION=${VICTORIALOGS_VERSION:-v1.52.1}
