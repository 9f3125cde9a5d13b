"""Command-line interface: parse options, call a step, hand its result to ``ci.presenter``.

Nothing here does pipeline work or formats output. A step that fails raises a ``CiError``
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
from ci.errors import CiError, CommandHelp, Interrupted, UsageError

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
        """The validated configuration, loaded on first use (``--help`` never needs it)."""
        if self._config is None:
            from ci import config

            self._config = config.load(self.config_path)
        return self._config


pass_ctx = click.make_pass_decorator(Context)


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
        kwargs["standalone_mode"] = False
        try:
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


# ---------------------------------------------------------------------------- config


@main.group("config")
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


# ----------------------------------------------------------------------------- tools


@main.group("tools")
def tools_group() -> None:
    """Build and list the pinned external tools (helm, kubectl, kubeconform, buildx, ...)."""


@tools_group.command("install")
@click.argument("names", nargs=-1)
def tools_install(names: tuple[str, ...]) -> None:
    """Build pinned tools into .tools/bin, skipping those already at the pinned version."""
    from ci import presenter, tools

    presenter.tools_installed(
        tools.install(list(names) or None, on_progress=presenter.tool_progress)
    )


@tools_group.command("list")
def tools_list() -> None:
    """Show each pinned tool: version, minimum accepted, and the Go package it is built from."""
    from ci import presenter, tools

    presenter.tools_pinned(tools.TOOLS.values())


@main.command("doctor")
def doctor() -> None:
    """Report each tool's version, where it came from, and what is missing or too old."""
    from ci import presenter, tools
    from ci.errors import ToolError

    statuses = tools.doctor()
    presenter.doctor(statuses)
    missing = [s.name for s in statuses if s.required and not s.ok]
    if missing:
        raise ToolError(f"required tools missing or too old: {', '.join(missing)}", reported=True)


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


@main.group("cluster")
def cluster_group() -> None:
    """Start, stop and describe the local Kubernetes cluster."""


@cluster_group.command("up")
@_PROVIDER_OPTION
@_KUBECONFIG_OPTION
@pass_ctx
def cluster_up(ctx: Context, provider: str | None, kubeconfig: Path | None) -> None:
    """Start the cluster (or reuse the running one) and print how to reach it."""
    from ci import cluster, presenter

    presenter.cluster_info(cluster.up(provider, kubeconfig, on_line=presenter.progress))


@cluster_group.command("down")
@_PROVIDER_OPTION
@_KUBECONFIG_OPTION
@pass_ctx
def cluster_down(ctx: Context, provider: str | None, kubeconfig: Path | None) -> None:
    """Stop the cluster and remove everything it left on the machine."""
    from ci import cluster, presenter

    presenter.echo(cluster.down(provider, kubeconfig, on_line=presenter.progress))


@cluster_group.command("status")
@_PROVIDER_OPTION
@_KUBECONFIG_OPTION
@pass_ctx
def cluster_status(ctx: Context, provider: str | None, kubeconfig: Path | None) -> None:
    """Print the running cluster's kubeconfig, API, ingress and registry; exit 3 if it is down."""
    from ci import cluster, presenter

    presenter.cluster_info(cluster.status(provider, kubeconfig))


# ---------------------------------------------------------------------------- images


@main.group("images")
def images_group() -> None:
    """Build, tag and push the application's container images."""


@images_group.command("build")
@click.option("--push/--no-push", default=False, show_default=True, help="Push to the registry.")
@click.option(
    "--only", "only", multiple=True, metavar="NAME", help="Build only this image (repeatable)."
)
@click.option(
    "--builder",
    type=click.Choice(["auto", "buildx", "docker"]),
    default="auto",
    show_default=True,
    envvar="CI_BUILDER",
    help="buildx (BuildKit, registry cache) or docker (Engine API); auto prefers buildx.",
)
@click.option(
    "--jobs",
    "-j",
    type=click.IntRange(min=1),
    default=2,
    show_default=True,
    envvar="CI_IMAGE_JOBS",
    help="Images built in parallel.",
)
@click.option(
    "--no-cache",
    is_flag=True,
    envvar="CI_IMAGES_NO_CACHE",
    help="Rebuild from scratch, even unchanged images.",
)
@pass_ctx
def images_build(
    ctx: Context, *, push: bool, only: tuple[str, ...], builder: str, jobs: int, no_cache: bool
) -> None:
    """Build every configured image (tags: SHA, branch, version); skip unchanged ones."""
    from ci import images, presenter

    cfg = ctx.config
    images.select_images(cfg, only)  # an unknown --only name is a usage error before any work
    result = images.build_images(
        cfg,
        out_dir=ctx.out_dir,
        push=push,
        only=only,
        builder=builder,
        jobs=jobs,
        progress=presenter.image_progress(i.name for i in cfg.images),
        check=False,
        no_cache=no_cache,
    )
    presenter.images(result)
    result.raise_first()


