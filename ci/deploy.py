"""``ci deploy``: ``helm upgrade --install`` by digest, with waiting, rollback, recovery and a diff.

Why the order below: every input is checked (environment, values files, digests, release
manifest) before the cluster is touched, and the cluster's reachability before anything is
changed, so bad input stops with one line and nothing half-done. A release left pending by an
interrupted run is recovered first (Helm would otherwise refuse every later deploy), while a
pending release that is still young is treated as a deploy in progress and refused. While Helm
waits, a ``kube.Monitor`` reports readiness, hook Jobs and Warning events; when Helm fails, a
diagnosis (failing pods and their logs, events, hook logs, release history) goes with the error.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import re
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

from ci import helm as helmlib
from ci import manifests, proc, release
from ci.config import Config, Environment
from ci.errors import CiError, ConfigError, DeployError, ProcessError
from ci.release import ImageRef, ReleaseRecord

PENDING = ("pending-install", "pending-upgrade", "pending-rollback")
GOOD = ("deployed", "superseded")
LOCK_MESSAGE = "another operation (install/upgrade/rollback) is in progress"
#: A pending release younger than the environment's timeout plus this may still be running.
STALE_MARGIN = 120
REDACTED = "(redacted)"

Sink = Callable[[str], None]


def _ignore(_line: str) -> None:
    return None


# ----------------------------------------------------------------------------- plan


@dataclass(frozen=True)
class Options:
    """What the command line asked for."""

    env: str
    images_file: Path
    release_manifest: Path | None = None
    diff_only: bool = False
    server_side: bool | None = None
    extra_values: tuple[Path, ...] = ()
    extra_set: tuple[str, ...] = ()
    helm_major: int | None = None
    #: Treat a pending release as abandoned whatever its age (nothing else can be deploying).
    recover_pending: bool = False


@dataclass(frozen=True)
class Plan:
    """A fully checked deploy, decided before anything on the cluster changes."""

    env: Environment
    chart_dir: Path
    chart_name: str
    chart_version: str
    images: list[ImageRef]
    git_sha: str
    values: tuple[Path, ...]
    set_values: dict[str, str]
    extra_set: tuple[str, ...]
    triggered_by: str
    source: str

    @property
    def description(self) -> str:
        """Helm's per-revision note: what and who, readable in ``helm history``."""
        imgs = ", ".join(f"{i.name}@{i.digest.removeprefix('sha256:')[:12]}" for i in self.images)
        return f"ci deploy {self.git_sha[:12]} by {self.triggered_by}: {imgs}"[:250]


def escape_set(value: str) -> str:
    """Escape a value for ``helm --set``, where ``,`` separates pairs and ``\\`` escapes."""
    return value.replace("\\", "\\\\").replace(",", "\\,")


def image_set_values(images: Iterable[ImageRef]) -> dict[str, str]:
    """Deploy by digest: each image's repository and digest under its values key."""
    out: dict[str, str] = {}
    for i in images:
        out[f"{i.values_key}.image.repository"] = i.repository
        out[f"{i.values_key}.image.digest"] = i.digest
    return out


def deploy_info_values(git_sha: str, triggered: str) -> dict[str, str]:
    """The chart's ``deployInfo`` annotations: which commit, and who or what deployed it."""
    return {"deployInfo.gitSha": git_sha, "deployInfo.triggeredBy": triggered}


