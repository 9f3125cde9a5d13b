"""The adopter's application on the local cluster: the two services that ``ci init`` of the
installed wheel scaffolded (tests/integration/test_adopter.py builds and checks them) are
deployed by digest to their own namespace with ``ci deploy`` and checked with ``ci smoke``
through the cluster's ingress, then removed."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from ci.cluster.base import ClusterInfo
from tests.integration.fixtures_adopter import (
    PROJECT,
    edit_after_init,
    git,
    make_repo,
    registry_env,
)
from tests.integration.fixtures_wheel import InstalledCi, installed_ci

pytestmark = pytest.mark.e2e
__all__ = ["installed_ci"]  # the fixture, used by name below

NAMESPACE = "bookshelf-e2e"
HOST = "bookshelf-e2e.local"


def ok(result: subprocess.CompletedProcess[str]) -> None:
    assert result.returncode == 0, f"exit {result.returncode}:\n{result.stdout}\n{result.stderr}"


@pytest.fixture
def namespace(cluster_info: ClusterInfo) -> Iterator[str]:
    """The adopter's own namespace, deleted afterwards with everything in it."""
    yield NAMESPACE
    subprocess.run(
        [
            cluster_info.kubectl,
            "--kubeconfig",
            str(cluster_info.kubeconfig),
            "delete",
            "namespace",
            NAMESPACE,
            "--ignore-not-found",
            "--wait=false",
        ],
        capture_output=True,
        check=False,
        timeout=120,
    )


def test_an_adopter_deploys_and_smoke_tests_its_services(
    installed_ci: InstalledCi, cluster_info: ClusterInfo, namespace: str, tmp_path: Path
) -> None:
    repo = make_repo(tmp_path)
    ok(installed_ci.run("init", "--project", PROJECT, cwd=repo))
    edit_after_init(
        repo,
        namespace=namespace,
        host=HOST,
        ingress_class=cluster_info.ingress_class,
        kubeconfig=cluster_info.kubeconfig,
    )
    git(repo, "add", ".")
    git(repo, "commit", "-q", "-m", "ci: scaffold, local environment")
    env = {**registry_env(), "LOCAL_URL": cluster_info.ingress_url or ""}

    ok(installed_ci.run("images", "build", "--push", cwd=repo, env=env, timeout=1200))
    ok(installed_ci.run("deploy", "--env", "local", cwd=repo, env=env, timeout=900))
    release = json.loads((repo / ".ci-out" / "release.json").read_text())
    digests = {name: image["digest"] for name, image in release["images"].items()}
    assert sorted(digests) == ["inventory", "storefront"]

    smoke = installed_ci.run("smoke", "--env", "local", "--host-header", HOST, cwd=repo, env=env)
    ok(smoke)
    for check in ("storefront", "inventory-health", "inventory-books"):
        assert check in smoke.stdout + smoke.stderr

    pods = subprocess.run(
        [
            cluster_info.kubectl,
            "--kubeconfig",
            str(cluster_info.kubeconfig),
            "-n",
            namespace,
            "get",
            "pods",
            "-o",
            "json",
        ],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    images = {c["image"] for p in json.loads(pods.stdout)["items"] for c in p["spec"]["containers"]}
    assert all("@sha256:" in image for image in images), f"not deployed by digest: {images}"
    assert {image.split("@")[1] for image in images} == set(digests.values())
