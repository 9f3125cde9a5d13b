"""Command-line interface: the root group, the one error handler, and the command registry.

The commands themselves live in ``ci/commands`` (one module per group): they parse options,
call a step and hand its result to ``ci.presenter``. Nothing here does pipeline work or
formats output. A step that fails raises a ``CiError``
(directly, or through its result's ``raise_if_failed``); ``fail`` is the one handler that
shows it and exits with the code ``ci.errors`` gives its class. Step modules and the presenter
are imported inside the commands so that ``ci --help`` stays fast (the Docker SDK, jsonschema
and requests are slow to import).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, NoReturn

import click

from ci import __version__
from ci.commands.context import Context
from ci.errors import CiError, CommandHelp, Interrupted, UsageError

DEFAULT_CONFIG = "ci.yaml"
DEFAULT_OUT = ".ci-out"


def as_ci_error(exc: BaseException) -> CiError:
    """Any way a command can fail, as the ``CiError`` whose class gives the exit code."""
    if isinstance(exc, CiError):
        return exc
    if isinstance(exc, click.exceptions.NoArgsIsHelpError):
        return CommandHelp(exc.format_message())
    if isinstance(exc, click.UsageError):
        where = f"{exc.ctx.command_path}: " if exc.ctx is not None else ""
        return UsageError(where + exc.format_message())
    if isinstance(exc, click.ClickException):
        return CiError(exc.format_message())
    return Interrupted()


def fail(exc: BaseException) -> NoReturn:
    """The one error handler: show the failure once, exit with the code of its class."""
    from ci import errors, presenter

    error = as_ci_error(exc)
    presenter.failure(error)
    sys.exit(errors.exit_code(error))


class OneLineErrors(click.Group):
    """The root group: every failure leaves through ``fail``, as one line and an exit code.

    A usage error is one ``error: ...`` line instead of click's usage block: scripts and
    Actions annotations read the first line. Only a bug still shows a traceback.
    """

    def main(self, *args: Any, **kwargs: Any) -> Any:
        from ci import proc

        kwargs["standalone_mode"] = False
        try:
            # SIGTERM (a cancelled job) unwinds like Ctrl-C from the first line on, so an
            # early one also ends as "interrupted", exit 130, with every cleanup run
            with proc.interruptible():
                return super().main(*args, **kwargs)
        except (CiError, click.ClickException, click.Abort, KeyboardInterrupt) as exc:
            fail(exc)

    def invoke(self, ctx: click.Context) -> Any:
        """Run the command; a Ctrl-C in it reaches ``fail`` as itself, not as click's
        ``Abort`` (which first prints an empty line)."""
        try:
            return super().invoke(ctx)
        except KeyboardInterrupt:
            raise Interrupted() from None


@click.group(
    cls=OneLineErrors,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
)
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


def _register(root: click.Group) -> None:
    """Attach every command group; each lives in its own module under ``ci/commands``."""
    from ci.commands import (
        chart,
        cluster,
        config,
        deploy,
        images,
        init,
        observe,
        pipeline,
        smoke,
        tools,
    )

    for command in (
        init.init_cmd,
        config.config_group,
        tools.tools_group,
        tools.doctor,
        cluster.cluster_group,
        images.images_group,
        pipeline.pipeline_group,
        chart.chart_group,
        deploy.deploy_cmd,
        smoke.smoke_cmd,
        observe.observe_group,
    ):
        root.add_command(command)


_register(main)
