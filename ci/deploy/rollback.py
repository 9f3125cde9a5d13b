"""``ci deploy --rollback REVISION``: Helm back to an earlier revision, watched like an upgrade.

Why a deploy of its own: a rollback changes production as much as an upgrade does, so it gets
the same care -- the revision is checked against ``helm history`` before anything changes, the
diff (live manifest against the revision's) is shown first (``--diff-only`` shows only that,
for the reviewers of the rollback workflow), the environment's Lease keeps it from overlapping
a deploy, a pending release is recovered first, and while Helm waits a ``kube.Monitor``
reports readiness and stops Helm on a failure that cannot heal; a failed rollback carries the
same diagnosis (pods, logs, events, history) as a failed upgrade.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from ci import helm as helmlib
from ci import release
from ci.config import Config, Environment
from ci.deploy.diff import DiffResult, diff_manifests
from ci.deploy.helmcalls import Cluster
from ci.deploy.recovery import GOOD, previous_good
from ci.deploy.step import Reporter, diagnosis, recover, refuse_if_locked, watch_helm
from ci.errors import ConfigError, DeployError


@dataclass(frozen=True)
class RollbackOptions:
    """What the command line asked for."""

    env: str
    revision: int
    diff_only: bool = False
    helm_major: int | None = None
    recover_pending: bool = False


@dataclass
class RollbackResult:
    env: Environment
    target: int
    #: The revision serving before the rollback, and the new revision Helm wrote for it.
    previous_revision: int | None = None
    revision: int | None = None
    diff: DiffResult | None = None
    server_version: str = ""
    duration: float = 0.0
    since: datetime = field(default_factory=lambda: datetime.now(UTC))


def check_target(history: list[dict[str, Any]], revision: int, env: Environment) -> None:
    """Refuse (exit 2) a revision Helm does not have, one never deployed, or the live one."""
    flag = f"--rollback {revision}"
    where = f"release {env.release} in {env.namespace}"
    if not history:
        raise ConfigError(f"{flag}: {where} has no revisions (expected an installed release)")
    entries = {int(h["revision"]): h for h in history}
    if revision not in entries:
        known = ", ".join(str(r) for r in sorted(entries)[-10:])
        raise ConfigError(f"{flag}: {where} has no revision {revision} (expected one of: {known})")
    status = str(entries[revision].get("status", ""))
    if status == "deployed":
        raise ConfigError(f"{flag}: revision {revision} is the one deployed now in {where}")
    if status not in GOOD:
        raise ConfigError(
            f"{flag}: revision {revision} of {where} is {status or 'of unknown status'} "
            f"(expected a revision that was deployed: {' or '.join(GOOD)})"
        )


def run(cfg: Config, opts: RollbackOptions, report: Reporter | None = None) -> RollbackResult:
    """Check, diff, then (unless ``diff_only``) roll back holding the Lease; see the module."""
    from ci import kube

    report = report or Reporter()
    started = time.monotonic()
    env = cfg.environment(opts.env)
    helm = helmlib.find(opts.helm_major)
    with kube.access(env) as acc:
        client = kube.connect(acc)
        result = RollbackResult(env, opts.revision, since=datetime.now(UTC))
        result.server_version = client.server_version()
        report.line(f"cluster {result.server_version} via {acc.source}; helm {helm.version}")
        cluster = Cluster(helm, env, acc.kubeconfig)
        history = cluster.history()
        check_target(history, opts.revision, env)
        _show_diff(cluster, history, opts.revision, report, result)
        if not opts.diff_only:
            _locked_rollback(cluster, client, opts, report, result)
    result.duration = time.monotonic() - started
    return result


def _show_diff(
    cluster: Cluster,
    history: list[dict[str, Any]],
    revision: int,
    report: Reporter,
    result: RollbackResult,
) -> None:
    """What the rollback changes: the live manifest against the one stored with ``revision``."""
    target = cluster.manifest(revision)
    if not target.strip():
        raise DeployError(
            f"revision {revision} of release {cluster.env.release}: Helm returned no manifest"
        )
    result.diff = diff_manifests(cluster.manifest(), target, cluster.env.namespace)
    result.diff.live_revision = previous_good(history)
    report.diff(result.diff)


def _locked_rollback(
    cluster: Cluster, client: Any, opts: RollbackOptions, report: Reporter, result: RollbackResult
) -> None:
    from ci import kube

    env = cluster.env
    lease = kube.Lease(client, env.namespace, env.release, release.run_id())
    previous = lease.acquire(
        env.lease_wait,
        lambda h: report.line(
            f"waiting for {env.name} (up to {env.lease_wait}s): another deploy holds it, "
            f"{h.describe()}"
        ),
        where=f"environment {env.name}",
    )
    try:
        history = cluster.history()
        forced = opts.recover_pending or previous != "absent"
        if recover(cluster, history, report, dry=False, force=forced).action != "none":
            history = cluster.history()
        check_target(history, opts.revision, env)  # the history may have moved while waiting
        result.previous_revision = previous_good(history)
        _roll_back(cluster, client, opts.revision, report, result)
        result.revision = cluster.revision()
    finally:
        lease.release()


def _roll_back(
    cluster: Cluster, client: Any, revision: int, report: Reporter, result: RollbackResult
) -> None:
    env = cluster.env
    argv = helmlib.rollback_argv(
        cluster.helm,
        env.release,
        revision,
        namespace=env.namespace,
        timeout=f"{env.timeout}s",
        kube_context=env.kube_context,
        kubeconfig=cluster.kubeconfig,
    )
    report.line(f"helm rollback {env.release} {revision} -> {env.namespace}")
    run = watch_helm(client, env, report, result.since, argv, what="helm rollback")
    if run.ok:
        return
    refuse_if_locked(env, run)
    detail, _ = diagnosis(cluster, client, run.monitor, run.output, result.since)
    cause = run.stopped or helmlib.error_message(
        run.output, limit=300, default="helm rollback failed"
    )
    raise DeployError(
        f"rollback of {env.release} in {env.name} to revision {revision} failed: {cause}",
        detail=detail,
    )
