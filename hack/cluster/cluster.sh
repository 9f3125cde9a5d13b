#!/usr/bin/env bash
# A single-node Kubernetes cluster built from source, for machines where kind cannot run.
#   hack/cluster/cluster.sh up|down|status
# up:     build (cached) and start etcd, the control plane, containerd (own socket, root and
#         state, beside Docker's), kubelet, kube-proxy, then CoreDNS, local-path storage,
#         metrics-server and NetworkPolicy enforcement (kube-network-policies), and through
#         addons.sh the ingress (Traefik, Gateway API) and the platform add-ons (CLUSTER_ADDONS);
#         prints the kubeconfig path.
# down:   stop every process it started, unmount every mount, delete its interfaces, iptables
#         rules, nftables tables and state; Docker keeps working.
# status: exit 0 when the API answers and the node is Ready; prints cluster.json.
# Settings (environment): CLUSTER_STATE (/run/ci-delivery-steps/cluster), CLUSTER_DATA
# (/var/lib/ci-delivery-steps/cluster), CLUSTER_CACHE (~/.cache/ci-delivery-steps/cluster),
# CLUSTER_NODE_NAME (the cluster's name), CLUSTER_API_PORT (6443), CLUSTER_INGRESS_PORT (18080),
# CLUSTER_INGRESS_TLS_PORT (18443), CLUSTER_NODE_IP (10.254.254.1). Folders made under the former
# name (schedule-ci) stay in use while the new ones do not exist (paths.sh).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
. "$here/versions.sh"
# shellcheck source=paths.sh
. "$here/paths.sh"

STATE=$cluster_state
DATA=$cluster_data
CACHE=$cluster_cache
API_PORT=${CLUSTER_API_PORT:-6443}
INGRESS_PORT=${CLUSTER_INGRESS_PORT:-18080}
INGRESS_TLS_PORT=${CLUSTER_INGRESS_TLS_PORT:-18443}
NODE_IP=${CLUSTER_NODE_IP:-10.254.254.1}
NODE_NAME=${CLUSTER_NODE_NAME:-$cluster_name}
NODE_DEV=sci0     # an empty bridge holding the node IP: stable whatever the host's network is
BRIDGE=cni0
CLUSTER_CIDR=10.244.0.0/16
POD_CIDR=10.244.0.0/24
SERVICE_CIDR=10.96.0.0/16
API_SVC_IP=10.96.0.1
DNS_IP=10.96.0.10
ETCD_CLIENT=127.0.0.1:23790
ETCD_PEER=127.0.0.1:23800
REGISTRY=${CLUSTER_REGISTRY:-127.0.0.1:5000}
FWD_CHAIN=SCI-FORWARD   # every chain of ours starts with SCI-; down removes them all
NETPOL_CHAIN=SCI-NETPOL
NETPOL_QUEUE=98         # the NFQUEUE where kube-network-policies gives its verdicts
# the ingress controller's hostPorts are bound to this address only (the portmap CNI plugin)
INGRESS_HOST_IP=127.0.0.1
# nftables tables kube-network-policies creates (the second only with AdminNetworkPolicy on);
# it leaves them when it is killed, so down deletes them
NFT_TABLES=("inet kube-network-policies" "inet kube-network-policies-dnscache")
KBIN=$CACHE/bin/k8s-$K8S_VERSION
ETCD=$CACHE/bin/etcd-$ETCD_VERSION/etcd
SOCK=$STATE/containerd/containerd.sock
PKI=$STATE/pki
KUBECONFIG_ADMIN=$STATE/kubeconfig
# kubelet tunes these kernel settings; down puts the machine's values back
SYSCTLS=(kernel.panic kernel.panic_on_oops vm.overcommit_memory)

# Lowering an oom_score_adj needs CAP_SYS_RESOURCE; where the machine withholds it, keep every
# score at or above ours instead of failing to start containers.
if (( (0x$(awk '/^CapEff/{print $2}' /proc/self/status) >> 24) & 1 )); then
  RESTRICT_OOM=false OOM_SCORE_ADJ=-999
else
  RESTRICT_OOM=true OOM_SCORE_ADJ=$(cat /proc/self/oom_score_adj)
fi

log() { echo "cluster: $*" >&2; }
die() { echo "cluster: error: $*" >&2; exit 1; }
kubectl() { "$KBIN/kubectl" --kubeconfig "$KUBECONFIG_ADMIN" "$@"; }
now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN{printf "%.1f", b-a}'; }

# wait_for DESCRIPTION SECONDS COMMAND...: poll until COMMAND succeeds
wait_for() {
  local what=$1 limit=$2; shift 2
  local end=$((SECONDS + limit))
  until "$@" >/dev/null 2>&1; do
    if ((SECONDS >= end)); then
      log "timed out after ${limit}s waiting for $what"
      return 1
    fi
    sleep 0.5
  done
}

