# shellcheck shell=bash
# Sourced by the cluster scripts: where the built-in cluster keeps its state, data and binary
# cache, in folders named after the toolkit (hack/dirs.sh, ci/paths.py). A folder made under the
# former name (schedule-ci) stays in use while the new one does not exist, so a cluster or a
# cache made before the rename keeps working. CLUSTER_STATE, CLUSTER_DATA and CLUSTER_CACHE
# override them; ci/cluster/builtin.py finds the state folder by the same rule.
# shellcheck source=../dirs.sh
. "$(dirname "${BASH_SOURCE[0]}")/../dirs.sh"
cluster_state=${CLUSTER_STATE:-$(ci_prefer_legacy "/run/$ci_app/cluster" "/run/$ci_legacy_app/cluster")}
cluster_data=${CLUSTER_DATA:-$(ci_prefer_legacy "/var/lib/$ci_app/cluster" "/var/lib/$ci_legacy_app/cluster")}
cluster_cache=${CLUSTER_CACHE:-$(ci_prefer_legacy "$ci_cache_home/cluster" "$HOME/.cache/$ci_legacy_app/cluster")}
# The cluster's name (its node, kubeconfig context, CAs and pod network): a cluster whose data was
# made under the former name keeps it, since etcd's member and the Node object carry it.
if [[ $cluster_data == "/var/lib/$ci_legacy_app/cluster" ]]; then
  cluster_name=$ci_legacy_app
else
  cluster_name=$ci_app
fi
export cluster_state cluster_data cluster_cache cluster_name
