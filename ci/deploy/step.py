"""``ci deploy`` itself: check, recover, diff, upgrade with a monitor watching, record.

Why the order: the plan is checked before the cluster is touched and the cluster's reachability
before anything is changed. While Helm waits, a ``kube.Monitor`` reports readiness, hook Jobs
and Warning events; when Helm fails, a diagnosis (failing pods and their logs, events, hook
logs, release history) goes with the error.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ci import helm as helmlib
from ci import proc, release
from ci.config import Config
from ci.deploy.diff import DiffResult, diff_manifests
from ci.deploy.helmcalls import Cluster, history_text
from ci.deploy.plan import Options, Plan, make_plan, upgrade_argv
from ci.deploy.recovery import STALE_MARGIN, Recovery, decide_recovery, previous_good
from ci.errors import CiError, DeployError
from ci.release import ImageRef, ReleaseRecord

LOCK_MESSAGE = "another operation (install/upgrade/rollback) is in progress"

Sink = Callable[[str], None]


def _ignore(_line: str) -> None:
    return None


@dataclass
class Result:
    plan: Plan
    namespace_action: str = ""
    recovery: Recovery = field(default_factory=lambda: Recovery("none"))
    diff: DiffResult | None = None
    revision: int | None = None
    previous_revision: int | None = None
    record_path: Path | None = None
    server_version: str = ""
    duration: float = 0.0


@dataclass
class Reporter:
    """Where a deploy reports as it goes (the CLI prints; this module never does)."""

    line: Sink = _ignore
    diff: Callable[[DiffResult], None] = lambda _d: None


#: Checks a plan's images before anything touches the cluster; returns them as verified.
Verifier = Callable[[Plan], list[ImageRef]]


def run(
    cfg: Config,
    opts: Options,
    out_dir: Path,
    report: Reporter | None = None,
    verify: Verifier | None = None,
) -> Result:
    """Deploy ``opts.env``; see the module docstring for the order of checks and actions."""
    from ci import kube

    report = report or Reporter()
    started = time.monotonic()
    plan = make_plan(cfg, opts)
    if verify is not None:
        plan = dataclasses.replace(plan, images=verify(plan))
    with kube.access(plan.env) as acc:
        client = kube.connect(acc)
        helm = helmlib.find(opts.helm_major)
        result = Result(plan)
        result.server_version = client.server_version()
        report.line(f"cluster {result.server_version} via {acc.source}; helm {helm.version}")
        cluster = Cluster(helm, plan.env, acc.kubeconfig)
        history = cluster.history()
        _recover(cluster, history, report, result, dry=opts.diff_only, force=opts.recover_pending)
        if plan.env.approval or opts.diff_only:
            result.diff = diff_manifests(
                cluster.manifest() if history else "", cluster.render(plan), plan.env.namespace
            )
            result.diff.live_revision = previous_good(history)
            report.diff(result.diff)
        if opts.diff_only:
            result.duration = time.monotonic() - started
            return result
        history = cluster.history() if result.recovery.action != "none" else history
        result.previous_revision = previous_good(history)
        result.namespace_action = client.ensure_namespace(plan.env.namespace, kube.PSS_LABELS)
        report.line(f"namespace {plan.env.namespace}: {result.namespace_action}")
        _upgrade(cluster, client, plan, opts, report)
        result.revision = cluster.revision()
    result.record_path = release.write_release(_record(plan, result), out_dir)
    result.duration = time.monotonic() - started
    return result


def _recover(
    cluster: Cluster,
    history: list[dict[str, Any]],
    report: Reporter,
    result: Result,
    *,
    dry: bool,
    force: bool,
) -> None:
    decision = decide_recovery(
        history,
        now=datetime.now(UTC),
        stale_after=0 if force else cluster.env.timeout + STALE_MARGIN,
        release_name=cluster.env.release,
    )
    result.recovery = decision
    if decision.action == "none":
        return
    if decision.action == "refuse":
        raise DeployError(
            decision.message + "; retry when it has finished, or pass --recover-pending if "
            "no other deploy can be running"
        )
    report.line(decision.message + (" (skipped: --diff-only)" if dry else ""))
    if dry:
        return
    if decision.action == "rollback":
        cluster.rollback(decision.revision)
    else:
        cluster.uninstall()


def _upgrade(cluster: Cluster, client: Any, plan: Plan, opts: Options, report: Reporter) -> None:
    """Run Helm with a monitor watching; on failure raise with the diagnosis attached."""
    from ci import kube

    argv = upgrade_argv(
        cluster.helm, plan, kubeconfig=cluster.kubeconfig, server_side=opts.server_side
    )
    report.line(f"helm upgrade --install {plan.env.release} -> {plan.env.namespace}")
    monitor = kube.Monitor(client, plan.env.namespace, report.line)
    monitor.start()
    try:
        done = proc.run(
            argv,
            timeout=2 * plan.env.timeout + 120,
            check=False,
            on_line=lambda line, _s: report.line(f"  helm: {line}") if line.strip() else None,
            what="helm upgrade",
        )
    finally:
        monitor.stop()
    if done.ok:
        return
    output = done.stderr + done.stdout
    if LOCK_MESSAGE in output or "another operation" in output:
        raise DeployError(
            f"release {plan.env.release} in {plan.env.namespace}: Helm reports another operation "
            "in progress; refusing (two deploys to one environment must not overlap)"
        )
    raise _failure(cluster, client, plan, monitor, output)


def _failure(cluster: Cluster, client: Any, plan: Plan, monitor: Any, output: str) -> CiError:
    from ci import kube

    parts = [proc.tail(output, 10)]
    try:
        parts.append(kube.diagnose(client, plan.env.namespace, monitor.problems).text())
    except Exception as exc:  # a diagnosis must not hide the failure it explains
        parts.append(f"(diagnosis incomplete: {kube.first_line(exc)})")
    history: list[dict[str, Any]] = []
    try:
        history = cluster.history()
        parts.append(history_text(history))
    except CiError as exc:
        parts.append(f"(no history: {exc.message})")
    reason = helmlib.error_message(output, limit=300, default="helm upgrade failed")
    return DeployError(
        f"deploy of {plan.env.release} to {plan.env.name} failed{rolled_back(history)}: {reason}",
        detail="\n".join(p for p in parts if p),
    )


def rolled_back(history: list[dict[str, Any]]) -> str:
    """`` and was rolled back (Rollback to 3)`` when Helm's automatic rollback happened."""
    if not history:
        return ""
    last = max(history, key=lambda h: int(h["revision"]))
    note = str(last.get("description", ""))
    if last.get("status") == "deployed" and note.lower().startswith("rollback"):
        return f" and was rolled back (revision {last['revision']}: {note})"
    return ""


def _record(plan: Plan, result: Result) -> ReleaseRecord:
    assert result.revision is not None
    return ReleaseRecord(
        env=plan.env.name,
        namespace=plan.env.namespace,
        release=plan.env.release,
        revision=result.revision,
        previous_revision=result.previous_revision,
        git_sha=plan.git_sha,
        images=plan.images,
        chart_name=plan.chart_name,
        chart_version=plan.chart_version,
        triggered_by=plan.triggered_by,
        time=release.now(),
        run_id=release.run_id(),
    )


def rollback(cfg: Config, env_name: str, revision: int, *, helm_major: int | None = None) -> None:
    """Roll an environment back to ``revision`` (after failed smoke checks)."""
    from ci import kube

    env = cfg.environment(env_name)
    helm = helmlib.find(helm_major)
    with kube.access(env) as acc:
        kube.connect(acc)
        Cluster(helm, env, acc.kubeconfig).rollback(revision)
