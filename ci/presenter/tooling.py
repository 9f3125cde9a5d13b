"""Configuration, pinned tools, ``ci doctor``, ``ci init`` and the local cluster."""

from __future__ import annotations

import sys
from collections.abc import Iterable
from typing import TYPE_CHECKING

from ci import gha

if TYPE_CHECKING:
    from ci.cluster.base import ClusterInfo
    from ci.config import Config
    from ci.scaffold import InitResult
    from ci.tools import InstallResult, ToolSpec, ToolStatus


def config_valid(cfg: Config) -> None:
    gha.echo(f"{cfg.path}: valid ({len(cfg.images)} images, {len(cfg.environments)} environments)")


def tool_progress(name: str, text: str) -> None:
    """Only the start of each build: go's own output would drown the table that follows."""
    if text.startswith("building "):
        gha.echo(f"{name}: {text}", sys.stderr)


def tools_installed(results: Iterable[InstallResult]) -> None:
    for r in results:
        gha.echo(f"{r.action:<8} {r.name:<12} {r.version:<9} {r.seconds:6.1f}s  {r.path}")
        for note in r.notes:
            gha.echo(f"{'':<8} {note}")


def tools_pinned(specs: Iterable[ToolSpec]) -> None:
    rows = [[s.name, s.version, f">= {s.minimum}", s.package] for s in specs]
    gha.echo(gha.text_table(["tool", "pinned", "accepts", "package"], rows).removesuffix("\n"))


def doctor(statuses: list[ToolStatus]) -> None:
    """The table of tools on stdout; what to do about each problem on stderr."""
    rows = [
        [
            s.name,
            s.version or "-",
            s.source,
            str(s.path or "-"),
            s.status + ("" if s.required else " (optional)"),
        ]
        for s in statuses
    ]
    headers = ["tool", "version", "source", "path", "status"]
    gha.echo(gha.text_table(headers, rows).removesuffix("\n"))
    for s in statuses:
        if not s.ok:
            gha.echo(f"{s.name}: {s.hint}", sys.stderr)


def init_result(result: InitResult) -> None:
    """Each file ``ci init`` wrote or kept, then what to do next."""
    found = ", ".join(f"{i.name} ({i.dockerfile})" for i in result.images) or "none"
    gha.echo(f"images: {found}")
    chart = "starter chart" if result.chart_written else "existing chart"
    gha.echo(f"chart: {result.chart} ({chart})")
    for path in result.created:
        gha.echo(f"created {path}")
    for path in result.overwritten:
        gha.echo(f"overwrote {path}")
    for path in result.kept:
        gha.echo(f"kept {path} (it exists; --force overwrites it)")
    gha.echo("next: ci config validate && ci chart check")


def warnings(messages: Iterable[str]) -> None:
    """Warnings that do not fail the command (annotations under GitHub Actions)."""
    for message in messages:
        gha.warning(message)


def cluster_info(info: ClusterInfo) -> None:
    for name, value in info.fields():
        gha.echo(f"{name + ':':<15}{value}")
