"""Fixtures shared by the integration and end-to-end tests."""

from __future__ import annotations

import pytest

from ci import cluster
from ci.cluster.base import ClusterInfo
from ci.errors import CiError


@pytest.fixture(scope="session")
def cluster_info() -> ClusterInfo:
    """The running local cluster; its absence fails the test with the command that starts it."""
    try:
        return cluster.status()
    except CiError as exc:
        pytest.fail(f"the local cluster is not running ({exc}); run `make cluster-up`")


@pytest.fixture(scope="session")
def builtin_cluster(cluster_info: ClusterInfo) -> ClusterInfo:
    """The running cluster when it is the built-in one.

    Its own add-ons (metrics-server, NetworkPolicy enforcement, ingress on a fixed port) and
    scripts are checked there only; with kind or an existing kubeconfig those tests skip, by
    this one reason, rather than each deciding for itself.
    """
    if cluster_info.provider != "builtin":
        pytest.skip(
            f"checks the built-in cluster's own add-ons; the cluster is {cluster_info.provider}"
        )
    return cluster_info
