"""What people and GitHub Actions see of a step's result: lines, tables, job summaries, outputs.

Steps return values and the CLI hands them here; this module only formats and prints, through
``ci.gha``, which turns the same calls into annotations, step outputs and a Markdown job summary
under Actions. Functions that return text (``*_markdown``, ``text_chart``...) build; the others
show. Step modules are imported for type checking only, so importing this stays cheap.
"""

from __future__ import annotations

from ci.presenter.builds import (
    image_progress,
    images,
    images_pruned,
    logged_in,
    supply_line,
)
from ci.presenter.charts import (
    bumped,
    chart_check_markdown,
    chart_checked,
    findings,
    rendered,
)
from ci.presenter.checks import (
    OBSERVE_HEADERS,
    SMOKE_HEADERS,
    observe_markdown,
    observed,
    smoke,
    smoke_markdown,
    smoke_row,
)
from ci.presenter.deploys import (
    deploy_diff,
    deploy_failure_markdown,
    deploy_markdown,
    deployed,
    deploying,
    diff_markdown,
    rollback_markdown,
    rolled_back_to,
)
from ci.presenter.lines import (
    document,
    echo,
    failure,
    progress,
)
from ci.presenter.runs import (
    SUMMARY_DEPLOY_HEADERS,
    SUMMARY_IMAGE_HEADERS,
    SUMMARY_SMOKE_HEADERS,
    mermaid_gantt,
    pipeline,
    step_line,
    step_output,
    step_started,
    summary_markdown,
    summary_text,
    text_chart,
)
from ci.presenter.tooling import (
    cluster_info,
    config_valid,
    doctor,
    init_result,
    tool_progress,
    tools_installed,
    tools_pinned,
    warnings,
)

__all__ = [
    "OBSERVE_HEADERS",
    "SMOKE_HEADERS",
    "SUMMARY_DEPLOY_HEADERS",
    "SUMMARY_IMAGE_HEADERS",
    "SUMMARY_SMOKE_HEADERS",
    "bumped",
    "chart_check_markdown",
    "chart_checked",
    "cluster_info",
    "config_valid",
    "deploy_diff",
    "deploy_failure_markdown",
    "deploy_markdown",
    "deployed",
    "deploying",
    "diff_markdown",
    "doctor",
    "document",
    "echo",
    "failure",
    "findings",
    "image_progress",
    "images",
    "images_pruned",
    "init_result",
    "logged_in",
    "mermaid_gantt",
    "observe_markdown",
    "observed",
    "pipeline",
    "progress",
    "rendered",
    "rollback_markdown",
    "rolled_back_to",
    "smoke",
    "smoke_markdown",
    "smoke_row",
    "step_line",
    "step_output",
    "step_started",
    "summary_markdown",
    "summary_text",
    "supply_line",
    "text_chart",
    "tool_progress",
    "tools_installed",
    "tools_pinned",
    "warnings",
]
