"""``ci deploy``: ``helm upgrade --install`` of one environment by image digest."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import click

from ci.commands.context import HELM_MAJOR_OPTION, Context, pass_ctx

if TYPE_CHECKING:
    from ci.deploy import Plan, RollbackOptions
    from ci.manifests import Issue, Manifest
    from ci.registry import Client
    from ci.release import ImageRef


@click.command("deploy")
@click.option("--env", "env", required=True, help="Environment to deploy (from the configuration).")
@click.option(
    "--release-manifest",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="release.json of a staging run whose smoke checks passed (required with approval).",
)
@click.option("--diff-only", is_flag=True, help="Print what would change and change nothing.")
@click.option(
    "--images",
    "images_file",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Image digests from `ci images build --push` (default: OUT/images.json).",
)
@click.option(
    "--server-side/--client-side",
    "server_side",
    default=None,
    help="Helm 4 apply mode (default: server-side on Helm 4; Helm 3 is client-side only).",
)
@click.option(
    "--values",
    "extra_values",
    multiple=True,
    type=click.Path(dir_okay=False, path_type=Path),
    envvar="CI_DEPLOY_VALUES",
    help="Extra values file after the environment's (repeatable; env CI_DEPLOY_VALUES, "
    "colon-separated).",
)
@click.option("--set", "extra_set", multiple=True, help="Extra KEY=VALUE (as helm --set).")
@click.option(
    "--recover-pending",
    is_flag=True,
    help="Recover a pending release whatever its age (when no other deploy can be running).",
)
@click.option(
    "--force",
    is_flag=True,
    help="Upgrade even when the rendered manifests equal the live, healthy release.",
)
@click.option(
    "--rollback",
    "rollback_to",
    type=click.IntRange(min=1),
    default=None,
    metavar="REVISION",
    help="Roll the release back to this Helm revision (diff first; waits and diagnoses as a "
    "deploy does). With --diff-only, only show what it would change.",
)
@HELM_MAJOR_OPTION
@pass_ctx
def deploy_cmd(
    ctx: Context,
    *,
    env: str,
    release_manifest: Path | None,
    diff_only: bool,
    images_file: Path | None,
    server_side: bool | None,
    extra_values: tuple[Path, ...],
    extra_set: tuple[str, ...],
    recover_pending: bool,
    force: bool,
    rollback_to: int | None,
    helm_major: str | None,
) -> None:
    """helm upgrade --install ENV by image digest: wait, roll back on failure, write release.json.

    Checks every input and that the cluster answers before changing anything. Environments
    with approval get a diff against the live release first (log and job summary) and deploy
    only a --release-manifest whose smoke checks passed, with exactly its digests. A release
    left pending by an interrupted run is rolled back (or uninstalled) first; a pending
    release younger than the timeout is taken for a deploy in progress and refused.

    Before the cluster is touched, every digest must exist in its registry and the chart must
    render and validate with this run's values. One deploy per environment holds its Lease;
    another waits for it. When the rendered manifests equal the live release, which is healthy
    and not edited by hand, nothing is upgraded (--force upgrades anyway). SIGINT or SIGTERM
    reach Helm, which gets the environment's deploy.interrupt_grace to stop.

    An environment with promote_from takes a --release-manifest only when that environment
    wrote it, for the checked-out commit, and the commit is on the default branch (origin/
    BRANCH: default_branch, or CI_DEFAULT_BRANCH). --rollback REVISION rolls the release back
    to an earlier revision with the same diff, Lease, recovery, waiting and diagnosis.
    """
    from ci import deploy, presenter, proc

    if rollback_to is not None:
        _refuse_with_rollback(
            release_manifest=release_manifest is not None,
            images=images_file is not None,
            values=bool(extra_values),
            set_=bool(extra_set),
            server_side=server_side is not None,
            force=force,
        )
        back = deploy.RollbackOptions(
            env=env,
            revision=rollback_to,
            diff_only=diff_only,
            helm_major=int(helm_major) if helm_major else None,
            recover_pending=recover_pending,
        )
        _rollback(ctx, back)
        return

    opts = deploy.Options(
        env=env,
        images_file=images_file or ctx.out_dir / "images.json",
        release_manifest=release_manifest,
        diff_only=diff_only,
        server_side=server_side,
        extra_values=extra_values,
        extra_set=extra_set,
        helm_major=int(helm_major) if helm_major else None,
        recover_pending=recover_pending,
        force=force,
    )

    report = deploy.Reporter(line=presenter.echo, diff=lambda d: presenter.deploy_diff(env, d))
    with presenter.deploying(env), proc.interruptible():
        result = deploy.run(
            ctx.config,
            opts,
            ctx.out_dir,
            report,
            verify=_verifier(ctx, env),
            client_for=_registries(ctx),
            validator=_validator(ctx),
        )
    if not diff_only:
        presenter.deployed(env, result)


def _refuse_with_rollback(**given: bool) -> None:
    """Options that describe a new release mean nothing to a rollback: one line, exit 2."""
    from ci.errors import UsageError

    used = [f"--{name.rstrip('_').replace('_', '-')}" for name, on in given.items() if on]
    if used:
        raise UsageError(
            f"--rollback takes a revision Helm already has; {', '.join(used)} "
            "(options of a new release) cannot go with it"
        )


def _rollback(ctx: Context, opts: RollbackOptions) -> None:
    from ci import deploy, presenter, proc

    env = opts.env
    report = deploy.Reporter(line=presenter.echo, diff=lambda d: presenter.deploy_diff(env, d))
    with presenter.deploying(env), proc.interruptible():
        result = deploy.run_rollback(ctx.config, opts, report)
    if not opts.diff_only:
        presenter.rolled_back_to(env, result)


def _verifier(ctx: Context, env: str) -> Callable[[Plan], list[ImageRef]]:
    """Signature and provenance of every digest, checked before Helm runs (``ci.images.verify``)."""

    def verify(plan: Plan) -> list[ImageRef]:
        from ci.images.verify import verify_images

        return verify_images(ctx.config, env, plan.images, git_sha=plan.git_sha)

    return verify


def _registries(ctx: Context) -> Callable[[str], Client]:
    """The configured registry's client (with its credentials); a plain one for other hosts."""
    from ci.images.credentials import registry_client
    from ci.registry import Client

    own = registry_client(ctx.config)

    def client_for(host: str) -> Client:
        return own if host == own.host else Client(host, retries=1)

    return client_for


def _validator(ctx: Context) -> Callable[[Sequence[Manifest]], list[Issue]]:
    """Kubernetes schemas (``chart.kubernetes_version`` and the CRDs) of rendered objects."""

    def check(manifests: Sequence[Manifest]) -> list[Issue]:
        from ci import validate

        cfg = ctx.config
        schemas = validate.SchemaSet.load(cfg.chart.kubernetes_version, cfg.chart.crds)
        return validate.validate(manifests, schemas)

    return check
