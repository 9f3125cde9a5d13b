"""``ci smoke``: the configured checks against a deployed environment."""

from __future__ import annotations

import click

from ci.commands.context import HELM_MAJOR_OPTION, Context, pass_ctx


@click.command("smoke")
@click.option("--env", "env", required=True, help="Environment to check.")
@click.option(
    "--base-url",
    default=None,
    envvar="CI_SMOKE_BASE_URL",
    help="Base URL (default: CI_SMOKE_BASE_URL, else the environment's base_url).",
)
@click.option(
    "--host-header",
    default=None,
    envvar="CI_SMOKE_HOST_HEADER",
    help="Host header to send, to reach an ingress by IP where its DNS name does not resolve "
    "(env CI_SMOKE_HOST_HEADER).",
)
@click.option(
    "--rollback/--no-rollback",
    default=True,
    show_default=True,
    help="On failure right after this run's deploy, roll back (if the environment allows).",
)
@HELM_MAJOR_OPTION
@pass_ctx
def smoke_cmd(
    ctx: Context,
    *,
    env: str,
    base_url: str | None,
    host_header: str | None,
    rollback: bool,
    helm_major: str | None,
) -> None:
    """Run the configured smoke checks with retries until the deadline; write smoke.json.

    Every HTTP request carries a W3C traceparent with a fresh trace id; metrics, trace and
    logs checks then ask the environment's Prometheus, Jaeger and log store (its
    observability URLs, else their Services through the API server's proxy) whether the
    release is observable, down to that request's trace and log line.

    The result is also recorded in OUT/release.json. When a check fails and release.json
    holds a deploy of ENV from this same run (same Actions run, or any local run) that was
    not smoke-tested yet and is still the live revision, and the environment has
    rollback_on_smoke_failure, the release is rolled back to its recorded previous revision.
    """
    from ci import presenter, smoke

    result = smoke.run(
        ctx.config,
        env,
        ctx.out_dir,
        base_url=base_url,
        host_header=host_header,
        rollback=rollback,
        helm_major=int(helm_major) if helm_major else None,
        on_line=presenter.echo,
    )
    presenter.smoke(result)
    result.raise_if_failed()
