# shellcheck shell=bash
# Pinned versions of everything the built-in cluster builds from source. Sourced by the other scripts.
# kubelet 1.34 is the newest that still runs on cgroup v1 without an opt-out (1.35 wants failCgroupV1: false).
K8S_VERSION=${K8S_VERSION:-v1.34.4}
ETCD_VERSION=${ETCD_VERSION:-v3.6.16}
COREDNS_VERSION=${COREDNS_VERSION:-v1.14.7}
LOCAL_PATH_VERSION=${LOCAL_PATH_VERSION:-v0.0.30}
METRICS_SERVER_VERSION=${METRICS_SERVER_VERSION:-v0.8.0}
NETPOL_VERSION=${NETPOL_VERSION:-v0.8.0}
