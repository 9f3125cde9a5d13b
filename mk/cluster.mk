# The built-in single-node Kubernetes cluster (hack/cluster): built from source, cached in
# CLUSTER_CACHE (~/.cache/ci-delivery-steps/cluster, or the former schedule-ci one) so only the first start compiles.
# CLUSTER_ADDONS selects the platform add-ons cluster-up starts besides the ingress (Traefik):
# all (the default), none, or a list of: prometheus otel jaeger logs.
.PHONY: cluster-up cluster-down cluster-status cluster-test cluster-bench

cluster-up: ## Start the local Kubernetes cluster and its add-ons (CLUSTER_ADDONS=all|none|list); prints the kubeconfig
	hack/cluster/cluster.sh up

cluster-down: ## Stop the local cluster and remove its processes, mounts, interfaces and rules
	hack/cluster/cluster.sh down

cluster-status: ## Show whether the local cluster runs (exit 1 if not)
	hack/cluster/cluster.sh status

cluster-test: ## Check the running cluster: node, DNS, registry, Service, PVC, Ingress, HTTPRoute, NetworkPolicy, metrics, Prometheus, traces, logs
	hack/cluster/test.sh

cluster-bench: ## Print cold and warm start times of the local cluster (BENCH_ARGS=--addons: with and without add-ons, their memory)
	bench/cluster $(BENCH_ARGS)