# ---------------------------------------------------------------- processes

start() { # start NAME ARGV...: run detached, log to $STATE/logs/NAME.log, remember the pid
  local name=$1; shift
  setsid "$@" >"$STATE/logs/$name.log" 2>&1 </dev/null 9>&- &  # 9: the lock, not theirs to hold
  echo $! >"$STATE/pids/$name.pid"
}

running() { # running NAME: the process from start NAME is alive
  local f=$STATE/pids/$1.pid
  [[ -f $f ]] && kill -0 "$(cat "$f")" 2>/dev/null
}

stop() { # stop NAME...: SIGTERM to all at once, SIGKILL to those alive after 5 s (state is discarded)
  local name pid pids=()
  for name in "$@"; do
    [[ -f $STATE/pids/$name.pid ]] || continue
    pid=$(cat "$STATE/pids/$name.pid")
    kill -TERM "$pid" 2>/dev/null && pids+=("$pid")
    rm -f "$STATE/pids/$name.pid"
  done
  for _ in $(seq 1 20); do
    local alive=0
    for pid in "${pids[@]}"; do kill -0 "$pid" 2>/dev/null && alive=1; done
    ((alive)) || return 0
    sleep 0.25
  done
  for pid in "${pids[@]}"; do kill -KILL "$pid" 2>/dev/null || true; done
}

# ---------------------------------------------------------------- prerequisites

prereqs() { # Debian packages the node runs on; installed only when a command is missing
  "$here/../ensure-packages.sh" containerd=containerd runc=runc \
    /usr/lib/cni/bridge=containernetworking-plugins iptables=iptables conntrack=conntrack \
    openssl=openssl curl=curl gcc=gcc file:/usr/include/stdio.h=libc6-dev debootstrap=debootstrap \
    busybox=busybox-static nft=nftables
}

# ---------------------------------------------------------------- certificates

ext_file() { # ext_file SANS: X.509 extensions for a leaf certificate
  printf 'basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\n'
  printf 'extendedKeyUsage=serverAuth,clientAuth\n'
  [[ -n $1 ]] && printf 'subjectAltName=%s\n' "$1"
  return 0
}

ca() { # ca NAME CN: a self-signed CA key and certificate
  openssl req -x509 -new -nodes -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 \
    -keyout "$PKI/$1.key" -out "$PKI/$1.crt" -days 3650 -subj "/CN=$2" \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
}

leaf() { # leaf NAME SUBJECT [SANS] [CA]: a key and a certificate signed by CA (the cluster CA)
  local name=$1 subject=$2 sans=${3:-} ca=${4:-ca}
  openssl req -new -nodes -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 \
    -keyout "$PKI/$name.key" -out "$PKI/$name.csr" -subj "$subject" 2>/dev/null
  openssl x509 -req -in "$PKI/$name.csr" -CA "$PKI/$ca.crt" -CAkey "$PKI/$ca.key" -CAcreateserial \
    -out "$PKI/$name.crt" -days 365 -extfile <(ext_file "$sans") 2>/dev/null
  rm -f "$PKI/$name.csr"
}

certificates() {
  mkdir -p "$PKI" && chmod 700 "$PKI"
  ca ca "$cluster_name-cluster-ca"
  local dns="DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc"
  dns+=",DNS:kubernetes.default.svc.cluster.local,DNS:localhost,DNS:$NODE_NAME"
  leaf apiserver "/CN=kube-apiserver" "$dns,IP:127.0.0.1,IP:$API_SVC_IP,IP:$NODE_IP"
  leaf apiserver-kubelet-client "/O=system:masters/CN=kube-apiserver-kubelet-client"
  leaf admin "/O=system:masters/CN=kubernetes-admin"
  leaf controller-manager "/CN=system:kube-controller-manager"
  leaf scheduler "/CN=system:kube-scheduler"
  leaf kube-proxy "/CN=system:kube-proxy"
  leaf kubelet "/O=system:nodes/CN=system:node:$NODE_NAME" "DNS:$NODE_NAME,IP:$NODE_IP"
  # The aggregation layer: the kube-apiserver proxies metrics.k8s.io to metrics-server with this
  # client certificate and the user in request headers; metrics-server believes those headers
  # only from a certificate of this separate CA, so no ordinary client certificate can set them.
  ca front-proxy-ca "$cluster_name-front-proxy-ca"
  leaf front-proxy-client "/CN=front-proxy-client" "" front-proxy-ca
  # metrics-server's serving certificate, for the name the aggregator checks (service.namespace.svc)
  leaf metrics-server "/CN=metrics-server" \
    "DNS:metrics-server.kube-system.svc,DNS:metrics-server.kube-system.svc.cluster.local"
  openssl genrsa -out "$PKI/sa.key" 2048 2>/dev/null
  openssl rsa -in "$PKI/sa.key" -pubout -out "$PKI/sa.pub" 2>/dev/null
}

