"""The pipeline's step lines, its timing chart and the run summary."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

from ci import gha

if TYPE_CHECKING:
    from ci.pipeline import PipelineResult, Step, Summary


def step_started(step: Step) -> None:
    gha.echo(f"==> [{step.name}] {step.command()}")


def step_line(line: str, stream: str) -> None:
    """A line of a step's output, into the one log of the whole run."""
    gha.echo(line)


def step_output(line: str, stream: str) -> None:
    """A line of a step's output, passed on as it came: stderr stays stderr."""
    gha.echo(line, sys.stderr if stream == "stderr" else None)


def pipeline(summary: Summary, result: PipelineResult) -> None:
    """The end of a run: tables and timing bars in the log, the same with a gantt as summary."""
    gha.echo()
    gha.echo(summary_text(summary, result).rstrip("\n"))
    gha.add_summary(summary_markdown(summary, result))


def text_chart(result: PipelineResult, width: int = 40) -> str:
    """A bar per step, proportional to its time, for terminals."""
    if not result.steps:
        return ""
    longest = max(s.duration for s in result.steps) or 1.0
    name_w = max(len(s.step.name) for s in result.steps)
    lines = []
    for s in result.steps:
        bar = "#" * max(1, round(width * s.duration / longest))
        mark = "ok" if s.ok else f"FAILED ({s.returncode})"
        if s.ok and s.outcome != "ran":
            mark += f", {s.outcome}: {s.reason}" if s.reason else f", {s.outcome}"
        lines.append(f"{s.step.name:<{name_w}}  {bar:<{width}}  {s.duration:7.1f}s  {mark}")
    lines += [f"{s.name:<{name_w}}  {'':<{width}}  {'':>8}  skipped" for s in result.skipped]
    total = sum(s.duration for s in result.steps)
    lines.append(f"{'total':<{name_w}}  {'':<{width}}  {total:7.1f}s")
    return "\n".join(lines) + "\n"


def mermaid_gantt(result: PipelineResult) -> str:
    """A Mermaid gantt chart of the steps for the Actions job summary."""
    lines = [
        "```mermaid",
        "gantt",
        "  title Pipeline steps",
        "  dateFormat x",
        "  axisFormat %M:%S",
    ]
    if result.steps:
        origin = result.steps[0].started.timestamp()
        for s in result.steps:
            start_ms = int((s.started.timestamp() - origin) * 1000)
            end_ms = start_ms + max(1, int(s.duration * 1000))
            tag = "" if s.ok else "crit, "
            note = f" {s.outcome}" if s.outcome != "ran" else ""
            lines.append(f"  {s.step.name} ({s.duration:.1f}s{note}) : {tag}{start_ms}, {end_ms}")
    lines.append("```")
    return "\n".join(lines) + "\n"


SUMMARY_IMAGE_HEADERS = ["image", "status", "digest", "time"]
SUMMARY_DEPLOY_HEADERS = ["env", "release", "revision", "previous", "git", "smoke"]
SUMMARY_SMOKE_HEADERS = ["check", "result", "attempts", "time"]


def _sections(summary: Summary) -> list[tuple[str, list[str], list[list[str]]]]:
    return [
        ("Images", SUMMARY_IMAGE_HEADERS, summary.images),
        ("Deploy", SUMMARY_DEPLOY_HEADERS, summary.deploy),
        ("Smoke checks", SUMMARY_SMOKE_HEADERS, summary.smoke),
    ]


def summary_text(summary: Summary, result: PipelineResult) -> str:
    """The end-of-run summary for a terminal: tables, then the timing bars."""
    parts = [f"{title}\n{gha.text_table(h, rows)}" for title, h, rows in _sections(summary) if rows]
    parts.append("Steps\n" + text_chart(result))
    verdict = "pipeline passed" if result.ok else "pipeline FAILED"
    return "\n".join(parts) + f"\n{verdict}\n"


def summary_markdown(summary: Summary, result: PipelineResult) -> str:
    """The same summary for the Actions job summary, with a Mermaid gantt of the steps."""
    verdict = ":white_check_mark: passed" if result.ok else ":x: failed"
    parts = [f"## Pipeline {verdict}\n"]
    parts += [
        f"### {t}\n\n{gha.markdown_table(h, rows)}" for t, h, rows in _sections(summary) if rows
    ]
    parts.append("### Steps\n\n" + mermaid_gantt(result))
    return "\n".join(parts)
