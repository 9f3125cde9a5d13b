"""``ci config``: validate and show the pipeline configuration."""

from __future__ import annotations

import click

from ci.commands.context import Context, pass_ctx


@click.group("config")
def config_group() -> None:
    """Validate and show the pipeline configuration."""


@config_group.command("validate")
@pass_ctx
def config_validate(ctx: Context) -> None:
    """Check the configuration against its schema and that the files it names exist."""
    from ci import presenter

    presenter.config_valid(ctx.config)


@config_group.command("show")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of YAML.")
@pass_ctx
def config_show(ctx: Context, as_json: bool) -> None:
    """Print the configuration with every default filled in."""
    from ci import config, presenter

    presenter.document(config.dump(ctx.config, as_json=as_json))