def make_plan(cfg: Config, opts: Options, environ: Mapping[str, str] | None = None) -> Plan:
    """Check every input and decide the values; raise ``ConfigError`` (exit 2) on bad input."""
    env = cfg.environment(opts.env)
    values = (*env.values, *opts.extra_values)
    for path in values:
        if not path.is_file():
            raise ConfigError(f"environment '{env.name}': values file {path} not found")
    chart_name, chart_version = release.chart_meta(cfg.chart.path)
    if opts.release_manifest is not None:
        record = release.read_release(opts.release_manifest)
        release.check_for_promotion(
            record, chart_version=chart_version, source=str(opts.release_manifest)
        )
        images, git_sha, source = record.images, record.git_sha, str(opts.release_manifest)
    elif env.approval and not opts.diff_only:
        raise ConfigError(
            f"environment '{env.name}' needs approval: deploy it only with --release-manifest "
            "FILE (the release.json of a staging run whose smoke checks passed)"
        )
    else:
        images, git_sha = release.load_images(opts.images_file)
        source = str(opts.images_file)
    missing = release.missing_images(images, [i.name for i in cfg.images])
    if missing:
        raise ConfigError(f"{source}: no digest for image(s) {', '.join(missing)}")
    configured = {i.name: i.values_key for i in cfg.images}
    images = [
        dataclasses.replace(i, values_key=configured.get(i.name, i.values_key))
        for i in images
        if i.name in configured
    ]
    who = release.triggered_by(environ)
    set_values = {**image_set_values(images), **deploy_info_values(git_sha, who)}
    _check_set_pairs(opts.extra_set)
    return Plan(
        env=env,
        chart_dir=cfg.chart.path,
        chart_name=chart_name,
        chart_version=chart_version,
        images=images,
        git_sha=git_sha,
        values=values,
        set_values=set_values,
        extra_set=opts.extra_set,
        triggered_by=who,
        source=source,
    )


def _check_set_pairs(items: Iterable[str]) -> None:
    """Each extra ``--set`` must be ``KEY=VALUE``: bad input stops before the cluster is touched."""
    for item in items:
        key, sep, _value = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"--set {item!r}: expected KEY=VALUE")


def set_args(plan: Plan) -> list[str]:
    """The ``--set`` pairs for Helm: recorded values first, the command line's extras last."""
    return [f"{k}={escape_set(v)}" for k, v in plan.set_values.items()] + list(plan.extra_set)


def upgrade_argv(
    helm: helmlib.Helm, plan: Plan, *, kubeconfig: str | None, server_side: bool | None
) -> helmlib.Argv:
    """The one ``helm upgrade --install`` a deploy runs.

    Waits for readiness and Jobs, rolls back on failure (``--atomic`` / ``--rollback-on-
    failure``), and on Helm 4 states the apply mode explicitly (server-side unless asked
    otherwise), so a default changing between Helm releases cannot change how objects apply.
    """
    env = plan.env
    if server_side is None and helm.major >= 4:
        server_side = True
    return helmlib.upgrade_argv(
        helm,
        env.release,
        plan.chart_dir,
        namespace=env.namespace,
        values=plan.values,
        set_values=set_args(plan),
        install=True,
        wait=True,
        wait_for_jobs=True,
        timeout=f"{env.timeout}s",
        rollback_on_failure=True,
        server_side=server_side,
        history_max=10,
        description=plan.description,
        kube_context=env.kube_context,
        kubeconfig=kubeconfig,
    )


# ----------------------------------------------------------------------------- pending releases


@dataclass(frozen=True)
class Recovery:
    """What to do about the release's current state before upgrading."""

    action: str  # "none", "rollback", "uninstall" or "refuse"
    revision: int | None = None
    message: str = ""


def parse_time(text: str) -> datetime | None:
    """Helm's timestamps (RFC 3339 with up to nanoseconds, or Go's default layout)."""
    text = text.strip()
    m = re.match(
        r"(\d{4}-\d{2}-\d{2})[T ](\d{2}:\d{2}:\d{2})(\.\d+)?\s*(Z|[+-]\d{2}:?\d{2})?", text
    )
    if not m:
        return None
    day, clock, frac, zone = m.groups()
    frac = (frac or ".0")[:7]
    zone = "+00:00" if zone in (None, "Z") else zone
    if len(zone) == 5:
        zone = zone[:3] + ":" + zone[3:]
    try:
        return datetime.fromisoformat(f"{day}T{clock}{frac}{zone}")
    except ValueError:
        return None


