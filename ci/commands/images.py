"""``ci images``: build, tag, push (attest, sign) the application's images, log in, prune."""

from __future__ import annotations

from pathlib import Path

import click

from ci.commands.context import Context, pass_ctx


@click.group("images")
def images_group() -> None:
    """Build, tag and push the application's container images."""


@images_group.command("build")
@click.option("--push/--no-push", default=False, show_default=True, help="Push to the registry.")
@click.option(
    "--only", "only", multiple=True, metavar="NAME", help="Build only this image (repeatable)."
)
@click.option(
    "--builder",
    type=click.Choice(["auto", "buildx", "buildx-container", "docker"]),
    default=None,
    envvar="CI_BUILDER",
    help="buildx (pinned BuildKit), buildx-container (docker buildx, docker-container driver) "
    "or docker (classic Engine builder); auto (the default: build.builder) picks BuildKit "
    "and warns when it falls back to docker.",
)
@click.option(
    "--jobs",
    "-j",
    type=click.IntRange(min=1),
    default=2,
    show_default=True,
    envvar="CI_IMAGE_JOBS",
    help="Images built in parallel.",
)
@click.option(
    "--no-cache",
    is_flag=True,
    envvar="CI_IMAGES_NO_CACHE",
    help="Rebuild from scratch, even unchanged images.",
)
@pass_ctx
def images_build(
    ctx: Context,
    *,
    push: bool,
    only: tuple[str, ...],
    builder: str | None,
    jobs: int,
    no_cache: bool,
) -> None:
    """Build every configured image (tags: SHA, branch, version); skip unchanged ones."""
    from ci import images, presenter

    cfg = ctx.config
    images.select_images(cfg, only)  # an unknown --only name is a usage error before any work
    result = images.build_images(
        cfg,
        out_dir=ctx.out_dir,
        push=push,
        only=only,
        builder=builder,
        jobs=jobs,
        progress=presenter.image_progress(i.name for i in cfg.images),
        check=False,
        no_cache=no_cache,
    )
    presenter.images(result)
    result.raise_first()


@images_group.command("login")
@pass_ctx
def images_login(ctx: Context) -> None:
    """Log in to the registry with credentials from the environment (never printed)."""
    from ci import images, presenter

    presenter.logged_in(images.login(ctx.config))


@images_group.command("prune")
@click.option(
    "--dry-run/--delete",
    default=True,
    show_default=True,
    help="List what the retention rule would delete, or delete it.",
)
@click.option(
    "--keep-release",
    "records",
    multiple=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="Also keep every digest this release.json or images.json names (repeatable).",
)
@pass_ctx
def images_prune(ctx: Context, *, dry_run: bool, records: tuple[Path, ...]) -> None:
    """Delete old images by registry.retention; keeps every digest a release record names.

    Kept: digests named by release*.json and images.json in the output folder (and
    --keep-release files), the newest keep_per_branch images of each branch, and images
    younger than keep_days. Deleted with an image: its attestations and signature.
    """
    from ci import presenter
    from ci.images.prune import prune

    presenter.images_pruned(
        prune(ctx.config, out_dir=ctx.out_dir, dry_run=dry_run, records=records)
    )
