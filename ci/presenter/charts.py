"""Chart findings, rendered files and version bumps."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

from ci import gha

if TYPE_CHECKING:
    from ci.bump import Change
    from ci.chart import Rendered, Report


def findings(report: Report, title: str) -> None:
    """Annotate every finding at its file and line, then print a one-line total."""
    for f in report.findings:
        where = f"[{f.env}] " if f.env else ""
        emit = gha.error if f.severity == "error" else gha.warning
        emit(f"{where}{f.message}", location=f.location, title=f.rule)
    checked = ", ".join(f"{env}: {n}" for env, n in report.checked.items())
    status = "ok" if report.ok else f"{len(report.errors)} error(s)"
    gha.echo(
        f"{title}: {status}, {len(report.findings)} finding(s) ({checked}) in {report.seconds:.2f}s"
    )


def chart_check_markdown(report: Report, findings_path: Path) -> str:
    rows = [[env, str(n)] for env, n in report.checked.items()]
    return (
        "## Chart check\n\n"
        + gha.markdown_table(["environment", "objects"], rows)
        + f"\n{len(report.errors)} error(s); findings in `{findings_path}`\n"
    )


def chart_checked(report: Report, findings_path: Path) -> None:
    """``chart check``: the findings and total, and the objects per environment as a summary."""
    findings(report, "chart check")
    gha.add_summary(chart_check_markdown(report, findings_path))


def rendered(rendered: Rendered, files: list[Path], target: Path) -> None:
    gha.echo(
        f"{rendered.env}: {len(rendered.manifests)} objects in {len(files)} file(s) under {target}"
    )


def bumped(changes: Iterable[Change]) -> None:
    for c in changes:
        gha.echo(f"{c.file}: {c.key}: {c.old} -> {c.new}")