def decide_recovery(
    history: list[dict[str, Any]], *, now: datetime, stale_after: float, release_name: str
) -> Recovery:
    """Decide from ``helm history`` whether the release is usable, stuck, or busy.

    A pending revision older than ``stale_after`` seconds (longer than any deploy may run)
    was left by an interrupted run: roll back to the last good revision, or uninstall when
    there never was one. A younger one is another deploy still running: refuse. A release
    whose every revision failed cannot be upgraded by Helm: uninstall it first.
    """
    if not history:
        return Recovery("none")
    entries = sorted(history, key=lambda h: int(h["revision"]))
    last = entries[-1]
    status = str(last.get("status", ""))
    revision = int(last["revision"])
    good = [int(h["revision"]) for h in entries if h.get("status") in GOOD]
    if status in PENDING:
        started = parse_time(str(last.get("updated", "")))
        age = (now - started).total_seconds() if started else None
        if age is None or age < stale_after:
            seen = f"{age:.0f}s ago" if age is not None else "at an unknown time"
            return Recovery(
                "refuse",
                revision,
                f"release {release_name} revision {revision} is {status} (started {seen}): "
                f"another deploy is in progress; refusing to start a second one",
            )
        if good:
            return Recovery(
                "rollback",
                good[-1],
                f"release {release_name} revision {revision} was left {status} by an "
                f"interrupted run ({age:.0f}s ago); rolling back to revision {good[-1]}",
            )
        return Recovery(
            "uninstall",
            None,
            f"release {release_name} revision {revision} was left {status} by an interrupted "
            f"run and no revision was ever deployed; uninstalling it",
        )
    if not good and all(h.get("status") == "failed" for h in entries):
        return Recovery(
            "uninstall",
            None,
            f"release {release_name} has only failed revisions; uninstalling it so it can "
            f"be installed again",
        )
    return Recovery("none")


def previous_good(history: list[dict[str, Any]]) -> int | None:
    """The revision serving now: the newest ``deployed`` one (else newest ``superseded``)."""
    deployed = [int(h["revision"]) for h in history if h.get("status") == "deployed"]
    if deployed:
        return max(deployed)
    good = [int(h["revision"]) for h in history if h.get("status") in GOOD]
    return max(good) if good else None


# ----------------------------------------------------------------------------- diff


Key = tuple[str, str, str]


def index_manifests(text: str, namespace: str, *, skip_hooks: bool = True) -> dict[Key, Any]:
    """Objects by ``(kind, namespace, name)``; hooks are left out as ``helm get manifest`` does."""
    out: dict[Key, Any] = {}
    for doc in (m.obj for m in manifests.parse_manifests(text)):
        if "kind" not in doc:
            continue
        meta = doc.get("metadata") or {}
        if skip_hooks and "helm.sh/hook" in (meta.get("annotations") or {}):
            continue
        key = (str(doc["kind"]), str(meta.get("namespace") or namespace), str(meta.get("name")))
        out[key] = doc
    return out


def redact_pair(old: Any, new: Any) -> tuple[Any, Any]:
    """Secrets' values replaced on both sides; a changed value still shows as changed."""
    old_r, new_r = _redact(old), _redact(new)
    if not (isinstance(old, dict) and isinstance(new, dict)) or new.get("kind") != "Secret":
        return old_r, new_r
    for section in ("data", "stringData"):
        before = old.get(section) or {}
        after = new.get(section) or {}
        for k in after:
            if k in before and before[k] != after[k]:
                new_r[section][k] = REDACTED + " changed"
    return old_r, new_r


def _redact(obj: Any) -> Any:
    if not isinstance(obj, dict) or obj.get("kind") != "Secret":
        return obj
    copy = dict(obj)
    for section in ("data", "stringData"):
        if isinstance(copy.get(section), dict):
            copy[section] = dict.fromkeys(copy[section], REDACTED)
    return copy


@dataclass(frozen=True)
class ObjectChange:
    kind: str
    namespace: str
    name: str
    change: str  # "added", "removed" or "changed"
    diff: str

    @property
    def ref(self) -> str:
        return f"{self.kind}/{self.name} ({self.namespace})"


@dataclass
class DiffResult:
    changes: list[ObjectChange] = field(default_factory=list)
    unchanged: int = 0
    live_revision: int | None = None

    def summary_line(self) -> str:
        counts = {c: sum(1 for x in self.changes if x.change == c) for c in ("added", "changed")}
        removed = sum(1 for x in self.changes if x.change == "removed")
        base = f"revision {self.live_revision}" if self.live_revision else "nothing (new release)"
        return (
            f"diff against {base}: {counts['added']} added, {counts['changed']} changed, "
            f"{removed} removed, {self.unchanged} unchanged"
        )

    def text(self) -> str:
        parts = [self.summary_line()]
        for c in self.changes:
            parts.append(f"--- {c.change}: {c.ref}")
            if c.diff:
                parts.append(c.diff.rstrip("\n"))
        return "\n".join(parts) + "\n"