kubeconfig() { # kubeconfig FILE NAME: a kubeconfig for the client certificate NAME
  local b64='base64 -w0'
  cat >"$1" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: $cluster_name
  cluster:
    server: https://127.0.0.1:$API_PORT
    certificate-authority-data: $($b64 "$PKI/ca.crt")
users:
- name: $2
  user:
    client-certificate-data: $($b64 "$PKI/$2.crt")
    client-key-data: $($b64 "$PKI/$2.key")
contexts:
- name: $cluster_name
  context: {cluster: $cluster_name, user: $2}
current-context: $cluster_name
EOF
  chmod 600 "$1"
}

# ---------------------------------------------------------------- host network

host_network() {
  sysctl -qw net.ipv4.ip_forward=1
  [[ -e /proc/sys/net/bridge/bridge-nf-call-iptables ]] || modprobe br_netfilter 2>/dev/null || true
  sysctl -qw net.bridge.bridge-nf-call-iptables=1
  if ! ip link show "$NODE_DEV" >/dev/null 2>&1; then
    ip link add "$NODE_DEV" type bridge  # no dummy driver in every kernel; a bridge always is
    ip addr add "$NODE_IP/32" dev "$NODE_DEV"
  fi
  ip link set "$NODE_DEV" up
  # Docker sets the FORWARD policy to DROP: let pod traffic through, in a chain of our own
  iptables -w -N "$FWD_CHAIN" 2>/dev/null || iptables -w -F "$FWD_CHAIN"
  iptables -w -A "$FWD_CHAIN" -s "$CLUSTER_CIDR" -j ACCEPT
  iptables -w -A "$FWD_CHAIN" -d "$CLUSTER_CIDR" -j ACCEPT
  iptables -w -C FORWARD -j "$FWD_CHAIN" 2>/dev/null || iptables -w -I FORWARD 1 -j "$FWD_CHAIN"
  for s in "${SYSCTLS[@]}"; do echo "$s=$(sysctl -n "$s")"; done >"$STATE/sysctl.saved"
  netpol_queue
}

nft_queue_works() { # the kernel has nft's queue expression (CONFIG_NFT_QUEUE); --check asks the kernel
  nft -c -f - >/dev/null 2>&1 <<EOF
table inet sci-probe {
  chain probe {
    type filter hook postrouting priority 0; policy accept;
    ip daddr 192.0.2.1 queue num $NETPOL_QUEUE bypass
  }
}
EOF
}

# kube-network-policies queues the first packet of each new connection of a policy-selected pod
# from its own nftables table, with nft's queue expression. Kernels built without it (this
# machine's: no CONFIG_NFT_QUEUE) still have the xtables NFQUEUE target, so there the node sends
# the same packets to the same queue from an iptables chain instead: every new connection from or
# to a pod, taken at the same point (after DNAT, before SNAT) and with the same exceptions
# (established flows; packets of root processes on the node: kubelet probes, hostPort forwards).
# The agent accepts what no policy restricts. --queue-bypass: while no agent listens, packets pass
# (NetworkPolicies unenforced, as before the add-on) instead of the pod network stopping.
netpol_queue() {
  if nft_queue_works; then
    iptables -w -t mangle -X "$NETPOL_CHAIN" 2>/dev/null || true
    return 0
  fi
  local ipt=(iptables -w -t mangle)
  "${ipt[@]}" -N "$NETPOL_CHAIN" 2>/dev/null || "${ipt[@]}" -F "$NETPOL_CHAIN"
  "${ipt[@]}" -A "$NETPOL_CHAIN" -m owner --uid-owner 0 -j RETURN
  "${ipt[@]}" -A "$NETPOL_CHAIN" -m conntrack --ctstate ESTABLISHED,RELATED -j RETURN
  "${ipt[@]}" -A "$NETPOL_CHAIN" -s "$CLUSTER_CIDR" -j NFQUEUE --queue-num "$NETPOL_QUEUE" --queue-bypass
  "${ipt[@]}" -A "$NETPOL_CHAIN" -d "$CLUSTER_CIDR" -j NFQUEUE --queue-num "$NETPOL_QUEUE" --queue-bypass
  "${ipt[@]}" -C POSTROUTING -j "$NETPOL_CHAIN" 2>/dev/null || "${ipt[@]}" -I POSTROUTING 1 -j "$NETPOL_CHAIN"
}

