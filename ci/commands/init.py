"""``ci init``: scaffold ci.yaml, the workflow and (when missing) a starter chart."""

from __future__ import annotations

from pathlib import Path

import click


@click.command("init")
@click.argument(
    "directory",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("."),
)
@click.option("--project", help="Project name (default: the folder's name).")
@click.option(
    "--toolkit",
    metavar="OWNER/REPO",
    help="Repository of the reusable workflow the written workflow calls "
    "(default: CI_TOOLKIT_REPO, else the toolkit's own).",
)
@click.option("--ref", help="Tag or commit of the toolkit to use (default: its major, e.g. v1).")
@click.option("--branch", default="main", show_default=True, help="The default branch.")
@click.option("--force", is_flag=True, help="Overwrite files that exist.")
def init_cmd(
    *,
    directory: Path,
    project: str | None,
    toolkit: str | None,
    ref: str | None,
    branch: str,
    force: bool,
) -> None:
    """Write ci.yaml (one image per Dockerfile), .github/workflows/ci.yml calling the reusable
    pipeline workflow, and a starter chart when the repository has none. Existing files are
    kept unless --force."""
    from ci import presenter, scaffold

    if not directory.is_dir():
        raise click.BadParameter(f"{directory} is not a folder", param_hint="DIRECTORY")
    result = scaffold.init(
        directory,
        project=project,
        toolkit=toolkit or scaffold.DEFAULT_TOOLKIT,
        ref=ref,
        branch=branch,
        force=force,
    )
    presenter.init_result(result)
