"""``ci deploy`` itself: check, recover, diff, upgrade with a monitor watching, record.

Why the order: the plan is checked before the cluster is touched and the cluster's reachability
before anything is changed. While Helm waits, a ``kube.Monitor`` reports readiness, hook Jobs
and Warning events; when Helm fails, a diagnosis (failing pods and their logs, events, hook
logs, release history) goes with the error.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ci import helm as helmlib
from ci import proc, release
from ci.config import Config, Environment
from ci.deploy import inputs, promotion, skip
from ci.deploy.diff import DiffResult, diff_manifests, index_manifests
from ci.deploy.helmcalls import Cluster, history_text
from ci.deploy.inputs import ClientFor
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
    #: When the deploy started: the diagnosis shows only what happened since.
    since: datetime = field(default_factory=lambda: datetime.now(UTC))
    decision: skip.Decision = field(default_factory=lambda: skip.Decision(True, ""))


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
    *,
    verify: Verifier | None = None,
    client_for: ClientFor | None = None,
    validator: inputs.Validator | None = None,
) -> Result:
    """Deploy ``opts.env``; see the module docstring for the order of checks and actions."""
    from ci import kube

    report = report or Reporter()
    started = time.monotonic()
    kube.preload()  # the client's import overlaps the checks below, which wait on programs
    plan = make_plan(cfg, opts)
    if opts.release_manifest is not None:
        record = release.read_release(opts.release_manifest)
        promotion.check(plan.env, record, repo=cfg.root, source=str(opts.release_manifest))
    helm = helmlib.find(opts.helm_major)
    clients = client_for or inputs.anonymous_clients(cfg)
    plan = _checked(cfg, helm, plan, verify=verify, client_for=clients, validator=validator)
    with kube.access(plan.env) as acc:
        client = kube.connect(acc)
        result = Result(plan, since=datetime.now(UTC))
        result.server_version = client.server_version()
        report.line(f"cluster {result.server_version} via {acc.source}; helm {helm.version}")
        cluster = Cluster(helm, plan.env, acc.kubeconfig)
        if opts.diff_only:
            history = cluster.history()
            result.recovery = recover(
                cluster, history, report, dry=True, force=opts.recover_pending
            )
            _show_diff(cluster, plan, history, report, result)
            result.duration = time.monotonic() - started
            return result
        result.namespace_action = client.ensure_namespace(plan.env.namespace, kube.PSS_LABELS)
        report.line(f"namespace {plan.env.namespace}: {result.namespace_action}")
        lease = kube.Lease(client, plan.env.namespace, plan.env.release, release.run_id())
        previous = lease.acquire(
            plan.env.lease_wait,
            lambda h: report.line(
                f"waiting for {plan.env.name} (up to {plan.env.lease_wait}s): another deploy "
                f"holds it, {h.describe()}"
            ),
            where=f"environment {plan.env.name}",
        )
        try:
            deploy = _Deploy(cluster, client, plan, opts, report, result, cfg.root)
            _locked(deploy, previous != "absent")
        finally:
            lease.release()
    result.record_path = release.write_release(_record(plan, result), out_dir)
    result.duration = time.monotonic() - started
    return result


def _checked(
    cfg: Config,
    helm: helmlib.Helm,
    plan: Plan,
    *,
    verify: Verifier | None,
    client_for: ClientFor,
    validator: inputs.Validator | None,
) -> Plan:
    """The plan with its images verified, once its inputs are known good; nothing has
    touched the cluster yet.

    Verification (signatures, attestations) and the input checks (digests, render, schemas)
    read the same digests and wait on different programs, so they run side by side; a
    refused image is reported before an input problem, as when they ran one after the other.
    """
    with ThreadPoolExecutor(max_workers=2, thread_name_prefix="inputs") as pool:
        verified = pool.submit(verify, plan) if verify is not None else None
        checked = pool.submit(inputs.check, cfg, helm, plan, client_for, validator)
        images = verified.result() if verified is not None else plan.images
        checked.result()
    return dataclasses.replace(plan, images=images)


@dataclass(frozen=True)
class _Deploy:
    """One deploy in progress: what every stage after the checks works with."""

    cluster: Cluster
    client: Any
    plan: Plan
    opts: Options
    report: Reporter
    result: Result
    #: The checkout this run deploys from: git answers whether the live commit is later.
    repo: Path


def _locked(d: _Deploy, abandoned: bool) -> None:
    """Holding the environment's Lease: recover, decide, upgrade (or skip)."""
    cluster, plan, opts, report, result = d.cluster, d.plan, d.opts, d.report, d.result
    history = cluster.history()
    # Holding the Lease, a pending release was left by a deploy that ended (its Lease was
    # handed back or expired): recovered at once, whatever its age.
    forced = opts.recover_pending or abandoned
    result.recovery = recover(cluster, history, report, dry=False, force=forced)
    if result.recovery.action != "none":
        history = cluster.history()
    if plan.env.approval:
        _show_diff(cluster, plan, history, report, result)
    result.previous_revision = previous_good(history)
    result.decision = _decide(d, history)
    report.line(f"{'upgrade' if result.decision.upgrade else 'skip'}: {result.decision.reason}")
    if not result.decision.upgrade:
        result.revision = result.previous_revision
        return
    _upgrade(d)
    result.revision = cluster.revision()


