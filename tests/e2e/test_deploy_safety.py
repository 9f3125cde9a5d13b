"""``ci deploy`` is fast, exact and safe to interrupt, on the local cluster.

Its own namespace and release (``schedule-e2e-safety``/``safe-app``) and its own configuration,
so it runs beside the other end-to-end tests. The tests run in file order on one release: bad
input first (nothing may exist afterwards), then install and a no-change deploy.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
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


def test_an_older_commit_skips_as_superseded_and_makes_no_revision(safety: Safety) -> None:
    """The release runs this checkout's commit; the same images recorded for its parent (a
    push queued earlier that got the Lease later) must not replace it."""
    if not deployed(safety.history()):
        first = safety.deploy()
        assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-2000:]
    before = safety.history()
    data = json.loads((safety.out / "images.json").read_text())
    head = data["git"]["sha"]
    parent = proc.run(("git", "rev-parse", f"{head}^"), cwd=ROOT, timeout=30).stdout.strip()
    older = safety.out.parent / "images-parent.json"
    older.write_text(json.dumps({**data, "git": {**data["git"], "sha": parent}}))
    res = safety.deploy("--images", str(older))
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-2000:]
    record = safety.record()
    assert record["deploy"]["action"] == "skipped", record["deploy"]
    assert record["deploy"]["reason"].startswith("superseded:"), record["deploy"]
    assert head[:12] in record["deploy"]["reason"]
    assert safety.history() == before


def test_a_kubectl_scale_drift_is_repaired_by_the_next_no_change_deploy(safety: Safety) -> None:
    """The HPA is off here, so the replica count is the chart's: a scale by hand is drift."""
    found = safety.kubectl("get", "deployments", "-n", NAMESPACE, "-o", "name").stdout.split()
    backend = next(d for d in found if d.endswith("-backend"))
    safety.kubectl("scale", backend, "-n", NAMESPACE, "--replicas=2")
    # settled first: a replica still starting would make the release unhealthy, which also
    # upgrades, for that reason instead of the drift
    safety.kubectl("rollout", "status", backend, "-n", NAMESPACE, "--timeout=300s")
    res = safety.deploy()
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-2000:]
    assert "drift repaired" in res.stdout, res.stdout[-3000:]
    assert deployed(safety.history()) == [2]
    replicas = safety.kubectl(
        "get", backend, "-n", NAMESPACE, "-o", "jsonpath={.spec.replicas}"
    ).stdout
    assert replicas == "1"


# ----------------------------------------------------------------------------- the Lease


def start_deploy(safety: Safety, *args: str) -> subprocess.Popen[str]:
    """A deploy in the background, as a second job or a cancelled one would run."""
    return subprocess.Popen(
        safety.argv("deploy", "--env", ENV, *args),
        env=safety.env,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )


def test_two_deploys_one_second_apart_take_turns(safety: Safety) -> None:
    before = len(safety.history())
    first = start_deploy(safety, "--set", "frontend.podAnnotations.turn=first")
    time.sleep(1)
    second = start_deploy(safety, "--set", "frontend.podAnnotations.turn=second")
    out1, err1 = first.communicate(timeout=900)
    out2, err2 = second.communicate(timeout=900)
    assert "already exists" not in err1 + err2 + out1 + out2
    assert first.returncode == 0, out1[-2000:] + err1[-2000:]
    assert second.returncode == 0, out2[-2000:] + err2[-2000:]
    assert "another deploy holds it" in out2 + err2
    history = safety.history()
    assert len(history) == before + 2
    assert deployed(history) == [int(history[-1]["revision"])]
    annotations = safety.kubectl(
        "get", "deployments", "-n", NAMESPACE, "-o",
        "jsonpath={.items[*].spec.template.metadata.annotations.turn}",
    ).stdout  # fmt: skip
    assert annotations.split() == ["second"]


# ----------------------------------------------------------------------------- interrupts


def helm_processes() -> list[str]:
    """Helm processes of this release still running anywhere on the machine."""
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            argv = cmdline.read_bytes().split(b"\0")
        except OSError:
            continue
        words = [a.decode(errors="replace") for a in argv if a]
        if words and Path(words[0]).name.startswith("helm") and NAMESPACE in words:
            found.append(" ".join(words))
    return found


def job_uids(safety: Safety) -> set[str]:
    jobs = json.loads(safety.kubectl("get", "jobs", "-n", NAMESPACE, "-o", "json").stdout)
    return {str(j["metadata"]["uid"]) for j in jobs["items"]}


