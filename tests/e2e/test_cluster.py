"""The local cluster as the pipeline sees it: ``ci cluster status`` and the end-to-end checks.

Needs a running cluster (``make cluster-up``); ``make test-e2e`` starts one.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from ci import cluster, proc
from ci.cli import main
from ci.cluster.base import ClusterInfo
from ci.errors import CiError

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def info() -> ClusterInfo:
    """The running cluster, or a skip naming the command that starts it."""
    try:
        return cluster.status()
    except CiError as exc:
        pytest.skip(f"no local cluster ({exc}); run `make cluster-up`")


def kubectl_json(info: ClusterInfo, *args: str) -> dict[str, object]:
    argv = (info.kubectl, "--kubeconfig", str(info.kubeconfig), *args, "-o", "json")
    result: dict[str, object] = json.loads(proc.run(argv, timeout=60).stdout)
    return result


def test_status_names_a_reachable_kubeconfig(info: ClusterInfo) -> None:
    assert info.kubeconfig.is_file()
    version = kubectl_json(info, "version")
    assert "serverVersion" in version


def test_node_is_ready(info: ClusterInfo) -> None:
    nodes = kubectl_json(info, "get", "nodes")["items"]
    assert isinstance(nodes, list)
    assert nodes
    conditions = {c["type"]: c["status"] for c in nodes[0]["status"]["conditions"]}
    assert conditions["Ready"] == "True"


def test_default_storage_class_and_ingress_class(info: ClusterInfo) -> None:
    if info.provider != "builtin":
        pytest.skip("add-ons are the built-in cluster's")
    classes = kubectl_json(info, "get", "storageclass")["items"]
    assert isinstance(classes, list)
    defaults = [
        c["metadata"]["name"]
        for c in classes
        if c["metadata"].get("annotations", {}).get("storageclass.kubernetes.io/is-default-class")
        == "true"
    ]
    assert defaults == [info.storage_class]
    ingress = kubectl_json(info, "get", "ingressclass", "nginx")
    assert ingress["spec"] == {"controller": "k8s.io/ingress-nginx"}


def test_cli_status_prints_the_kubeconfig(info: ClusterInfo) -> None:
    result = CliRunner().invoke(main, ["cluster", "status"])
    assert result.exit_code == 0, result.output
    assert str(info.kubeconfig) in result.output


def test_end_to_end_checks_pass(info: ClusterInfo) -> None:
    """DNS, a registry image on two replicas, Service by DNS name, PVC, Ingress (test.sh)."""
    if info.provider != "builtin":
        pytest.skip("hack/cluster/test.sh checks the built-in cluster")
    script = ROOT / "hack" / "cluster" / "test.sh"
    result = proc.run(("bash", str(script)), timeout=900, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 failed" in result.stdout
