"""What people and GitHub Actions see of a step's result: lines, tables, job summaries, outputs.

Steps return values and the CLI hands them here; this module only formats and prints, through
``ci.gha``, which turns the same calls into annotations, step outputs and a Markdown job summary
under Actions. Functions that return text (``*_markdown``, ``text_chart``...) build; the others
show. Step modules are imported for type checking only, so importing this stays cheap.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

from ci import gha
from ci.errors import CiError

if TYPE_CHECKING:
    from ci.deploy import DiffResult
    from ci.smoke import CheckResult


# ----------------------------------------------------------------------------- failures


def failure(error: CiError) -> None:
    """Show a failure once: one line per problem (an annotation under Actions), then detail."""
    if error.reported:
        return
    if error.bare:
        gha.echo(error.message, sys.stderr)
        return
    for problem in getattr(error, "problems", [error]):
        gha.error(problem.message, location=problem.location)
    if error.detail:
        gha.detail(error.detail)


# ----------------------------------------------------------------------------- deploy


def diff_markdown(diff: DiffResult, env: str) -> str:
    """The changes a deploy makes, one collapsed unified diff per object."""
    body = [f"### Changes to {env}", "", diff.summary_line(), ""]
    for c in diff.changes:
        body += [
            "<details>",
            f"<summary>{c.change}: {c.ref}</summary>",
            "",
            "```diff",
            c.diff.rstrip("\n"),
            "```",
            "</details>",
        ]
    return "\n".join(body) + "\n"


# ----------------------------------------------------------------------------- smoke

SMOKE_HEADERS = ["check", "type", "result", "attempts", "time"]


def smoke_row(c: CheckResult) -> list[str]:
    return [c.name, c.type, c.status, str(c.attempts), f"{c.seconds:.1f}s"]
