"""``ci cluster``: start, stop and describe the local Kubernetes cluster."""

from __future__ import annotations

from pathlib import Path

import click

from ci.commands.context import Context, pass_ctx

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


@click.group("cluster")
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