def _dump(obj: Any) -> list[str]:
    if obj is None:
        return []
    return yaml.safe_dump(obj, sort_keys=True, default_flow_style=False).splitlines(keepends=True)


def diff_manifests(live: str, new: str, namespace: str) -> DiffResult:
    """Object-by-object unified diffs between the live manifest and the rendered one."""
    before = index_manifests(live, namespace)
    after = index_manifests(new, namespace)
    result = DiffResult()
    for key in sorted(set(before) | set(after)):
        old, cur = redact_pair(before.get(key), after.get(key))
        if old == cur:
            result.unchanged += 1
            continue
        change = "added" if old is None else "removed" if cur is None else "changed"
        kind, ns, name = key
        text = "".join(
            difflib.unified_diff(
                _dump(old), _dump(cur), f"live/{kind}/{name}", f"new/{kind}/{name}", n=3
            )
        )
        result.changes.append(ObjectChange(kind, ns, name, change, text))
    return result


# ----------------------------------------------------------------------------- helm calls


@dataclass
class Cluster:
    """Helm plus the kubeconfig of one environment: the Helm calls a deploy makes."""

    helm: helmlib.Helm
    env: Environment
    kubeconfig: str | None

    def _scope(self) -> dict[str, Any]:
        return {
            "namespace": self.env.namespace,
            "kube_context": self.env.kube_context,
            "kubeconfig": self.kubeconfig,
        }

    def history(self) -> list[dict[str, Any]]:
        argv = helmlib.history_argv(self.helm, self.env.release, **self._scope())
        result = proc.run(argv, timeout=60, check=False, what="helm history")
        if not result.ok:
            if "not found" in (result.stderr + result.stdout).lower():
                return []
            raise ProcessError(
                f"helm history failed: {proc.tail(result.stderr, 3)}",
                detail=proc.tail(result.stderr),
            )
        data = json.loads(result.stdout or "[]")
        return list(data) if isinstance(data, list) else []

    def manifest(self) -> str:
        argv = helmlib.get_manifest_argv(self.helm, self.env.release, **self._scope())
        result = proc.run(argv, timeout=60, check=False, what="helm get manifest")
        return result.stdout if result.ok else ""

    def render(self, plan: Plan) -> str:
        argv = helmlib.template_argv(
            self.helm,
            plan.chart_dir,
            release=self.env.release,
            namespace=self.env.namespace,
            values=plan.values,
            set_values=set_args(plan),
            include_crds=False,
        )
        return proc.run(argv, timeout=120, what="helm template").stdout

    def rollback(self, revision: int | None) -> None:
        argv = helmlib.rollback_argv(
            self.helm,
            self.env.release,
            revision,
            timeout=f"{self.env.timeout}s",
            **self._scope(),
        )
        proc.run(argv, timeout=self.env.timeout + 60, what="helm rollback")

    def uninstall(self) -> None:
        argv = helmlib.uninstall_argv(self.helm, self.env.release, **self._scope())
        proc.run(argv, timeout=self.env.timeout + 60, what="helm uninstall")

    def revision(self) -> int:
        argv = helmlib.status_argv(self.helm, self.env.release, **self._scope())
        data = json.loads(proc.run(argv, timeout=60, what="helm status").stdout)
        return int(data["version"])


def history_text(history: list[dict[str, Any]]) -> str:
    """``helm history`` as a few aligned lines for a failure report."""
    lines = ["release history:"]
    for h in sorted(history, key=lambda x: int(x["revision"]))[-6:]:
        lines.append(
            f"    {h.get('revision'):>3}  {h.get('status', ''):<16} {h.get('chart', ''):<22} "
            f"{h.get('updated', '')[:19]}  {h.get('description', '')}"
        )
    return "\n".join(lines)


# ----------------------------------------------------------------------------- the step


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