cni_config() {
  mkdir -p "$STATE/cni/net.d" "$STATE/cni/ipam"
  cat >"$STATE/cni/net.d/10-$cluster_name.conflist" <<EOF
{
  "cniVersion": "1.0.0",
  "name": "$cluster_name",
  "plugins": [
    {
      "type": "bridge", "bridge": "$BRIDGE", "isGateway": true, "ipMasq": true, "hairpinMode": true,
      "ipam": {
        "type": "host-local", "dataDir": "$STATE/cni/ipam",
        "ranges": [[{"subnet": "$POD_CIDR"}]], "routes": [{"dst": "0.0.0.0/0"}]
      }
    },
    {"type": "portmap", "capabilities": {"portMappings": true}}
  ]
}
EOF
}

# ---------------------------------------------------------------- components

start_etcd() {
  start etcd "$ETCD" --name "$NODE_NAME" --data-dir "$DATA/etcd" \
    --listen-client-urls "http://$ETCD_CLIENT" --advertise-client-urls "http://$ETCD_CLIENT" \
    --listen-peer-urls "http://$ETCD_PEER" --initial-advertise-peer-urls "http://$ETCD_PEER" \
    --initial-cluster "$NODE_NAME=http://$ETCD_PEER" \
    --quota-backend-bytes 2147483648 --snapshot-count 10000
  wait_for "etcd" 60 curl -fsS "http://$ETCD_CLIENT/health"
}

start_apiserver() {
  # The requestheader and proxy-client flags turn on the aggregation layer (metrics.k8s.io is
  # served by metrics-server). With aggregator routing the apiserver dials the APIService's
  # endpoint (pod IP) itself rather than its ClusterIP, so it does not depend on kube-proxy.
  start kube-apiserver "$KBIN/kube-apiserver" \
    --etcd-servers "http://$ETCD_CLIENT" --advertise-address "$NODE_IP" --bind-address 0.0.0.0 \
    --secure-port "$API_PORT" --service-cluster-ip-range "$SERVICE_CIDR" \
    --tls-cert-file "$PKI/apiserver.crt" --tls-private-key-file "$PKI/apiserver.key" \
    --client-ca-file "$PKI/ca.crt" \
    --kubelet-client-certificate "$PKI/apiserver-kubelet-client.crt" \
    --kubelet-client-key "$PKI/apiserver-kubelet-client.key" \
    --service-account-key-file "$PKI/sa.pub" --service-account-signing-key-file "$PKI/sa.key" \
    --service-account-issuer https://kubernetes.default.svc.cluster.local \
    --authorization-mode Node,RBAC --enable-admission-plugins NodeRestriction \
    --kubelet-preferred-address-types InternalIP,Hostname \
    --allow-privileged=true --endpoint-reconciler-type lease --profiling=false \
    --requestheader-client-ca-file "$PKI/front-proxy-ca.crt" \
    --requestheader-allowed-names front-proxy-client \
    --requestheader-username-headers X-Remote-User --requestheader-group-headers X-Remote-Group \
    --requestheader-extra-headers-prefix X-Remote-Extra- \
    --proxy-client-cert-file "$PKI/front-proxy-client.crt" \
    --proxy-client-key-file "$PKI/front-proxy-client.key" \
    --enable-aggregator-routing=true
  wait_for "kube-apiserver /readyz" 120 kubectl get --raw /readyz
}

start_controllers() {
  # At the default client rate (20 requests/s) the controller-manager needs about 5 s to start
  # its controllers, each fetching its own service-account token, before any add-on Deployment
  # gets a pod; at 100/s it needs well under one, which keeps metrics-server (ready only after two
  # scrapes 10 s apart) inside the time the other add-ons take anyway.
  start kube-controller-manager "$KBIN/kube-controller-manager" \
    --kubeconfig "$STATE/controller-manager.kubeconfig" \
    --authentication-kubeconfig "$STATE/controller-manager.kubeconfig" \
    --authorization-kubeconfig "$STATE/controller-manager.kubeconfig" \
    --bind-address 127.0.0.1 --leader-elect=false --use-service-account-credentials=true \
    --root-ca-file "$PKI/ca.crt" --service-account-private-key-file "$PKI/sa.key" \
    --cluster-signing-cert-file "$PKI/ca.crt" --cluster-signing-key-file "$PKI/ca.key" \
    --service-cluster-ip-range "$SERVICE_CIDR" --cluster-cidr "$CLUSTER_CIDR" --profiling=false \
    --kube-api-qps 100 --kube-api-burst 200
  start kube-scheduler "$KBIN/kube-scheduler" --kubeconfig "$STATE/scheduler.kubeconfig" \
    --authentication-kubeconfig "$STATE/scheduler.kubeconfig" \
    --authorization-kubeconfig "$STATE/scheduler.kubeconfig" \
    --bind-address 127.0.0.1 --leader-elect=false --profiling=false
}

