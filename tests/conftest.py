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