def hook_job_running(safety: Safety, earlier: set[str]) -> bool:
    """A hook Job of this deploy is running: not one of the ``earlier`` Jobs, which an
    interrupted deploy before it may have left (a later no-change deploy runs no hook to
    replace it). Taking one of those would signal a ``ci`` still starting up."""
    jobs = json.loads(safety.kubectl("get", "jobs", "-n", NAMESPACE, "-o", "json").stdout)
    return any(
        "helm.sh/hook" in (j["metadata"].get("annotations") or {})
        and str(j["metadata"]["uid"]) not in earlier
        and not (j.get("status") or {}).get("succeeded")
        for j in jobs["items"]
    )


def rollout_applied(safety: Safety, value: str) -> bool:
    got = safety.kubectl(
        "get", "deployments", "-n", NAMESPACE, "-o",
        "jsonpath={.items[*].spec.template.metadata.annotations.interrupted}",
    ).stdout  # fmt: skip
    return value in got.split()


def wait_for(what: str, ready: Any, run: subprocess.Popen[str], limit: float = 300) -> None:
    deadline = time.monotonic() + limit
    while not ready():
        assert run.poll() is None, f"the deploy ended before {what}"
        assert time.monotonic() < deadline, f"no {what} within {limit:g}s"
        time.sleep(0.3)


POINTS = ["before-helm", "hook-job", "rollout-wait"]


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
@pytest.mark.parametrize("point", POINTS)
def test_an_interrupted_deploy_leaves_no_helm_and_one_deployed_revision(
    safety: Safety, point: str, sig: signal.Signals
) -> None:
    value = f"{point}-{sig.name}".lower()
    if not deployed(safety.history()):  # an upgrade is interrupted, not the first install
        first = safety.deploy()
        assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-2000:]
    before = len(safety.history())
    earlier = job_uids(safety)
    run = start_deploy(safety, "--set", f"frontend.podAnnotations.interrupted={value}")
    if point == "before-helm":
        time.sleep(1.0)
        assert run.poll() is None
    elif point == "hook-job":
        wait_for("hook Job", lambda: hook_job_running(safety, earlier), run)
    else:
        wait_for("rollout", lambda: rollout_applied(safety, value), run)
    run.send_signal(sig)
    out, err = run.communicate(timeout=240)
    assert run.returncode == 130, out[-2000:] + err[-2000:]
    assert helm_processes() == []
    history = safety.history()
    assert history[-1]["status"] in ("deployed", "failed"), history[-1]
    assert len(deployed(history)) == 1, history
    if point == "before-helm":
        assert len(history) == before, "a revision was made before Helm was to start"
    started = time.monotonic()
    res = safety.deploy()
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-2000:]
    assert time.monotonic() - started < 240
    assert "another deploy is in progress" not in res.stdout + res.stderr
    assert len(deployed(safety.history())) == 1


# ----------------------------------------------------------------------------- fail fast


def test_a_container_that_crashes_at_start_is_rolled_back_within_two_minutes(
    safety: Safety,
) -> None:
    """The JRE base image as backend: its command ends at once, so the container restarts
    until CrashLoopBackOff; with ``max_restarts: 2`` the deploy stops and rolls back."""
    from ci.registry import Client

    repo = "base/jre"
    digest = Client("127.0.0.1:5000", insecure=True).digest(repo, "bookworm")
    assert digest, "the local base image base/jre:bookworm is not in the registry"
    before = safety.history()
    started = time.monotonic()
    res = safety.deploy(
        "--set", f"backend.image.repository=127.0.0.1:5000/{repo}",
        "--set", f"backend.image.digest={digest}",
        "--set", "migration.enabled=false",
        "--set", "postgresql.metrics.enabled=false",  # its role comes from the migration Job
    )  # fmt: skip
    took = time.monotonic() - started
    assert res.returncode == 1, res.stdout[-2000:] + res.stderr[-2000:]
    (line,) = error_lines(res)
    assert "CrashLoopBackOff" in line, line
    assert "rolled back" in line, line
    assert took < 120, took
    history = safety.history()  # kept to the last revisions (history_max): count by number
    assert int(history[-1]["revision"]) == int(before[-1]["revision"]) + 2
    assert history[-1]["status"] == "deployed"
    assert history[-1]["description"].startswith("Rollback to")
    assert len(deployed(history)) == 1
