"""``ci pipeline``: show, run, or run one step of the ordered pipeline."""

from __future__ import annotations

import click

from ci.commands.context import Context


@click.group("pipeline")
def pipeline_group() -> None:
    """The ordered pipeline that `make ci-local` runs and the push workflow follows."""


@pipeline_group.command("show")
@click.option("--env", "env", default="staging", show_default=True, help="Environment to deploy.")
def pipeline_show(env: str) -> None:
    """Print the pipeline's ci commands, one per line, in order."""
    from ci import pipeline, presenter

    for step in pipeline.push_pipeline(env):
        presenter.echo(step.command())


@pipeline_group.command("run")
@click.option("--env", "env", default="staging", show_default=True, help="Environment to deploy.")
@click.option("--until", "until", default=None, help="Stop after the step with this name.")
@click.pass_context
def pipeline_run(cctx: click.Context, env: str, until: str | None) -> None:
    """Run every step in order as the push workflow does; stop at the first failure."""
    from ci import pipeline, presenter

    ctx: Context = cctx.obj
    steps = list(pipeline.push_pipeline(env))
    names = [s.name for s in steps]
    if until is not None:
        if until not in names:
            raise click.BadParameter(f"expected one of: {', '.join(names)}", param_hint="--until")
        steps = steps[: names.index(until) + 1]
    result = pipeline.run(
        steps,
        global_args=ctx.global_args(),
        on_start=presenter.step_started,
        on_line=presenter.step_line,
    )
    pipeline.write_result(result, ctx.out_dir)
    presenter.pipeline(pipeline.collect_summary(ctx.out_dir), result)
    result.raise_if_failed()


@pipeline_group.command("step")
@click.argument("name")
@click.option("--env", "env", default="staging", show_default=True, help="Environment to deploy.")
@click.option(
    "--push/--no-push",
    default=True,
    show_default=True,
    help="Push the images; --no-push builds them only, as a pull request does.",
)
@click.pass_context
def pipeline_step(cctx: click.Context, name: str, env: str, push: bool) -> None:
    """Run the one step NAME exactly as `ci pipeline run` does, and exit with its exit code.

    Workflow steps call this, so the command a step runs is written only in ci/pipeline.py.
    """
    from ci import pipeline, presenter

    ctx: Context = cctx.obj
    steps = {s.name: s for s in pipeline.push_pipeline(env, push=push)}
    if name not in steps:
        raise click.BadParameter(f"expected one of: {', '.join(steps)}", param_hint="NAME")
    step = steps[name]
    presenter.step_started(step)
    result = pipeline.run(
        (step,),
        global_args=ctx.global_args(),
        on_line=presenter.step_output,
    )
    result.steps[0].raise_if_failed()
