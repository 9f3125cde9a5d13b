"""``ci chart``: lint, render, validate, policy-check and bump the Helm chart."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from ci.commands.context import HELM_MAJOR_OPTION, Context, pass_ctx


@click.group("chart")
@HELM_MAJOR_OPTION
@click.pass_context
def chart_group(cctx: click.Context, helm_major: str | None) -> None:
    """Lint, render, validate and check the Helm chart; bump its version."""
    cctx.meta["helm_major"] = int(helm_major) if helm_major else None


def _helm(cctx: click.Context) -> Any:
    from ci import helm

    return helm.find(cctx.meta.get("helm_major"))


def _finish(report: Any, title: str) -> None:
    """Fail (exit 1) when the chart has errors: the findings shown above name each one."""
    from ci.errors import ChartError

    if not report.ok:
        raise ChartError(f"{title}: {len(report.errors)} error(s)", reported=True)


env_option = click.option(
    "--env", "envs", multiple=True, help="Environment (repeatable; default: all)."
)


@chart_group.command("lint")
@env_option
@click.pass_context
def chart_lint(cctx: click.Context, envs: tuple[str, ...]) -> None:
    """helm lint --strict with each environment's values, plus yamllint on the values files."""
    from ci import chart, presenter

    ctx: Context = cctx.obj
    cfg = ctx.config
    report = chart.lint(cfg, _helm(cctx), chart.select_envs(cfg, envs))
    presenter.findings(report, "chart lint")
    _finish(report, "chart lint")


@chart_group.command("render")
@click.option("--env", "env", required=True, help="Environment to render.")
@click.option(
    "--output",
    type=click.Path(path_type=Path),
    default=None,
    help="A .yaml file, or a folder for one file per template (default: OUT/rendered/ENV/).",
)
@click.option("--set", "set_values", multiple=True, help="Extra key=value (as helm --set).")
@click.pass_context
def chart_render(
    cctx: click.Context, env: str, output: Path | None, set_values: tuple[str, ...]
) -> None:
    """Write the manifests of one environment."""
    from ci import chart, presenter

    ctx: Context = cctx.obj
    cfg = ctx.config
    rendered = chart.render(cfg, _helm(cctx), cfg.environment(env), set_values)
    target = output or ctx.out_dir / "rendered" / env
    presenter.rendered(rendered, chart.write_rendered(rendered, target), target)


def _per_env(cctx: click.Context, envs: tuple[str, ...], step: str) -> None:
    from ci import chart, presenter

    ctx: Context = cctx.obj
    cfg = ctx.config
    helm = _helm(cctx)
    report = chart.Report()
    for env in chart.select_envs(cfg, envs):
        rendered = chart.render(cfg, helm, env)
        run = chart.validate_env if step == "validate" else chart.policy_env
        report.extend(run(cfg, rendered))
    presenter.findings(report, f"chart {step}")
    _finish(report, f"chart {step}")


@chart_group.command("validate")
@env_option
@click.pass_context
def chart_validate(cctx: click.Context, envs: tuple[str, ...]) -> None:
    """Check every rendered object against the Kubernetes (and CRD) JSON Schemas, offline."""
    _per_env(cctx, envs, "validate")


@chart_group.command("policy")
@env_option
@click.pass_context
def chart_policy(cctx: click.Context, envs: tuple[str, ...]) -> None:
    """Apply the policy rules (SEC/RES/PRB/IMG/HOOK/HPA) to the rendered objects."""
    _per_env(cctx, envs, "policy")


@chart_group.command("check")
@env_option
@click.pass_context
def chart_check(cctx: click.Context, envs: tuple[str, ...]) -> None:
    """Lint, render, validate, policy and observability for every environment; write
    OUT/findings.json.

    Observability (with promtool): every PrometheusRule passes `promtool check rules`, every
    alert has a unit test in the chart's alert-tests/ that passes `promtool test rules`, and
    every dashboard panel's query parses.
    """
    from ci import chart, presenter

    ctx: Context = cctx.obj
    cfg = ctx.config
    findings = ctx.out_dir / "findings.json"
    report = chart.check(
        cfg,
        _helm(cctx),
        chart.select_envs(cfg, envs),
        findings_path=findings,
        rendered_dir=ctx.out_dir / "rendered",
    )
    presenter.chart_checked(report, findings)
    _finish(report, "chart check")


@chart_group.command("bump")
@click.option("--version", "version", required=True, help="New chart version (semver).")
@click.option("--app-version", default=None, help="New appVersion.")
@click.option(
    "--values",
    "values_file",
    type=click.Path(path_type=Path),
    default=None,
    help="Values file whose image tag to set.",
)
@click.option("--image", default=None, help="Image key in the values file (backend, ...).")
@click.option("--tag", default=None, help="New image tag.")
@pass_ctx
def chart_bump(
    ctx: Context,
    *,
    version: str,
    app_version: str | None,
    values_file: Path | None,
    image: str | None,
    tag: str | None,
) -> None:
    """Set Chart.yaml version/appVersion (and an image tag), keeping the files' layout."""
    from ci import bump, presenter

    changes = bump.bump(
        ctx.config.chart.path,
        version=version,
        app_version=app_version,
        values_file=values_file,
        image=image,
        tag=tag,
    )
    presenter.bumped(changes)
