"""Command-line interface: parse options, call a step, print its result, choose the exit code.

Nothing here does pipeline work. Step modules are imported inside the commands so that
``ci --help`` stays fast (the Docker SDK, jsonschema and requests are slow to import).
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from functools import wraps
from pathlib import Path
from typing import Any, TypeVar

import click

from ci import __version__
from ci.errors import EXIT_INTERRUPTED, CiError

F = TypeVar("F", bound=Callable[..., Any])

DEFAULT_CONFIG = "ci.yaml"
DEFAULT_OUT = ".ci-out"


class Context:
    """Options shared by every command: where the configuration is and where artifacts go."""

    def __init__(self, config_path: Path, out_dir: Path) -> None:
        self.config_path = config_path
        self.out_dir = out_dir
        self._config: Any = None

    @property
    def config(self) -> Any:
        """The validated configuration, loaded on first use (most commands need it, --help doesn't)."""
        if self._config is None:
            from ci import config

            self._config = config.load(self.config_path)
        return self._config


pass_ctx = click.make_pass_decorator(Context)


def handle_errors(func: F) -> F:
    """Turn ``CiError`` into one line on stderr (and an Actions annotation) plus its exit code."""

    @wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except CiError as exc:
            from ci import gha

            for problem in getattr(exc, "problems", [exc]):
                gha.error(problem.message, location=problem.location)
            if exc.detail:
                gha.detail(exc.detail)
            sys.exit(exc.exit_code)
        except KeyboardInterrupt:
            click.echo("interrupted", err=True)
            sys.exit(EXIT_INTERRUPTED)

    return wrapper  # type: ignore[return-value]


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, "-V", "--version", prog_name="ci")
@click.option(
    "-c",
    "--config",
    "config_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=DEFAULT_CONFIG,
    show_default=True,
    envvar="CI_CONFIG",
    help="Pipeline configuration file.",
)
@click.option(
    "-o",
    "--out-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=DEFAULT_OUT,
    show_default=True,
    envvar="CI_OUT_DIR",
    help="Folder for the artifacts steps pass to each other.",
)
@click.pass_context
def main(ctx: click.Context, config_path: Path, out_dir: Path) -> None:
    """Build, check, deploy and smoke-test a Helm-packaged application."""
    ctx.obj = Context(config_path, out_dir)


# ---------------------------------------------------------------------------- config


@main.group("config")
def config_group() -> None:
    """Validate and show the pipeline configuration."""


@config_group.command("validate")
@pass_ctx
@handle_errors
def config_validate(ctx: Context) -> None:
    """Check the configuration against its schema and that the files it names exist."""
    cfg = ctx.config
    click.echo(f"{cfg.path}: valid ({len(cfg.images)} images, {len(cfg.environments)} environments)")


@config_group.command("show")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of YAML.")
@pass_ctx
@handle_errors
def config_show(ctx: Context, as_json: bool) -> None:
    """Print the configuration with every default filled in."""
    from ci import config

    click.echo(config.dump(ctx.config, as_json=as_json), nl=False)