def _show_diff(
    cluster: Cluster, plan: Plan, history: list[dict[str, Any]], report: Reporter, result: Result
) -> None:
    # an existing release renders against the cluster, as its upgrade would (lookups)
    rendered = cluster.render_live(plan) if history else cluster.render(plan)
    result.diff = diff_manifests(
        cluster.manifest() if history else "", rendered, plan.env.namespace
    )
    result.diff.live_revision = previous_good(history)
    report.diff(result.diff)


def _decide(d: _Deploy, history: list[dict[str, Any]]) -> skip.Decision:
    """Upgrade unless a later commit is live, or the rendered manifests equal the live,
    healthy, undrifted release.

    The facts a skip needs (the live commit, the live manifest, this run's render against the
    cluster, the workloads' state) are independent reads that each wait on Helm or the API
    server, so they are asked side by side; their answers are then weighed in the order a
    person would check them. A release that is not ``deployed`` needs none of them.
    """
    from ci import kube

    cluster, plan, opts = d.cluster, d.plan, d.opts
    status = _last_status(history)
    if opts.force or status != "deployed":
        return skip.decide(force=opts.force, status=status, changes=0, not_ready=[], drifted=[])
    ns = plan.env.namespace
    with ThreadPoolExecutor(max_workers=4, thread_name_prefix="skip-facts") as pool:
        live_sha = pool.submit(cluster.live_git_sha)
        live = pool.submit(cluster.manifest)
        rendered = pool.submit(cluster.render_live, plan)
        states = pool.submit(kube.status_lines, d.client, ns, settled=True)
        objects = pool.submit(lambda: cluster.live_objects(live.result()))
        later = _live_is_later(d, live_sha.result())
        if later:
            pool.shutdown(wait=False, cancel_futures=True)
            return skip.decide(
                force=False, status=status, changes=0, not_ready=[], drifted=[],
                live_is_later=later,
            )  # fmt: skip
        changes = diff_manifests(live.result(), rendered.result(), ns).changes
        not_ready: list[str] = []
        drifted: list[str] = []
        if not changes:
            release = index_manifests(live.result(), ns)
            not_ready = skip.unready(states.result(), release)
            if not not_ready:
                drifted = skip.drift(release, skip.index_live(objects.result(), ns))
    return skip.decide(
        force=False, status=status, changes=len(changes), not_ready=not_ready, drifted=drifted
    )


def _live_is_later(d: _Deploy, live: str) -> str:
    """The live release's commit (``live``) when it descends from this run's, else empty.

    Deploys wait for each other on the Lease in no particular order, so an older push can
    get it after a newer one was deployed; it must not put the older commit back. When git
    cannot tell (a shallow clone, a commit it does not have), the deploy goes ahead as it
    would without the check, saying so in one line.
    """
    lineage = promotion.later(d.repo, d.plan.git_sha, live)
    if lineage.later is None:
        d.report.line(
            f"live commit {live[:12]} vs {d.plan.git_sha[:12] or '(none)'}: cannot tell which "
            f"is later ({lineage.why}); deploying as usual"
        )
    return live if lineage.later else ""


def _last_status(history: list[dict[str, Any]]) -> str | None:
    if not history:
        return None
    return str(max(history, key=lambda h: int(h["revision"])).get("status", ""))


def recover(
    cluster: Cluster,
    history: list[dict[str, Any]],
    report: Reporter,
    *,
    dry: bool,
    force: bool,
) -> Recovery:
    """Recover a release left pending (or only failed) by an earlier run; what was decided."""
    decision = decide_recovery(
        history,
        now=datetime.now(UTC),
        stale_after=0 if force else cluster.env.timeout + STALE_MARGIN,
        release_name=cluster.env.release,
    )
    if decision.action == "none":
        return decision
    if decision.action == "refuse":
        raise DeployError(
            decision.message + "; retry when it has finished, or pass --recover-pending if "
            "no other deploy can be running"
        )
    report.line(decision.message + (" (skipped: --diff-only)" if dry else ""))
    if dry:
        return decision
    if decision.action == "rollback":
        cluster.rollback(decision.revision)
    else:
        cluster.uninstall()
    return decision


def _upgrade(d: _Deploy) -> None:
    """Run Helm with a monitor watching; a final failure stops it at once; raise on failure."""
    cluster, plan, report = d.cluster, d.plan, d.report

    argv = upgrade_argv(
        cluster.helm,
        plan,
        kubeconfig=cluster.kubeconfig,
        server_side=d.opts.server_side,
    )
    report.line(f"helm upgrade --install {plan.env.release} -> {plan.env.namespace}")
    run = watch_helm(d.client, plan.env, report, d.result.since, argv, what="helm upgrade")
    if run.ok:
        return
    refuse_if_locked(plan.env, run)
    if run.stopped is not None:
        _ensure_rolled_back(cluster, report)
    raise _failure(d, run.monitor, run.output, run.stopped)


