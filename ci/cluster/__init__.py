"""Start, stop and describe the Kubernetes cluster the pipeline deploys to.

Why providers: kind is the usual local cluster, but its node images cannot be pulled on every
machine; there the project's own single-node cluster (``hack/cluster``, built from source) does
the same job; and in CI or on a workstation a cluster may already exist and only its kubeconfig
is needed. Every provider answers with the same ``ClusterInfo``, so later steps only read a
kubeconfig path, an ingress URL and a registry.
"""

from __future__ import annotations

import os
from pathlib import Path

from ci.cluster import builtin, existing, kind
from ci.cluster.base import ClusterInfo, Provider
from ci.errors import ConfigError
from ci.proc import LineSink

__all__ = ["PROVIDERS", "ClusterInfo", "Provider", "down", "get_provider", "status", "up"]

#: Names accepted by ``get_provider``; ``auto`` picks one (see ``get_provider``).
PROVIDERS = ("auto", "builtin", "kind", "existing")

#: Environment variable naming an existing cluster's kubeconfig (implies ``existing``).
KUBECONFIG_ENV = "CI_CLUSTER_KUBECONFIG"
#: Environment variable choosing the provider when no option is given.
PROVIDER_ENV = "CI_CLUSTER_PROVIDER"


def get_provider(name: str | None = None, kubeconfig: Path | None = None) -> Provider:
    """The provider called ``name``; ``auto`` prefers a given kubeconfig, then kind, then builtin.

    kind is chosen only when it can really start a cluster here (binary and node image present),
    because on machines that cannot pull images ``kind create`` fails after minutes.
    """
    choice = name or os.environ.get(PROVIDER_ENV) or "auto"
    config = kubeconfig or _env_kubeconfig()
    if choice == "auto":
        if config is not None:
            return existing.ExistingCluster(config)
        return kind.KindCluster() if kind.usable() else builtin.BuiltinCluster()
    if choice == "builtin":
        return builtin.BuiltinCluster()
    if choice == "kind":
        return kind.KindCluster()
    if choice == "existing":
        if config is None:
            raise ConfigError(f"provider 'existing' needs --kubeconfig or {KUBECONFIG_ENV}")
        return existing.ExistingCluster(config)
    raise ConfigError(f"unknown cluster provider {choice!r} (choose from {', '.join(PROVIDERS)})")


def _env_kubeconfig() -> Path | None:
    value = os.environ.get(KUBECONFIG_ENV)
    return Path(value) if value else None


def up(
    name: str | None = None, kubeconfig: Path | None = None, on_line: LineSink | None = None
) -> ClusterInfo:
    """Start (or reuse) the cluster and return how to reach it; progress goes to ``on_line``."""
    return get_provider(name, kubeconfig).up(on_line)


def down(
    name: str | None = None, kubeconfig: Path | None = None, on_line: LineSink | None = None
) -> str:
    """Stop the cluster; returns what was done, in a few words."""
    return get_provider(name, kubeconfig).down(on_line)


def status(name: str | None = None, kubeconfig: Path | None = None) -> ClusterInfo:
    """Describe the running cluster; raises ``EnvironmentNotReady`` when it is not running."""
    return get_provider(name, kubeconfig).status()
