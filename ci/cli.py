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
    click.echo(
        f"{cfg.path}: valid ({len(cfg.images)} images, {len(cfg.environments)} environments)"
    )


@config_group.command("show")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of YAML.")
@pass_ctx
@handle_errors
def config_show(ctx: Context, as_json: bool) -> None:
    """Print the configuration with every default filled in."""
    from ci import config

    click.echo(config.dump(ctx.config, as_json=as_json), nl=False)


# ----------------------------------------------------------------------------- tools


@main.group("tools")
def tools_group() -> None:
    """Build and list the pinned external tools (helm, kubectl, kubeconform, buildx, ...)."""


@tools_group.command("install")
@click.argument("names", nargs=-1)
@handle_errors
def tools_install(names: tuple[str, ...]) -> None:
    """Build pinned tools into .tools/bin, skipping those already at the pinned version."""
    from ci import tools

    def progress(name: str, message: str) -> None:
        if message.startswith("building "):
            click.echo(f"{name}: {message}", err=True)

    for r in tools.install(list(names) or None, on_progress=progress):
        click.echo(f"{r.action:<8} {r.name:<12} {r.version:<9} {r.seconds:6.1f}s  {r.path}")
        for note in r.notes:
            click.echo(f"{'':<8} {note}")


@tools_group.command("list")
def tools_list() -> None:
    """Show each pinned tool: version, minimum accepted, and the Go package it is built from."""
    from ci import gha, tools

    rows = [[s.name, s.version, f">= {s.minimum}", s.package] for s in tools.TOOLS.values()]
    click.echo(gha.text_table(["tool", "pinned", "accepts", "package"], rows), nl=False)


@main.command("doctor")
@handle_errors
def doctor() -> None:
    """Report each tool's version, where it came from, and what is missing or too old."""
    from ci import gha, tools
    from ci.errors import EXIT_ENVIRONMENT

    statuses = tools.doctor()
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
    click.echo(gha.text_table(["tool", "version", "source", "path", "status"], rows), nl=False)
    problems = [s for s in statuses if not s.ok]
    for s in problems:
        click.echo(f"{s.name}: {s.hint}", err=True)
    if any(s.required for s in problems):
        sys.exit(EXIT_ENVIRONMENT)


# --------------------------------------------------------------------------- cluster

_PROVIDER_OPTION = click.option(
    "--provider",
    type=click.Choice(["auto", "builtin", "kind", "existing"]),
    default=None,
    envvar="CI_CLUSTER_PROVIDER",
    help="Cluster provider; auto: --kubeconfig if given, else kind if usable, else builtin.",
)
_KUBECONFIG_OPTION = click.option(
    "--kubeconfig",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    envvar="CI_CLUSTER_KUBECONFIG",
    help="Use the existing cluster this kubeconfig reaches.",
)


def _echo_progress(line: str, stream: str) -> None:
    """Show a provider's progress on stderr while it runs."""
    click.echo(line, err=True)


@main.group("cluster")
def cluster_group() -> None:
    """Start, stop and describe the local Kubernetes cluster."""


@cluster_group.command("up")
@_PROVIDER_OPTION
@_KUBECONFIG_OPTION
@pass_ctx
@handle_errors
def cluster_up(ctx: Context, provider: str | None, kubeconfig: Path | None) -> None:
    """Start the cluster (or reuse the running one) and print how to reach it."""
    from ci import cluster

    info = cluster.up(provider, kubeconfig, on_line=_echo_progress)
    for name, value in info.fields():
        click.echo(f"{name + ':':<15}{value}")


@cluster_group.command("down")
@_PROVIDER_OPTION
@_KUBECONFIG_OPTION
@pass_ctx
@handle_errors
def cluster_down(ctx: Context, provider: str | None, kubeconfig: Path | None) -> None:
    """Stop the cluster and remove everything it left on the machine."""
    from ci import cluster

    click.echo(cluster.down(provider, kubeconfig, on_line=_echo_progress))


@cluster_group.command("status")
@_PROVIDER_OPTION
@_KUBECONFIG_OPTION
@pass_ctx
@handle_errors
def cluster_status(ctx: Context, provider: str | None, kubeconfig: Path | None) -> None:
    """Print the running cluster's kubeconfig, API, ingress and registry; exit 3 if it is down."""
    from ci import cluster

    info = cluster.status(provider, kubeconfig)
    for name, value in info.fields():
        click.echo(f"{name + ':':<15}{value}")