@dataclass(frozen=True)
class Watched:
    """A Helm call that ran with a monitor watching: its result, and why it was stopped."""

    done: proc.Result
    stopped: str | None
    monitor: Any

    @property
    def ok(self) -> bool:
        return self.done.ok and self.stopped is None

    @property
    def output(self) -> str:
        return self.done.stderr + self.done.stdout


def watch_helm(
    client: Any,
    env: Environment,
    report: Reporter,
    since: datetime,
    argv: Sequence[str],
    *,
    what: str,
) -> Watched:
    """Run a waiting Helm call (upgrade, rollback) while a ``kube.Monitor`` reports readiness,
    hooks and events; a failure that cannot heal (CrashLoopBackOff past ``max_restarts``, an
    image that cannot be pulled) stops Helm at once instead of after the whole timeout."""
    from ci import kube

    stop = proc.Cancel()

    def final(reason: str) -> None:
        report.line(f"  stopping helm: {reason}")
        stop.cancel(reason)

    monitor = kube.Monitor(
        client,
        env.namespace,
        report.line,
        since=since,
        max_restarts=env.max_restarts,
        on_fatal=final,
    )
    monitor.start()
    try:
        done = proc.run(
            argv,
            timeout=2 * env.timeout + 120,
            check=False,
            on_line=lambda line, _s: report.line(f"  helm: {line}") if line.strip() else None,
            what=what,
            grace=env.interrupt_grace,
            cancel=stop,
        )
    finally:
        monitor.stop()
    return Watched(done, stop.reason, monitor)


def refuse_if_locked(env: Environment, run: Watched) -> None:
    """Helm's own lock message, as one line: two operations on one release must not overlap."""
    if run.stopped is None and (LOCK_MESSAGE in run.output or "another operation" in run.output):
        raise DeployError(
            f"release {env.release} in {env.namespace}: Helm reports another operation "
            "in progress; refusing (two deploys to one environment must not overlap)"
        )


def _ensure_rolled_back(cluster: Cluster, report: Reporter) -> None:
    """After Helm was stopped: roll back unless Helm already did (the newest must be deployed)."""
    history = cluster.history()
    if _last_status(history) == "deployed":
        return
    good = previous_good(history)
    if good is None:
        report.line("no earlier revision to roll back to: uninstalling the failed release")
        cluster.uninstall()
        return
    report.line(f"rolling back to revision {good}")
    cluster.rollback(good)


def diagnosis(
    cluster: Cluster, client: Any, monitor: Any, output: str, since: datetime
) -> tuple[str, list[dict[str, Any]]]:
    """Helm's last lines, failing pods and their logs, events, hook logs and the release
    history (also returned): what a failed upgrade or rollback reports as its detail."""
    from ci import kube

    parts = [proc.tail(output, 10)]
    try:
        parts.append(kube.diagnose(client, cluster.env.namespace, monitor.problems, since).text())
    except Exception as exc:  # a diagnosis must not hide the failure it explains
        parts.append(f"(diagnosis incomplete: {kube.first_line(exc)})")
    history: list[dict[str, Any]] = []
    try:
        history = cluster.history()
        parts.append(history_text(history))
    except CiError as exc:
        parts.append(f"(no history: {exc.message})")
    return "\n".join(p for p in parts if p), history


def _failure(d: _Deploy, monitor: Any, output: str, cause: str | None) -> CiError:
    """The error of a failed upgrade: the cause in one line, the diagnosis as its detail."""
    plan = d.plan
    detail, history = diagnosis(d.cluster, d.client, monitor, output, d.result.since)
    if cause is not None:
        return DeployError(
            f"deploy of {plan.env.release} to {plan.env.name} stopped: {cause}"
            f"{rolled_back(history)}",
            detail=detail,
        )
    reason = helmlib.error_message(output, limit=300, default="helm upgrade failed")
    return DeployError(
        f"deploy of {plan.env.release} to {plan.env.name} failed{rolled_back(history)}: {reason}",
        detail=detail,
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
        deploy=_what_it_did(result.decision),
    )


def _what_it_did(decision: skip.Decision) -> dict[str, str]:
    """release.json's ``deploy``: upgraded or skipped, why, and the later commit that is live
    when superseded (so this record, whose smoke checks ran against that commit, is never
    promoted as if its own images had been tested)."""
    done = {"action": "upgraded" if decision.upgrade else "skipped", "reason": decision.reason}
    if decision.superseded_by:
        done["superseded_by"] = decision.superseded_by
    return done


def rollback(cfg: Config, env_name: str, revision: int, *, helm_major: int | None = None) -> None:
    """Roll an environment back to ``revision`` (after failed smoke checks)."""
    from ci import kube

    env = cfg.environment(env_name)
    helm = helmlib.find(helm_major)
    with kube.access(env) as acc:
        kube.connect(acc)
        Cluster(helm, env, acc.kubeconfig).rollback(revision)