containerd_config() {
  local d=$STATE/containerd
  mkdir -p "$d/certs.d/$REGISTRY" "$d/state" "$DATA/containerd"
  cat >"$d/certs.d/$REGISTRY/hosts.toml" <<EOF
server = "http://$REGISTRY"
[host."http://$REGISTRY"]
  capabilities = ["pull", "resolve"]
EOF
  cat >"$d/config.toml" <<EOF
version = 2
root = "$DATA/containerd"
state = "$d/state"
disabled_plugins = ["io.containerd.internal.v1.opt", "io.containerd.snapshotter.v1.aufs",
  "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs",
  "io.containerd.snapshotter.v1.devmapper"]
[grpc]
  address = "$SOCK"
[ttrpc]
  address = "$SOCK.ttrpc"
[debug]
  address = "$SOCK.debug"
[metrics]
  address = ""
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "$PAUSE_IMAGE"
  stream_server_address = "127.0.0.1"
  netns_mounts_under_state_dir = true
  # without CAP_SYS_RESOURCE (dropped on some machines) no process may lower its oom_score_adj:
  # the sandbox's -998 would fail runc ("can't get final child's PID from pipe")
  restrict_oom_score_adj = $RESTRICT_OOM
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
        BinaryName = "$(command -v runc)"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "$STATE/cni/net.d"
  [plugins."io.containerd.grpc.v1.cri".registry]
    config_path = "$d/certs.d"
EOF
}

start_containerd() {
  containerd_config
  start containerd containerd --config "$STATE/containerd/config.toml"
  wait_for "containerd" 30 ctr --address "$SOCK" version
}

kubelet_config() {
  cat >"$STATE/kubelet.yaml" <<EOF
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true}
  x509: {clientCAFile: $PKI/ca.crt}
authorization: {mode: Webhook}
cgroupDriver: cgroupfs
containerRuntimeEndpoint: unix://$SOCK
clusterDNS: [$DNS_IP]
clusterDomain: cluster.local
failSwapOn: false
healthzBindAddress: 127.0.0.1
readOnlyPort: 0
podLogsDir: $DATA/pod-logs
serializeImagePulls: false
podCIDR: $POD_CIDR
resolvConf: /etc/resolv.conf
rotateCertificates: false
tlsCertFile: $PKI/kubelet.crt
tlsPrivateKeyFile: $PKI/kubelet.key
oomScoreAdj: $OOM_SCORE_ADJ
evictionHard: {memory.available: 100Mi, nodefs.available: 2%, imagefs.available: 2%, nodefs.inodesFree: 2%}
imageGCHighThresholdPercent: 98
imageGCLowThresholdPercent: 95
EOF
}

start_kubelet() {
  kubelet_config
  mkdir -p "$DATA/kubelet"
  start kubelet "$KBIN/kubelet" --config "$STATE/kubelet.yaml" \
    --kubeconfig "$STATE/kubelet.kubeconfig" --root-dir "$DATA/kubelet" \
    --hostname-override "$NODE_NAME" --node-ip "$NODE_IP"
}

start_proxy() {
  cat >"$STATE/kube-proxy.yaml" <<EOF
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
clientConnection: {kubeconfig: $STATE/kube-proxy.kubeconfig}
mode: iptables
clusterCIDR: $CLUSTER_CIDR
hostnameOverride: $NODE_NAME
bindAddress: 0.0.0.0
healthzBindAddress: 127.0.0.1:10256
metricsBindAddress: 127.0.0.1:10249
iptables: {localhostNodePorts: false}
oomScoreAdj: $OOM_SCORE_ADJ
conntrack: {maxPerCore: 0, tcpEstablishedTimeout: 0s, tcpCloseWaitTimeout: 0s}
EOF
  start kube-proxy "$KBIN/kube-proxy" --config "$STATE/kube-proxy.yaml"
}

# ---------------------------------------------------------------- add-ons