@images_group.command("login")
@pass_ctx
def images_login(ctx: Context) -> None:
    """Log in to the registry with credentials from the environment (never printed)."""
    from ci import images, presenter

    presenter.logged_in(images.login(ctx.config))


# ---------------------------------------------------------------------------- pipeline


@main.group("pipeline")
def pipeline_group() -> None:
    """The ordered pipeline that `make ci-local` runs and the push workflow follows."""


@pipeline_group.command("show")
@click.option("--env", "env", default="staging", show_default=True, help="Environment to deploy.")
def pipeline_show(env: str) -> None:
    """Print the pipeline's ci commands, one per line, in order."""
    from ci import pipeline

    for step in pipeline.push_pipeline(env):
        click.echo(step.command())


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
    global_args = ("--config", str(ctx.config_path), "--out-dir", str(ctx.out_dir))
    result = pipeline.run(
        steps,
        global_args=global_args,
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
        global_args=("--config", str(ctx.config_path), "--out-dir", str(ctx.out_dir)),
        on_line=presenter.step_output,
    )
    result.steps[0].raise_if_failed()


# ---------------------------------------------------------------------------- chart


@main.group("chart")
@click.option(
    "--helm-major",
    type=click.Choice(["3", "4"]),
    default=None,
    envvar="CI_HELM_MAJOR",
    help="Helm major to use (default: CI_HELM_MAJOR, else 3).",
)
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
    """Lint, render, validate and policy for every environment; write OUT/findings.json."""
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


# ---------------------------------------------------------------------------- deploy

_HELM_MAJOR_OPTION = click.option(
    "--helm-major",
    type=click.Choice(["3", "4"]),
    default=None,
    envvar="CI_HELM_MAJOR",
    help="Helm major to use (default: CI_HELM_MAJOR, else 3).",
)


@main.command("deploy")
@click.option("--env", "env", required=True, help="Environment to deploy (from the configuration).")
@click.option(
    "--release-manifest",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="release.json of a staging run whose smoke checks passed (required with approval).",
)
@click.option("--diff-only", is_flag=True, help="Print what would change and change nothing.")
@click.option(
    "--images",
    "images_file",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Image digests from `ci images build --push` (default: OUT/images.json).",
)
@click.option(
    "--server-side/--client-side",
    "server_side",
    default=None,
    help="Helm 4 apply mode (default: server-side on Helm 4; Helm 3 is client-side only).",
)
@click.option(
    "--values",
    "extra_values",
    multiple=True,
    type=click.Path(dir_okay=False, path_type=Path),
    envvar="CI_DEPLOY_VALUES",
    help="Extra values file after the environment's (repeatable; env CI_DEPLOY_VALUES, "
    "colon-separated).",
)
@click.option("--set", "extra_set", multiple=True, help="Extra KEY=VALUE (as helm --set).")
@click.option(
    "--recover-pending",
    is_flag=True,
    help="Recover a pending release whatever its age (when no other deploy can be running).",
)
@_HELM_MAJOR_OPTION
@pass_ctx
def deploy_cmd(
    ctx: Context,
    *,
    env: str,
    release_manifest: Path | None,
    diff_only: bool,
    images_file: Path | None,
    server_side: bool | None,
    extra_values: tuple[Path, ...],
    extra_set: tuple[str, ...],
    recover_pending: bool,
    helm_major: str | None,
) -> None:
    """helm upgrade --install ENV by image digest: wait, roll back on failure, write release.json.

    Checks every input and that the cluster answers before changing anything. Environments
    with approval get a diff against the live release first (log and job summary) and deploy
    only a --release-manifest whose smoke checks passed, with exactly its digests. A release
    left pending by an interrupted run is rolled back (or uninstalled) first; a pending
    release younger than the timeout is taken for a deploy in progress and refused.
    """
    from ci import deploy, presenter

    opts = deploy.Options(
        env=env,
        images_file=images_file or ctx.out_dir / "images.json",
        release_manifest=release_manifest,
        diff_only=diff_only,
        server_side=server_side,
        extra_values=extra_values,
        extra_set=extra_set,
        helm_major=int(helm_major) if helm_major else None,
        recover_pending=recover_pending,
    )

    report = deploy.Reporter(line=presenter.echo, diff=lambda d: presenter.deploy_diff(env, d))
    with presenter.deploying(env):
        result = deploy.run(ctx.config, opts, ctx.out_dir, report)
    if not diff_only:
        presenter.deployed(env, result)


# ----------------------------------------------------------------------------- smoke


@main.command("smoke")
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
@_HELM_MAJOR_OPTION
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
