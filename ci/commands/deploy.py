"""``ci deploy``: ``helm upgrade --install`` of one environment by image digest."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import click

from ci.commands.context import HELM_MAJOR_OPTION, Context, pass_ctx

if TYPE_CHECKING:
    from ci.deploy import Plan
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
    helm_major: str | None,
) -> None:
    """helm upgrade --install ENV by image digest: wait, roll back on failure, write release.json.

    Checks every input and that the cluster answers before changing anything. Environments
    with approval get a diff against the live release first (log and job summary) and deploy
    only a --release-manifest whose smoke checks passed, with exactly its digests. A release
    left pending by an interrupted run is rolled back (or uninstalled) first; a pending
    release younger than the timeout is taken for a deploy in progress and refused.
    """
    from ci import deploy, presenter

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
    )

    report = deploy.Reporter(line=presenter.echo, diff=lambda d: presenter.deploy_diff(env, d))
    with presenter.deploying(env):
        result = deploy.run(ctx.config, opts, ctx.out_dir, report, verify=_verifier(ctx, env))
    if not diff_only:
        presenter.deployed(env, result)


def _verifier(ctx: Context, env: str) -> Callable[[Plan], list[ImageRef]]:
    """Signature and provenance of every digest, checked before Helm runs (``ci.images.verify``)."""

    def verify(plan: Plan) -> list[ImageRef]:
        from ci.images.verify import verify_images

        return verify_images(ctx.config, env, plan.images, git_sha=plan.git_sha)

    return verify