netpol_dns_fix() { # kernels before 6.12 race on conntrack for parallel DNS packets (netfilter bug 1766)
  local v major minor
  v=$(uname -r); major=${v%%.*}; minor=${v#*.}; minor=${minor%%[!0-9]*}
  if ((major > 6 || (major == 6 && minor >= 12))); then echo false; else echo true; fi
}

render() { # render MANIFEST: fill the @PLACEHOLDERS@
  sed -e "s#@DNS_IP@#$DNS_IP#g" -e "s#@COREDNS_IMAGE@#$COREDNS_IMAGE#g" \
    -e "s#@LOCALPATH_IMAGE@#$LOCALPATH_IMAGE#g" -e "s#@BUSYBOX_IMAGE@#$BUSYBOX_IMAGE#g" \
    -e "s#@LOCALPATH_DIR@#$DATA/local-path#g" -e "s#@METRICS_IMAGE@#$METRICS_IMAGE#g" \
    -e "s#@NETPOL_IMAGE@#$NETPOL_IMAGE#g" -e "s#@NETPOL_DNS_FIX@#$(netpol_dns_fix)#g" \
    -e "s#@NETPOL_QUEUE@#$NETPOL_QUEUE#g" \
    -e "s#@METRICS_TLS_CRT@#$(base64 -w0 "$PKI/metrics-server.crt")#g" \
    -e "s#@METRICS_TLS_KEY@#$(base64 -w0 "$PKI/metrics-server.key")#g" \
    -e "s#@CA_BUNDLE@#$(base64 -w0 "$PKI/ca.crt")#g" "$here/manifests/$1"
}

addons() {
  mkdir -p "$DATA/local-path"
  # metrics-server first: it is the last to be ready (two scrapes 10 s apart after it starts), so
  # its pod gets the first image pull and sandbox; then the policy agent, before the workloads
  local m
  for m in metrics-server.yaml network-policies.yaml coredns.yaml local-path.yaml; do
    render "$m"; echo "---"
  done |
    kubectl apply -f - >"$STATE/logs/addons.log"
}

# platform up|wait|down: the ingress controller and the platform add-ons (CLUSTER_ADDONS selects
# which) live in addons.sh, which gets what it needs to know of this cluster from the environment
platform() {
  CLUSTER_STATE=$STATE CLUSTER_DATA=$DATA CLUSTER_CACHE=$CACHE CLUSTER_REGISTRY=$REGISTRY \
    CLUSTER_KUBECTL=$KBIN/kubectl CLUSTER_KUBECONFIG=$KUBECONFIG_ADMIN CLUSTER_PKI=$PKI \
    CLUSTER_INGRESS_PORT=$INGRESS_PORT CLUSTER_INGRESS_TLS_PORT=$INGRESS_TLS_PORT \
    CLUSTER_INGRESS_HOST_IP=$INGRESS_HOST_IP "$here/addons.sh" "$1" 9>&-
}

platform_down() { platform down || log "addons.sh down failed; removing the rest anyway"; }

node_ready() {
  [[ $(kubectl get node "$NODE_NAME" -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}') == True ]]
}

nft_table() { nft list table "$@" >/dev/null 2>&1; }

# the agent binds its queue once its caches are synced and its rules written: from then on
# every queued packet gets a verdict from the NetworkPolicies
queue_bound() { awk -v q="$NETPOL_QUEUE" '$1 == q {found = 1} END {exit !found}' /proc/net/netfilter/nfnetlink_queue; }

wait_addons() {
  wait_for "node $NODE_NAME Ready" 120 node_ready
  kubectl -n kube-system rollout status ds/kube-network-policies --timeout 120s >/dev/null
  wait_for "kube-network-policies on NFQUEUE $NETPOL_QUEUE" 60 queue_bound
  kubectl -n kube-system rollout status deploy/coredns --timeout 120s >/dev/null
  kubectl -n local-path-storage rollout status deploy/local-path-provisioner --timeout 120s >/dev/null
  # Available once metrics-server is Ready, which takes two kubelet scrapes (10 s apart)
  kubectl wait --for=condition=Available apiservice/v1beta1.metrics.k8s.io --timeout 120s >/dev/null
}

# ---------------------------------------------------------------- state

write_state() { # cluster.json: what the toolkit (ci.cluster) and tests read
  cat >"$STATE/cluster.json" <<EOF
{
  "provider": "builtin",
  "kubernetes_version": "$K8S_VERSION",
  "kubeconfig": "$KUBECONFIG_ADMIN",
  "kubectl": "$KBIN/kubectl",
  "api_server": "https://127.0.0.1:$API_PORT",
  "node_name": "$NODE_NAME",
  "node_ip": "$NODE_IP",
  "registry": "$REGISTRY",
  "ingress_class": "nginx",
  "ingress_url": "http://127.0.0.1:$INGRESS_PORT",
  "ingress_tls_url": "https://127.0.0.1:$INGRESS_TLS_PORT",
  "storage_class": "local-path",
  "containerd_socket": "$SOCK",
  "started_at": "$(date -u +%FT%TZ)",
  "startup_seconds": $1
}
EOF
}

images() { # build (once) and push the cluster images; sets *_IMAGE
  while IFS='=' read -r name ref; do
    case $name in
      pause) PAUSE_IMAGE=$ref ;;
      coredns) COREDNS_IMAGE=$ref ;;
      busybox) BUSYBOX_IMAGE=$ref ;;
      localpath) LOCALPATH_IMAGE=$ref ;;
      metrics) METRICS_IMAGE=$ref ;;
      netpol) NETPOL_IMAGE=$ref ;;
    esac
  done < <("$here/images.sh")
  [[ -n ${NETPOL_IMAGE:-} ]] || die "building the cluster images failed (see above)"
  printf 'PAUSE_IMAGE=%s\nCOREDNS_IMAGE=%s\nBUSYBOX_IMAGE=%s\nLOCALPATH_IMAGE=%s\nMETRICS_IMAGE=%s\nNETPOL_IMAGE=%s\n' \
    "$PAUSE_IMAGE" "$COREDNS_IMAGE" "$BUSYBOX_IMAGE" "$LOCALPATH_IMAGE" "$METRICS_IMAGE" \
    "$NETPOL_IMAGE" >"$STATE/images.env"
}

