"""``ci deploy`` is fast, exact and safe to interrupt, on the local cluster.

Its own namespace and release (``schedule-e2e-safety``/``safe-app``) and its own configuration,
so it runs beside the other end-to-end tests. The tests run in file order on one release: bad
input first (nothing may exist afterwards), then install, no-change deploys, drift, two deploys
at once, interrupts, a killed deploy, a crashing container.
"""

from __future__ import annotations

import contextlib
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
FRONTEND = f"{RELEASE}-schedule-app-frontend"


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

    def start(self, *args: str, log: Path) -> subprocess.Popen[bytes]:
        """``ci deploy`` in the background, its output in ``log``."""
        with log.open("wb") as fh:
            return subprocess.Popen(
                self.argv("deploy", "--env", ENV, *args),
                env=self.env,
                cwd=ROOT,
                stdout=fh,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

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


def helm_processes() -> list[str]:
    """Command lines of every Helm process working on this test's release."""
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            args = cmdline.read_bytes().split(b"\0")
        except OSError:
            continue
        text = b" ".join(args).decode(errors="replace")
        program = os.path.basename(args[0].decode(errors="replace"))
        if program.startswith("helm") and NAMESPACE in text:
            found.append(text)
    return found


def descendants(pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def error_lines(res: proc.Result) -> list[str]:
    return [ln for ln in res.stderr.splitlines() if ln.startswith("error:")]


def deployed(history: list[dict[str, Any]]) -> list[int]:
    return [int(h["revision"]) for h in history if h["status"] == "deployed"]


def wait_for_line(log: Path, run: subprocess.Popen[bytes], needle: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while needle not in log.read_text(errors="replace"):
        assert run.poll() is None, f"the deploy ended before {needle!r}:\n{log.read_text()}"
        assert time.monotonic() < deadline, f"no {needle!r} in:\n{log.read_text()}"
        time.sleep(0.2)


@pytest.fixture(scope="module")
def safety(cluster_info: ClusterInfo) -> Iterator[Safety]:
    """A configuration of its own, the reference images pushed, a clean namespace."""
    from tests.e2e.conftest import E2E_VALUES, _config_text

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


def test_a_scaled_deployment_is_repaired_by_the_next_no_change_deploy(safety: Safety) -> None:
    safety.kubectl("scale", "deployment", FRONTEND, "-n", NAMESPACE, "--replicas=2")
    res = safety.deploy()
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-2000:]
    assert f"upgrade: drift repaired: Deployment/{FRONTEND} ({NAMESPACE}): spec.replicas" in (
        res.stdout
    )
    assert deployed(safety.history()) == [2]
    replicas = safety.kubectl(
        "get", "deployment", FRONTEND, "-n", NAMESPACE, "-o", "jsonpath={.spec.replicas}"
    ).stdout
    assert replicas == "1"
    assert safety.record()["deploy"]["action"] == "upgraded"


# ----------------------------------------------------------------------------- lease


def test_two_deploys_one_second_apart_take_turns(safety: Safety, tmp_path: Path) -> None:
    first = safety.start("--force", log=tmp_path / "first.log")
    time.sleep(1)
    second = safety.start("--force", log=tmp_path / "second.log")
    assert first.wait(timeout=900) == 0, (tmp_path / "first.log").read_text()[-3000:]
    assert second.wait(timeout=900) == 0, (tmp_path / "second.log").read_text()[-3000:]
    logs = (tmp_path / "first.log").read_text() + (tmp_path / "second.log").read_text()
    assert "already exists" not in logs
    assert "another operation" not in logs
    assert "another deploy holds it, run " in (tmp_path / "second.log").read_text()
    history = safety.history()
    assert deployed(history) == [history[-1]["revision"]]
    assert [h["status"] for h in history[-2:]] == ["superseded", "deployed"]


# ----------------------------------------------------------------------------- interrupts


@pytest.mark.parametrize(
    ("signum", "point"),
    [
        (signal.SIGINT, "namespace "),  # before Helm starts
        (signal.SIGINT, "job/"),  # while the migration hook runs
        (signal.SIGTERM, "  helm: "),  # while the rollout waits
    ],
)
def test_an_interrupt_leaves_no_helm_and_one_deployed_revision(
    safety: Safety, tmp_path: Path, signum: int, point: str
) -> None:
    log = tmp_path / "deploy.log"
    before = safety.history()[-1]["revision"]
    run = safety.start("--set", f"frontend.podAnnotations.interrupted=r{before}", log=log)
    wait_for_line(log, run, point, timeout=300)
    if point != "namespace ":
        time.sleep(2)
    os.kill(run.pid, signum)
    assert run.wait(timeout=240) == 130, log.read_text()[-3000:]
    assert helm_processes() == [], log.read_text()[-3000:]
    history = safety.history()
    assert len(deployed(history)) == 1, history
    assert history[-1]["status"] in ("deployed", "failed"), history

    res = safety.deploy()
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-2000:]
    history = safety.history()
    assert deployed(history) == [history[-1]["revision"]]


def test_a_killed_deploys_pending_release_is_recovered_without_flags(
    safety: Safety, tmp_path: Path
) -> None:
    """SIGKILL to ci and Helm alike (the runner died): the Lease expires, nothing renews it."""
    log = tmp_path / "deploy.log"
    run = safety.start("--set", "frontend.podAnnotations.killed=yes", log=log)
    deadline = time.monotonic() + 300
    while not safety.history() or safety.history()[-1]["status"] != "pending-upgrade":
        assert run.poll() is None, log.read_text()[-3000:]
        assert time.monotonic() < deadline, "no pending-upgrade revision appeared"
        time.sleep(0.5)
    for pid in [*descendants(run.pid), run.pid]:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    run.wait(timeout=30)
    pending = safety.history()[-1]
    assert pending["status"] == "pending-upgrade"

    res = safety.deploy()
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-2000:]
    assert f"revision {pending['revision']} was left pending-upgrade" in res.stdout
    history = safety.history()
    assert deployed(history) == [history[-1]["revision"]]


# ----------------------------------------------------------------------------- fail fast


def test_a_crashing_container_is_rolled_back_within_two_minutes(safety: Safety) -> None:
    """A JVM whose heap cannot hold it exits at once: CrashLoopBackOff, not the timeout."""
    good = deployed(safety.history())[-1]
    started = time.monotonic()
    res = safety.deploy(
        "--set", "backend.env.JAVA_TOOL_OPTIONS=-Xmx1k", "--set", "migration.enabled=false"
    )
    took = time.monotonic() - started
    assert res.returncode == 1, res.stdout[-3000:]
    (line,) = error_lines(res)
    assert "stopped: pod/" in line, line
    assert "CrashLoopBackOff after" in line, line
    assert took < 120, took
    history = safety.history()
    assert deployed(history) == [history[-1]["revision"]]
    assert history[-1]["revision"] > good
    assert history[-2]["status"] == "failed"
