"""Deploy diffs, the deploy's progress and its result, as lines and job summary."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from ci import gha
from ci.errors import CiError, DeployError

if TYPE_CHECKING:
    from ci.deploy import DiffResult, RollbackResult
    from ci.deploy import Result as DeployResult


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
        else f"not upgraded (skipped: {result.decision.reason})"
    )
    gha.echo(
        f"{plan.env.release} revision {result.revision} in {plan.env.namespace} {did}, "
        f"chart {plan.chart_version}, {result.duration:.1f}s; written {result.record_path}"
    )
    gha.add_summary(deploy_markdown(env, result))
    gha.set_output("revision", str(result.revision))
    gha.set_output("release-manifest", str(result.record_path))


def rollback_markdown(env: str, result: RollbackResult) -> str:
    row = [
        result.env.release,
        result.env.namespace,
        str(result.target),
        str(result.previous_revision or "-"),
        str(result.revision),
    ]
    headers = ["release", "namespace", "rolled back to", "previous", "new revision"]
    return f"### Rollback: {env}\n\n" + gha.markdown_table(headers, [row])


def rolled_back_to(env: str, result: RollbackResult) -> None:
    """The rollback's revisions as a line, the job summary and the ``revision`` output."""
    gha.echo(
        f"{result.env.release} in {result.env.namespace} rolled back to revision "
        f"{result.target} as revision {result.revision} (previous {result.previous_revision or '-'}"
        f"), {result.duration:.1f}s"
    )
    gha.add_summary(rollback_markdown(env, result))
    gha.set_output("revision", str(result.revision))
