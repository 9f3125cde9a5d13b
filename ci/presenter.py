"""What people and GitHub Actions see of a step's result: lines, tables, job summaries, outputs.

Steps return values and the CLI hands them here; this module only formats and prints, through
``ci.gha``, which turns the same calls into annotations, step outputs and a Markdown job summary
under Actions. Functions that return text (``*_markdown``, ``text_chart``...) build; the others
show. Step modules are imported for type checking only, so importing this stays cheap.
"""

from __future__ import annotations

import json
import sys
import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from ci import gha
from ci.errors import CiError, DeployError

if TYPE_CHECKING:
    from ci.bump import Change
    from ci.chart import Rendered, Report
    from ci.cluster.base import ClusterInfo
    from ci.config import Config
    from ci.deploy import DiffResult
    from ci.deploy import Result as DeployResult
    from ci.images.credentials import LoginResult
    from ci.images.prune import PruneResult
    from ci.images.results import ImageResult, ImagesResult
    from ci.observe import ObserveResult
    from ci.pipeline import PipelineResult, Step, Summary
    from ci.scaffold import InitResult
    from ci.smoke import CheckResult, SmokeResult
    from ci.tools import InstallResult, ToolSpec, ToolStatus


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


# ----------------------------------------------------------------------------- config, tools


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


# ----------------------------------------------------------------------------- images


def image_progress(names: Iterable[str]) -> Callable[[str, str], None]:
    """A progress sink for parallel builds: one aligned line at a time."""
    width = max((len(n) for n in names), default=0)
    lock = threading.Lock()

    def show(name: str, status: str) -> None:
        with lock:
            gha.echo(f"{name:<{width}}  {status}")

    return show


def images(result: ImagesResult) -> None:
    """Build logs (collapsed under Actions), the table, the job summary and step outputs."""
    for image in result.images:
        if gha.is_actions() and image.log:
            with gha.group(f"build log: {image.name}"), gha.untrusted_output():
                for line in image.log:
                    gha.echo(line)
    headers = ["image", "status", "digest", "tags", "time"]
    rows = [
        [i.name, i.status, i.digest or i.error, ", ".join(i.tags), f"{i.duration:.1f}s"]
        for i in result.images
    ]
    gha.echo()
    short = [h for h in headers if h != "tags"]
    gha.echo(gha.text_table(short, [r[:3] + r[4:] for r in rows]).rstrip())
    gha.echo(f"builder {result.builder}, {result.duration:.1f}s; written {result.path}")
    for image in result.images:
        if image.pushed:
            gha.echo(supply_line(image))
    gha.add_summary("### Images\n\n" + gha.markdown_table(headers, rows))
    for image in result.images:
        if image.digest:
            gha.set_output(f"{image.name}-digest", image.digest)
    gha.set_output("images", json.dumps([i.to_json() for i in result.images]))


def supply_line(image: ImageResult) -> str:
    """What a pushed image carries: provenance, SBOM, signature (made now or found)."""
    kinds = [k for k, on in (("provenance", image.provenance), ("sbom", image.sbom)) if on]
    signature = "unsigned"
    if image.signature:
        signature = f"signature {image.signature[:19]} ({'signed' if image.signed else 'kept'})"
    return f"{image.name}: attestations {', '.join(kinds) or 'none'}; {signature}"


def images_pruned(result: PruneResult) -> None:
    """One line per image deleted (or that a dry run would delete), then the totals."""
    verb = "would delete" if result.dry_run else "deleted"
    for d in result.deletions:
        tags = ", ".join(d.tags) or "untagged"
        extra = f" (+{len(d.also)} attestation/signature manifests)" if d.also else ""
        branch = d.branch or "no branch"
        gha.echo(f"{verb} {d.repo}@{d.digest} [{branch}, {d.created:%Y-%m-%d}] {tags}{extra}")
    hint = "; run with --delete to delete" if result.dry_run and result.deletions else ""
    gha.echo(f"{verb} {len(result.deletions)} image(s), kept {result.kept}{hint}")


def logged_in(result: LoginResult) -> None:
    gha.echo(f"logged in to {result.host} as {result.username}")


# ----------------------------------------------------------------------------- chart


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


def deploy_diff(env: str, diff: DiffResult) -> None:
    """The diff against the live release: a log group, and the job summary."""
    with gha.group(f"diff: {env}"), gha.untrusted_output():
        gha.echo(diff.text().rstrip("\n"))
    gha.add_summary(diff_markdown(diff, env))


def deploy_failure_markdown(env: str, error: CiError) -> str:
    return (
        f"### Deploy: {env} FAILED\n\n{error.message}\n\n<details><summary>diagnosis"
        f"</summary>\n\n```\n{error.detail}\n```\n</details>\n"
    )


@contextmanager
def deploying(env: str) -> Iterator[None]:
    """Around a deploy: helm's and the cluster's text is not taken for workflow commands,
    and a failed deploy's message and diagnosis also go to the job summary."""
    try:
        with gha.untrusted_output():
            yield
    except DeployError as exc:
        gha.add_summary(deploy_failure_markdown(env, exc))
        raise


def _deployed_images(result: DeployResult) -> list[list[str]]:
    return [[i.name, i.ref] for i in result.plan.images]


def deploy_markdown(env: str, result: DeployResult) -> str:
    plan = result.plan
    release = [
        plan.env.release,
        plan.env.namespace,
        str(result.revision),
        str(result.previous_revision or "-"),
        plan.chart_version,
        plan.git_sha[:12],
        plan.triggered_by,
    ]
    headers = ["release", "namespace", "revision", "previous", "chart", "git SHA", "by"]
    action = "upgraded" if result.decision.upgrade else "skipped"
    return (
        f"### Deploy: {env}\n\n{action}: {result.decision.reason}\n\n"
        + gha.markdown_table(headers, [release])
        + "\n"
        + gha.markdown_table(["image", "deployed"], _deployed_images(result))
    )


def deployed(env: str, result: DeployResult) -> None:
    """The deployed digests and revision; the job summary; outputs for the next job."""
    plan = result.plan
    gha.echo(gha.text_table(["image", "deployed"], _deployed_images(result)).rstrip())
    did = (
        f"(previous {result.previous_revision or '-'})"
        if result.decision.upgrade
        else f"unchanged (skipped: {result.decision.reason})"
    )
    gha.echo(
        f"{plan.env.release} revision {result.revision} in {plan.env.namespace} {did}, "
        f"chart {plan.chart_version}, {result.duration:.1f}s; written {result.record_path}"
    )
    gha.add_summary(deploy_markdown(env, result))
    gha.set_output("revision", str(result.revision))
    gha.set_output("release-manifest", str(result.record_path))


# ----------------------------------------------------------------------------- smoke

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


# ----------------------------------------------------------------------------- observe

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


# ----------------------------------------------------------------------------- pipeline


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
