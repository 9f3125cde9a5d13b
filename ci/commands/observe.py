"""``ci observe``: what the chart ships for observability, checked against a live environment."""

from __future__ import annotations

import click

from ci.commands.context import HELM_MAJOR_OPTION, Context, pass_ctx


@click.group("observe")
def observe_group() -> None:
    """Check the chart's dashboards and alert rules against an environment's Prometheus."""


def _variables(pairs: tuple[str, ...]) -> dict[str, str]:
    from ci.errors import UsageError

    out = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name:
            raise UsageError(f"--var {pair!r}: expected NAME=VALUE")
        out[name] = value
    return out


def _seconds(option: str, text: str) -> int:
    from ci.config import seconds
    from ci.errors import UsageError

    try:
        return seconds(int(text) if text.isdigit() else text)
    except ValueError:
        raise UsageError(f"{option} {text!r}: expected a duration such as 90s, 2m") from None


@observe_group.command("check")
@click.option("--env", "env", required=True, help="Environment to check.")
@click.option(
    "--var",
    "variables",
    multiple=True,
    metavar="NAME=VALUE",
    help="A dashboard variable's value (repeatable; $namespace is the environment's namespace).",
)
@click.option("--deadline", default="2m", show_default=True, help="How long to wait for data.")
@click.option("--interval", default="5s", show_default=True, help="Pause between tries.")
@HELM_MAJOR_OPTION
@pass_ctx
def observe_check(
    ctx: Context,
    *,
    env: str,
    variables: tuple[str, ...],
    deadline: str,
    interval: str,
    helm_major: str | None,
) -> None:
    """Every dashboard panel's query returns data and every alert rule is loaded without error.

    The chart is rendered for ENV as it is deployed; its dashboards (ConfigMaps holding
    Grafana JSON) and PrometheusRules are checked against the environment's Prometheus
    (observability.prometheus: its url, or its Service through the API server's proxy), after
    smoke traffic. What is not there yet is asked again until the deadline; OUT/observe.json
    records each query and answer. Exits 1 when a panel has no data or a rule failed to load.
    """
    from ci import chart, helm, observe, presenter

    cfg = ctx.config
    # flags first: a bad one is answered before any tool is looked for
    parsed = _variables(variables)
    deadline_s, interval_s = _seconds("--deadline", deadline), _seconds("--interval", interval)
    rendered = chart.render(
        cfg, helm.find(int(helm_major) if helm_major else None), cfg.environment(env)
    )
    result = observe.run(
        cfg,
        env,
        rendered.manifests,
        ctx.out_dir,
        variables=parsed,
        deadline=deadline_s,
        interval=interval_s,
        on_line=presenter.echo,
    )
    presenter.observed(result)
    result.raise_if_failed()
