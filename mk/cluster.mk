# The built-in single-node Kubernetes cluster (hack/cluster): built from source, cached in
# CLUSTER_CACHE (~/.cache/schedule-ci/cluster) so only the first start compiles.
.PHONY: cluster-up cluster-down cluster-status cluster-test cluster-bench

cluster-up: ## Start the local Kubernetes cluster (builds it the first time); prints the kubeconfig
	hack/cluster/cluster.sh up

cluster-down: ## Stop the local cluster and remove its processes, mounts, interfaces and rules
	hack/cluster/cluster.sh down

cluster-status: ## Show whether the local cluster runs (exit 1 if not)
	hack/cluster/cluster.sh status

cluster-test: ## Check the running cluster: node, DNS, registry image, Service, PVC, Ingress, NetworkPolicy, metrics
	hack/cluster/test.sh

cluster-bench: ## Print cold and warm start times of the local cluster
	bench/cluster
