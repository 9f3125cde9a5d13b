"""`make ci-local` end to end: the whole pipeline twice, as a person would run it.

The first run may build or reuse images and installs or upgrades the `staging` environment of
ci.local.yaml on the built-in cluster; the second, with nothing changed, must build no image,
reuse the chart check and skip the deploy (no new revision), with smoke checks passing both times.
"""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path
from typing import Any, cast

import pytest

from ci import proc
from ci.cluster.base import ClusterInfo

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
OUT = ROOT / ".ci-out"
NAMESPACE = "schedule-local"
SKIP_REASON = "unchanged: manifests equal the live release, which is healthy"


def make_ci_local() -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["make", "ci-local"], cwd=ROOT, text=True, capture_output=True, check=False, timeout=1800
    )


def read(name: str) -> dict[str, object]:
    data: dict[str, object] = json.loads((OUT / name).read_text())
    return data


def test_make_ci_local_twice(cluster_info: ClusterInfo) -> None:
    first = make_ci_local()
    assert first.returncode == 0, first.stdout[-4000:] + first.stderr[-2000:]
    assert "pipeline passed" in first.stdout
    revision = read("release.json")["revision"]
    assert read("smoke.json")["result"] == "passed"

    second = make_ci_local()
    assert second.returncode == 0, second.stdout[-4000:] + second.stderr[-2000:]
    images = read("images.json")["images"]
    assert isinstance(images, list)
    assert {i["status"] for i in images} == {"cached"}, images
    release = read("release.json")
    assert release["deploy"] == {"action": "skipped", "reason": SKIP_REASON}, release["deploy"]
    assert release["revision"] == revision, "a no-change deploy made a new revision"
    assert read("smoke.json")["result"] == "passed"
    steps = cast(list[dict[str, str]], read("pipeline.json")["steps"])
    assert [s["name"] for s in steps] == ["config", "images", "chart", "deploy", "smoke"]
    outcomes = {s["name"]: s["outcome"] for s in steps}
    assert (outcomes["images"], outcomes["chart"], outcomes["deploy"]) == (
        "cached",
        "cached",
        "skipped",
    ), steps

    jobs = proc.run(
        (
            cluster_info.kubectl,
            "--kubeconfig",
            str(cluster_info.kubeconfig),
            "get",
            "jobs",
            "-n",
            NAMESPACE,
            "-o",
            "json",
        ),
    )
    hooks = [
        j["metadata"]["name"]
        for j in json.loads(jobs.stdout)["items"]
        if "helm.sh/hook" in (j["metadata"].get("annotations") or {})
    ]
    assert hooks == [], f"completed hook Jobs left behind: {hooks}"


def test_backend_hpa_reads_cpu_utilisation(builtin_cluster: ClusterInfo) -> None:
    """The chart's HPA on backend CPU gets a measured utilisation from metrics-server.

    Waited for past the controller's CPU initialisation period (5 minutes): until then it
    drops a pod's samples taken within one metrics window of its readiness changing, so a
    backend that the run before restarted, on a loaded node, may report none for minutes.
    """
    argv = (
        builtin_cluster.kubectl, "--kubeconfig", str(builtin_cluster.kubeconfig),
        "get", "hpa", "schedule-app-backend", "-n", NAMESPACE, "-o", "json",
    )  # fmt: skip
    deadline = time.monotonic() + 330
    measured: list[dict[str, Any]] = []
    while not measured and time.monotonic() < deadline:
        status = json.loads(proc.run(argv, timeout=30).stdout).get("status", {})
        # an HPA without a usable sample lists an entry with an empty type, no resource
        measured = [m for m in status.get("currentMetrics") or [] if m.get("resource")]
        if not measured:
            time.sleep(5)
    assert measured, f"the backend HPA reported no CPU utilisation within 330 s: {status}"
    resource = measured[0]["resource"]
    assert isinstance(resource, dict)
    assert resource["name"] == "cpu"
    assert isinstance(resource["current"]["averageUtilization"], int)
