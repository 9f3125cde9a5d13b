"""``ci deploy`` is fast, exact and safe to interrupt, on the local cluster.

Its own namespace and release (``schedule-e2e-safety``/``safe-app``) and its own configuration,
so it runs beside the other end-to-end tests. The tests run in file order on one release: bad
input first (nothing may exist afterwards), then install and a no-change deploy.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from ci import helm, proc
from ci.cluster.base import ClusterInfo

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
NAMESPACE = "schedule-e2e-safety"
RELEASE = "safe-app"
ENV = "safety"


@dataclass
class Safety:
    info: ClusterInfo
    config: Path
    out: Path

    @property
    def env(self) -> dict[str, str]:
        return {**os.environ, "KUBECONFIG_E2E": str(self.info.kubeconfig)}

    def argv(self, *args: str) -> tuple[str, ...]:
        return (sys.executable, "-m", "ci", "-c", str(self.config), "-o", str(self.out), *args)

    def ci(self, *args: str, timeout: float = 900) -> proc.Result:
        return proc.run(self.argv(*args), timeout=timeout, check=False, env=self.env, cwd=ROOT)

    def deploy(self, *args: str, timeout: float = 900) -> proc.Result:
        return self.ci("deploy", "--env", ENV, *args, timeout=timeout)

    def kubectl(self, *args: str, check: bool = True) -> proc.Result:
        argv = (self.info.kubectl, "--kubeconfig", str(self.info.kubeconfig), *args)
        return proc.run(argv, timeout=300, check=check, what="kubectl")

    def history(self) -> list[dict[str, Any]]:
        h = helm.find()
        argv = helm.history_argv(
            h, RELEASE, namespace=NAMESPACE, kubeconfig=str(self.info.kubeconfig)
        )
        res = proc.run(argv, timeout=60, check=False)
        if not res.ok:
            return []
        data: list[dict[str, Any]] = json.loads(res.stdout)
        return sorted(data, key=lambda r: int(r["revision"]))

    def record(self) -> dict[str, Any]:
        data: dict[str, Any] = json.loads((self.out / "release.json").read_text())
        return data


def error_lines(res: proc.Result) -> list[str]:
    return [ln for ln in res.stderr.splitlines() if ln.startswith("error:")]


def deployed(history: list[dict[str, Any]]) -> list[int]:
    return [int(h["revision"]) for h in history if h["status"] == "deployed"]


@pytest.fixture(scope="module")
def safety() -> Iterator[Safety]:
    """A configuration of its own, the reference images pushed, a clean namespace."""
    from tests.e2e.conftest import E2E_VALUES, _config_text, _wait_for_cluster

    cluster_info = _wait_for_cluster()  # E2E_CLUSTER_WAIT: for a cluster still starting

    work = ROOT / ".ci-out" / "e2e-safety"
    work.mkdir(parents=True, exist_ok=True)
    values = work / "values-e2e.yaml"
    values.write_text(yaml.safe_dump(E2E_VALUES), encoding="utf-8")
    data = yaml.safe_load(_config_text(values))
    env = data["environments"]["e2e"]
    env |= {
        "namespace": NAMESPACE,
        "release": RELEASE,
        "timeout": "8m",
        "deploy": {"lease_wait": "4m", "interrupt_grace": "90s", "max_restarts": 2},
    }
    data["environments"] = {ENV: env}
    config = work / "ci.yaml"
    config.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    ctx = Safety(cluster_info, config, work / "out")
    built = ctx.ci("images", "build", "--push", timeout=3600)
    assert built.returncode == 0, proc.tail(built.stderr + built.stdout, 20)
    ctx.kubectl("delete", "namespace", NAMESPACE, "--ignore-not-found", "--wait")
    yield ctx
    if os.environ.get("E2E_KEEP") != "1":
        ctx.kubectl("delete", "namespace", NAMESPACE, "--ignore-not-found", "--wait=false")


# ----------------------------------------------------------------------------- inputs first


def test_a_bad_set_exits_2_with_one_line_before_the_cluster_is_touched(safety: Safety) -> None:
    res = safety.deploy("--set", "backend.replicas=-3")
    assert res.returncode == 2, res.stderr
    assert error_lines(res) == [
        f"error: environment '{ENV}': values: backend.replicas: not a key the chart's values "
        "schema allows"
    ]
    res = safety.deploy("--set", "backend.replicaCount=-3")
    assert res.returncode == 2
    assert "values: backend.replicaCount: minimum" in error_lines(res)[0]
    assert safety.kubectl("get", "namespace", NAMESPACE, check=False).returncode != 0


def test_a_digest_missing_from_the_registry_is_refused_before_helm(safety: Safety) -> None:
    images = json.loads((safety.out / "images.json").read_text())
    backend = next(i for i in images["images"] if i["name"] == "backend")
    backend["digest"] = "sha256:" + "0" * 64
    backend["ref"] = f"{backend['repository']}@{backend['digest']}"
    broken = safety.out / "images-missing.json"
    broken.write_text(json.dumps(images))
    started = time.monotonic()
    res = safety.deploy("--images", str(broken))
    assert res.returncode == 1, res.stderr
    (line,) = error_lines(res)
    assert line.startswith("error: image backend ")
    assert "digest not found in its registry; refusing before Helm runs" in line
    assert time.monotonic() - started < 30
    assert safety.history() == []


# ----------------------------------------------------------------------------- skip, drift


def test_install_then_a_no_change_deploy_makes_no_revision(safety: Safety) -> None:
    res = safety.deploy()
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-2000:]
    assert deployed(safety.history()) == [1]
    started = time.monotonic()
    res = safety.deploy()
    took = time.monotonic() - started
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-2000:]
    assert "skip: unchanged" in res.stdout
    assert [h["revision"] for h in safety.history()] == [1]
    record = safety.record()
    assert record["revision"] == 1
    assert record["deploy"]["action"] == "skipped"
    assert record["deploy"]["reason"].startswith("unchanged")
    assert took < 30, took
