"""One-line output, progress and failures: what every command prints through ``ci.gha``."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

from ci import gha
from ci.errors import CiError

if TYPE_CHECKING:
    pass


def echo(text: str) -> None:
    """A line a step reports as it goes, or its one-line answer, as it is."""
    gha.echo(text)


def document(text: str) -> None:
    """A whole document (YAML, JSON) as it is: it ends with its own newline."""
    sys.stdout.write(gha.redact(text))
    sys.stdout.flush()


def progress(line: str, stream: str = "stdout") -> None:
    """A running step's progress line: on stderr, so stdout keeps only the result."""
    gha.echo(line, sys.stderr)


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