# ---------------------------------------------------------------- commands

report_failure() { # on a failed up: which component died, with the end of its log
  local f name
  log "start failed; component logs are in $STATE/logs (cluster-down cleans up)"
  for f in "$STATE"/pids/*.pid; do
    [[ -f $f ]] || continue
    name=$(basename "$f" .pid)
    running "$name" && continue
    log "$name exited; the end of its log:"
    tail -n 15 "$STATE/logs/$name.log" >&2
  done
}

up() {
  [[ $(id -u) == 0 ]] || die "must run as root (it starts kubelet and containerd)"
  if healthy; then log "already running"; echo "$KUBECONFIG_ADMIN"; return 0; fi
  [[ -d $STATE/pids || -d $DATA ]] && { log "cleaning up a previous run"; down; }
  local t0 t
  t0=$(now)
  mkdir -p "$STATE/pids" "$STATE/logs" "$DATA"
  set -E  # let the ERR trap see failures inside functions
  trap report_failure ERR
  prereqs
  "$root/hack/dockerd.sh" >/dev/null 9>&-
  "$root/hack/registry.sh" up >/dev/null 9>&-
  local kind=warm tb ti ts
  [[ -x $KBIN/kubelet && -x $KBIN/kubectl && -x $ETCD ]] || kind=cold
  t=$(now); "$here/build.sh" all; tb=$(since "$t"); log "binaries ready ($tb s)"
  t=$(now); images; ti=$(since "$t"); log "images ready ($ti s)"
  t=$(now)
  host_network
  cni_config
  certificates
  kubeconfig "$KUBECONFIG_ADMIN" admin
  for c in controller-manager scheduler kube-proxy kubelet; do kubeconfig "$STATE/$c.kubeconfig" "$c"; done
  start_etcd
  start_apiserver
  log "control plane up ($(since "$t") s)"
  start_controllers
  start_containerd
  start_kubelet
  start_proxy
  addons
  platform up  # the ingress (Traefik) and the platform add-ons: hack/cluster/addons.sh
  wait_addons
  platform wait
  ts=$(since "$t"); log "node and add-ons ready ($ts s)"
  write_state "$(since "$t0")"
  printf '%s %s total=%s build=%s images=%s start=%s\n' "$(date -u +%FT%TZ)" "$kind" \
    "$(since "$t0")" "$tb" "$ti" "$ts" >>"$CACHE/timings.log"
  log "cluster up in $(since "$t0") s; kubeconfig: $KUBECONFIG_ADMIN"
  echo "$KUBECONFIG_ADMIN"
}

healthy() {
  [[ -x $KBIN/kubectl && -f $KUBECONFIG_ADMIN ]] || return 1
  for p in etcd kube-apiserver kube-controller-manager kube-scheduler containerd kubelet kube-proxy; do
    running "$p" || return 1
  done
  kubectl get --raw /readyz >/dev/null 2>&1 && node_ready
}

status() {
  if healthy; then cat "$STATE/cluster.json"; return 0; fi
  log "not running (state: $STATE)"
  return 1
}

kill_pods() { # every process in the pods' cgroups, then the cgroups themselves
  local d
  for _ in 1 2 3 4 5; do
    local left=0
    for d in /sys/fs/cgroup/*/kubepods /sys/fs/cgroup/unified/kubepods; do
      [[ -d $d ]] || continue
      while read -r pid; do
        kill -KILL "$pid" 2>/dev/null && left=1
      done < <(find "$d" -name cgroup.procs -exec cat {} + 2>/dev/null)
    done
    ((left)) || break
    sleep 0.5
  done
  for d in /sys/fs/cgroup/*/kubepods /sys/fs/cgroup/unified/kubepods; do
    [[ -d $d ]] && { find "$d" -depth -type d -exec rmdir {} \; 2>/dev/null || true; }
  done
  return 0
}

kill_shims() { # the runc shims this containerd started (they carry its socket path)
  local pid
  for pid in $(pgrep -f -- "-address $SOCK" || true); do kill -KILL "$pid" 2>/dev/null || true; done
}

unmount_all() { # every mount under our directories (volumes, rootfs, shm, netns), deepest first
  local m
  for _ in 1 2 3; do
    while read -r m; do
      umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || true
    done < <(awk '{print $5}' /proc/self/mountinfo | grep -E "^($DATA|$STATE)(/|$)" | sort -r)
  done
}

iptables_cleanup() { # kube-proxy's chains, the CNI plugins' chains, ours
  [[ -x $KBIN/kube-proxy ]] && "$KBIN/kube-proxy" --cleanup >/dev/null 2>&1 || true
  local table rule chain
  for table in nat filter mangle; do
    while read -r rule; do
      eval "iptables -w -t $table ${rule/-A/-D}" 2>/dev/null || true
    done < <(iptables -w -t "$table" -S 2>/dev/null | grep -E '^-A .*-j (CNI-|KUBE-|SCI-)' | grep -vE '^-A (CNI-|KUBE-|SCI-)')
    for chain in $(iptables -w -t "$table" -S 2>/dev/null | awk '/^-N (CNI-|KUBE-|SCI-)/{print $2}'); do
      iptables -w -t "$table" -F "$chain" 2>/dev/null || true
    done
    for chain in $(iptables -w -t "$table" -S 2>/dev/null | awk '/^-N (CNI-|KUBE-|SCI-)/{print $2}'); do
      iptables -w -t "$table" -X "$chain" 2>/dev/null || true
    done
  done
}

nftables_cleanup() { # the policy agent's tables (it does not remove them when it is killed)
  local t
  for t in "${NFT_TABLES[@]}"; do
    # shellcheck disable=SC2086  # "family name", two words
    if nft_table $t; then nft delete table $t || true; fi
  done
  return 0
}

leftovers() { # after down: anything of ours still on the machine, one line each
  local t p
  for t in "${NFT_TABLES[@]}"; do
    # shellcheck disable=SC2086
    nft_table $t && echo "nftables table $t"
  done
  for t in nat filter mangle; do
    iptables -w -t "$t" -S 2>/dev/null | grep -E '^-N (CNI-|KUBE-|SCI-)' | sed "s/^/iptables $t /"
  done
  for p in "$KBIN"/kube-* "$KBIN/kubelet" "$ETCD"; do
    pgrep -f -x -- "$p( .*)?" >/dev/null && echo "process $p"
  done
  pgrep -f -- "containerd --config $STATE/" >/dev/null && echo "containerd of $STATE"
  pgrep -f -- "-address $SOCK" >/dev/null && echo "containerd shim of $SOCK"
  grep -qE " ($DATA|$STATE)(/| )" /proc/self/mountinfo && echo "mounts under $DATA or $STATE"
  ip link show "$BRIDGE" >/dev/null 2>&1 && echo "interface $BRIDGE"
  ip link show "$NODE_DEV" >/dev/null 2>&1 && echo "interface $NODE_DEV"
  return 0
}

restore_sysctls() {
  [[ -f $STATE/sysctl.saved ]] || return 0
  while read -r kv; do sysctl -qw "$kv" 2>/dev/null || true; done <"$STATE/sysctl.saved"
}

timed_step() { # timed_step LABEL COMMAND...: run it and add "LABEL Ns" to $steps
  local label=$1 t
  shift
  t=$(now)
  "$@"
  steps+=" $label $(since "$t")s"
}

down() {
  local t0 steps=""
  t0=$(now)
  timed_step addons platform_down
  timed_step kubelet stop kubelet kube-proxy
  timed_step control-plane stop kube-scheduler kube-controller-manager kube-apiserver
  timed_step etcd stop etcd
  timed_step pods kill_pods
  timed_step containerd stop containerd
  timed_step shims kill_shims
  timed_step mounts unmount_all
  timed_step iptables iptables_cleanup
  timed_step nftables nftables_cleanup
  ip link del "$BRIDGE" 2>/dev/null || true
  ip link del "$NODE_DEV" 2>/dev/null || true
  restore_sysctls
  rm -rf "$DATA" "$STATE"
  rmdir "$(dirname "$DATA")" 2>/dev/null || true
  log "down in $(since "$t0") s ($steps )"
  local left
  left=$(leftovers)
  [[ -z $left ]] || { printf '%s\n' "$left" | sed 's/^/cluster: left behind: /' >&2; return 1; }
}

locked() { # one up or down at a time: a second caller waits instead of tearing down a start
  mkdir -p "$(dirname "$STATE")"
  exec 9>"$STATE.lock"
  flock -w 1800 9 || die "another cluster up/down holds $STATE.lock"
  "$@"
}

case ${1:-} in
  up) locked up ;;
  down) locked down ;;
  status) status ;;
  *) echo "usage: $0 up|down|status" >&2; exit 2 ;;
esac
