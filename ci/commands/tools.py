"""``ci tools`` and ``ci doctor``: the pinned external tools and what this machine has."""

from __future__ import annotations

import click


@click.group("tools")
def tools_group() -> None:
    """Build and list the pinned external tools (helm, kubectl, kubeconform, buildx, ...)."""


@tools_group.command("install")
@click.argument("names", nargs=-1)
def tools_install(names: tuple[str, ...]) -> None:
    """Build pinned tools into .tools/bin, skipping those already at the pinned version."""
    from ci import presenter, tools

    presenter.tools_installed(
        tools.install(list(names) or None, on_progress=presenter.tool_progress)
    )


@tools_group.command("list")
def tools_list() -> None:
    """Show each pinned tool: version, minimum accepted, and the Go package it is built from."""
    from ci import presenter, tools

    presenter.tools_pinned(tools.TOOLS.values())


@click.command("doctor")
def doctor() -> None:
    """Report each tool's version, where it came from, and what is missing or too old."""
    from ci import helm, presenter, tools
    from ci.errors import ToolError

    statuses = tools.doctor()
    presenter.doctor(statuses)
    presenter.warnings([w for w in [helm.support_warning(tools.helm_major())] if w])
    missing = [s.name for s in statuses if s.required and not s.ok]
    if missing:
        raise ToolError(f"required tools missing or too old: {', '.join(missing)}", reported=True)
