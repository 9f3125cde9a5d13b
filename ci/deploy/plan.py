"""What a deploy will do, decided before the cluster is touched: the plan and Helm's argv.

Why first: every input is checked here (environment, values files, digests, release manifest),
so bad input stops with one line (exit 2) and nothing half-done.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from ci import helm as helmlib
from ci import release
from ci.config import Config, Environment
from ci.errors import ConfigError
from ci.release import ImageRef


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
    #: Upgrade even when nothing changed.
    force: bool = False


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
    _set_keys(opts.extra_set)
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


#: A ``,`` not escaped by ``\\`` separates the pairs of one ``--set``.
_PAIR_SEPARATOR = re.compile(r"(?<!\\),")


def _set_keys(items: Iterable[str]) -> list[str]:
    """The keys an extra ``--set`` names; each pair must be ``KEY=VALUE``.

    Bad input stops here, before the cluster is touched.
    """
    keys: list[str] = []
    for item in items:
        for pair in _PAIR_SEPARATOR.split(item):
            key, sep, _value = pair.partition("=")
            if not sep or not key.strip():
                raise ConfigError(f"--set {item!r}: expected KEY=VALUE")
            keys.append(key.strip())
    return keys


def set_args(plan: Plan) -> list[str]:
    """The command line's extra ``--set`` pairs, typed as Helm infers them."""
    return list(plan.extra_set)


def string_args(plan: Plan) -> dict[str, str]:
    """The recorded values (repositories, digests, commit, who), passed as ``--set-string``.

    A tag or SHA made only of digits stays a string this way. Helm applies ``--set-string``
    after ``--set`` whatever the order, so a key the command line sets is left out here:
    the command line's extras still win, as they did when everything was ``--set``.
    """
    named = set(_set_keys(plan.extra_set))
    return {k: v for k, v in plan.set_values.items() if k not in named}


def upgrade_argv(
    helm: helmlib.Helm,
    plan: Plan,
    *,
    kubeconfig: str | None,
    server_side: bool | None,
) -> helmlib.Argv:
    """The one ``helm upgrade --install`` a deploy runs.

    Waits for readiness and Jobs, rolls back on failure (``--atomic`` / ``--rollback-on-
    failure``), and on Helm 4 states the apply mode explicitly (server-side unless asked
    otherwise), so a default changing between Helm releases cannot change how objects apply.
    Server-side apply always forces its conflicts: the chart's fields win.
    """
    env = plan.env
    if server_side is None and helm.major >= 4:
        server_side = True
    # A field changed by hand (``kubectl scale``) belongs to another field manager now, and
    # server-side apply refuses to take it back unless told: every later upgrade, and the
    # rollback of a failed one, would fail on that conflict. The chart is what a deploy
    # applies, so its fields always win (the drift check reports what it repairs).
    force_conflicts = bool(server_side)
    return helmlib.upgrade_argv(
        helm,
        env.release,
        plan.chart_dir,
        namespace=env.namespace,
        values=plan.values,
        set_values=set_args(plan),
        set_strings=string_args(plan),
        install=True,
        wait=True,
        wait_for_jobs=True,
        timeout=f"{env.timeout}s",
        rollback_on_failure=True,
        server_side=server_side,
        force_conflicts=force_conflicts,
        history_max=10,
        description=plan.description,
        kube_context=env.kube_context,
        kubeconfig=kubeconfig,
    )
