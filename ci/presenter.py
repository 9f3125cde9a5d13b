"""What people and GitHub Actions see of a step's result: lines, tables, job summaries, outputs.

Steps return values and the CLI passes them here; this module only formats and prints (through
``ci.gha``, which turns the same calls into annotations, step outputs and a job summary under
Actions). It imports no step module at run time, so ``ci --help`` stays fast.
"""

from __future__ import annotations

import sys

from ci import gha
from ci.errors import CiError

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
