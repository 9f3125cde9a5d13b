"""Fixtures for the end-to-end tests: the local cluster, the reference images, a test config.

The tests drive the real ``ci`` commands (as ``python -m ci``) against the local cluster
(``make cluster-up``) with the reference app's images built from the local base images and
pushed to the local registry. They deploy to their own namespace with a configuration
generated here (absolute paths, a small footprint for a 2-core machine, the local PostgreSQL
and RabbitMQ base images), so they never touch what ``make ci-local`` deploys.

``E2E_CLUSTER_WAIT`` (seconds, default 0) lets a run wait for a cluster that is still starting.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from ci import cluster, proc
from ci.cluster.base import ClusterInfo
from ci.errors import CiError

ROOT = Path(__file__).resolve().parents[2]
REGISTRY = "127.0.0.1:5000"
NAMESPACE = "schedule-e2e"
RELEASE = "schedule-app"
HOST = "schedule-e2e.local"
KUBECONFIG_VAR = "KUBECONFIG_E2E"
BASES = {
    "BASE_MAVEN": "maven",
    "BASE_JRE": "jre",
    "BASE_NODE": "node",
    "BASE_NGINX": "nginx",
    "BASE_PGCLIENT": "pgclient",
}

#: Values on top of values-staging.yaml: what the local cluster offers, sized for 2 cores.
E2E_VALUES: dict[str, Any] = {
    "ingress": {"hosts": [HOST], "tls": {"enabled": False}},
    "metrics": {
        "serviceMonitor": {"enabled": False},
        "prometheusRule": {"enabled": False},
        "grafanaDashboard": {"enabled": False},
    },
    "tracing": {"enabled": False},
    "backend": {
        "autoscaling": {"enabled": False},
        "replicaCount": 1,
        "pdb": {"enabled": False},
        "resources": {
            "requests": {"cpu": "100m", "memory": "384Mi"},
            "limits": {"cpu": "1", "memory": "768Mi"},
        },
    },
    "frontend": {
        "replicaCount": 1,
        "pdb": {"enabled": False},
        "resources": {"requests": {"cpu": "20m", "memory": "32Mi"}},
    },
    "postgresql": {
        "image": {
            "repository": f"{REGISTRY}/base/postgres",
            "tag": "bookworm",
            "pullPolicy": "Always",
        },
        "persistence": {"size": "1Gi"},
        "resources": {
            "requests": {"cpu": "100m", "memory": "256Mi"},
            "limits": {"cpu": "100m", "memory": "256Mi"},
        },
        # on as in staging: the local stand-in of the pinned postgres_exporter
        "metrics": {
            "image": {
                "repository": f"{REGISTRY}/base/postgres-exporter",
                "tag": "bookworm",
                "pullPolicy": "Always",
            }
        },
    },
    "rabbitmq": {
        "image": {
            "repository": f"{REGISTRY}/base/rabbitmq",
            "tag": "bookworm",
            "pullPolicy": "Always",
        },
        "persistence": {"size": "1Gi"},
        "resources": {
            "requests": {"cpu": "100m", "memory": "384Mi"},
            "limits": {"cpu": "100m", "memory": "384Mi"},
        },
    },
    "backup": {"enabled": False, "persistence": {"size": "1Gi"}},
}


@dataclass
class E2E:
    """The running cluster plus a ``ci`` configured for it."""

    info: ClusterInfo
    config: Path
    out: Path
    env: dict[str, str] = field(default_factory=dict)

    namespace: str = NAMESPACE
    release: str = RELEASE
    host: str = HOST

    def ci(
        self, *args: str, timeout: float = 1500, env: dict[str, str] | None = None
    ) -> proc.Result:
        """Run ``ci`` as a user would; the result keeps exit code and output."""
        argv = (sys.executable, "-m", "ci", "-c", str(self.config), "-o", str(self.out), *args)
        return proc.run(argv, timeout=timeout, check=False, env=env or self.env, cwd=ROOT)

    def kubectl(self, *args: str, timeout: float = 120, check: bool = True) -> proc.Result:
        argv = (self.info.kubectl, "--kubeconfig", str(self.info.kubeconfig), *args)
        return proc.run(argv, timeout=timeout, check=check, what="kubectl")

    def kjson(self, *args: str) -> Any:
        return json.loads(self.kubectl(*args, "-o", "json").stdout)

    def helm_history(self) -> list[dict[str, Any]]:
        from ci import helm

        h = helm.find()
        argv = helm.history_argv(
            h, self.release, namespace=self.namespace, kubeconfig=str(self.info.kubeconfig)
        )
        data: list[dict[str, Any]] = json.loads(proc.run(argv, timeout=60).stdout)
        return data

    @property
    def smoke_args(self) -> tuple[str, ...]:
        return ("--base-url", self.info.ingress_url or "", "--host-header", HOST)


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


def _wait_for_cluster() -> ClusterInfo:
    deadline = time.monotonic() + float(os.environ.get("E2E_CLUSTER_WAIT", "0"))
    while True:
        try:
            return cluster.status()
        except CiError as exc:
            if time.monotonic() >= deadline:
                pytest.fail(
                    f"no local cluster ({exc}); start it with `make cluster-up`", pytrace=False
                )
        time.sleep(10)


def _config_text(values_file: Path) -> str:
    """ci.yaml for the tests: absolute paths, the local registry, two environments."""
    base = yaml.safe_load((ROOT / "ci.yaml").read_text(encoding="utf-8"))
    images = []
    for image in base["images"]:
        args = {k: _base_arg(v) for k, v in image.get("build_args", {}).items()}
        images.append(
            {
                **image,
                "dockerfile": str(ROOT / image["dockerfile"]),
                "context": str(ROOT / image["context"]),
                "build_args": {k: v for k, v in args.items() if v},
            }
        )
    staging_values = str(ROOT / "charts/schedule-app/values-staging.yaml")
    env = {
        "namespace": NAMESPACE,
        "release": RELEASE,
        "values": [staging_values, str(values_file)],
        "kube": {"kubeconfig_env": KUBECONFIG_VAR},
        "timeout": "8m",
        "base_url": "http://127.0.0.1:18080",
    }
    data = {
        "version": 1,
        "project": base.get("project", "schedule-tracker"),
        "registry": {"host": REGISTRY, "namespace": "schedule-tracker", "insecure": True},
        "images": images,
        "chart": {
            **base["chart"],
            "path": str(ROOT / base["chart"]["path"]),
            "crds": [str(ROOT / c) for c in base["chart"].get("crds", [])],
        },
        "environments": {
            "e2e": env,
            # Same release, short timeout: a broken upgrade is rolled back within minutes.
            "e2e-short": {**env, "timeout": "150s"},
        },
        # the checks of every environment; the observability ones name environments of ci.yaml
        "smoke": {
            **base["smoke"],
            "checks": [c for c in base["smoke"]["checks"] if "environments" not in c],
        },
    }
    return yaml.safe_dump(data, sort_keys=False)


def _base_arg(value: str) -> str:
    """``${BASE_JRE:-}`` -> the local base image; other values unchanged."""
    for var, name in BASES.items():
        if var in str(value):
            return f"{REGISTRY}/base/{name}:bookworm"
    return str(value)


@pytest.fixture(scope="session")
def e2e() -> Iterator[E2E]:
    """Cluster, base images, reference images pushed, and a clean namespace."""
    info = _wait_for_cluster()
    # Inside the repository (git-ignored): image tags take the commit from the config's folder.
    work = ROOT / ".ci-out" / "e2e"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    values = work / "values-e2e.yaml"
    values.write_text(yaml.safe_dump(E2E_VALUES), encoding="utf-8")
    config = work / "ci-e2e.yaml"
    config.write_text(_config_text(values), encoding="utf-8")
    # Helm 3 unless CI_HELM_MAJOR says otherwise (Helm 4 is ci's default): the Helm 4 tests
    # take over a release Helm 3 made; `CI_HELM_MAJOR=4 make test-e2e` runs all under Helm 4.
    env = {
        KUBECONFIG_VAR: str(info.kubeconfig),
        "CI_HELM_MAJOR": os.environ.get("CI_HELM_MAJOR", "3"),
    }
    ctx = E2E(info, config, work / "out", env)
    ctx.kubectl("delete", "namespace", NAMESPACE, "--ignore-not-found", "--wait", timeout=300)
    yield ctx
    if os.environ.get("E2E_KEEP") != "1":
        ctx.kubectl(
            "delete", "namespace", NAMESPACE, "--ignore-not-found", "--wait=false", check=False
        )


@pytest.fixture(scope="session")
def images_json(e2e: E2E) -> Path:
    """The reference images, built from the local base images and pushed (cached when unchanged)."""
    build = proc.run(
        (str(ROOT / "hack/base-images/build.sh"),), timeout=3600, check=False, what="base images"
    )
    if not build.ok:
        pytest.fail(f"base images failed: {proc.tail(build.stderr, 5)}", pytrace=False)
    res = e2e.ci("images", "build", "--push", timeout=3600)
    if res.returncode != 0:
        pytest.fail(f"ci images build --push failed:\n{proc.tail(res.stderr + res.stdout, 20)}")
    path = e2e.out / "images.json"
    assert path.is_file()
    return path
