"""Smoke and observability check results: tables and job summaries."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ci import gha

if TYPE_CHECKING:
    from ci.observe import ObserveResult
    from ci.smoke import CheckResult, SmokeResult


SMOKE_HEADERS = ["check", "type", "result", "attempts", "time"]


def smoke_row(c: CheckResult) -> list[str]:
    return [c.name, c.type, c.status, str(c.attempts), f"{c.seconds:.1f}s"]


def smoke_markdown(result: SmokeResult) -> str:
    verdict = "passed" if result.passed else "FAILED"
    note = f"\n{result.rollback}\n" if result.rollback else ""
    rows = [smoke_row(c) for c in result.checks]
    return (
        f"### Smoke: {result.env} ({verdict})\n\n" + gha.markdown_table(SMOKE_HEADERS, rows) + note
    )


def smoke(result: SmokeResult) -> None:
    """The checks' table and verdict; the job summary; the ``smoke`` output."""
    rows = [smoke_row(c) for c in result.checks]
    gha.echo(gha.text_table(SMOKE_HEADERS, rows).rstrip())
    verdict = "passed" if result.passed else "FAILED"
    gha.echo(f"smoke {result.env}: {verdict} in {result.duration:.1f}s; written {result.path}")
    gha.add_summary(smoke_markdown(result))
    gha.set_output("smoke", "passed" if result.passed else "failed")


OBSERVE_HEADERS = ["kind", "what", "result", "attempts", "why"]


def observe_markdown(result: ObserveResult) -> str:
    verdict = "passed" if result.passed else "FAILED"
    rows = [[p.kind, p.name, p.status, str(p.attempts), p.reason] for p in result.probes]
    return f"### Observe: {result.env} ({verdict})\n\n" + gha.markdown_table(OBSERVE_HEADERS, rows)


def observed(result: ObserveResult) -> None:
    """Each panel and rule with its result; the job summary; the ``observe`` output."""
    rows = [[p.kind, p.name, p.status, str(p.attempts), p.reason] for p in result.probes]
    gha.echo(gha.text_table(OBSERVE_HEADERS, rows).rstrip())
    verdict = "passed" if result.passed else "FAILED"
    gha.echo(
        f"observe {result.env}: {verdict} ({len(result.probes)} checked against "
        f"{result.prometheus}) in {result.duration:.1f}s; written {result.path}"
    )
    gha.add_summary(observe_markdown(result))
    gha.set_output("observe", "passed" if result.passed else "failed")
