"""What every cluster provider returns and offers, and the checks they share."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from ci import kube, proc, tools
from ci.errors import EnvironmentNotReady

#: Seconds a readiness probe of the API may take.
PROBE_TIMEOUT = 20.0


@dataclass(frozen=True)
class ClusterInfo:
    """How to reach a running cluster; ``None`` where the provider cannot know."""

    provider: str
    kubeconfig: Path
    kubernetes_version: str | None = None
    api_server: str | None = None
    node_name: str | None = None
    registry: str | None = None
    ingress_class: str | None = None
    ingress_url: str | None = None
    storage_class: str | None = None
    kubectl: str = "kubectl"
    startup_seconds: float | None = None
    extra: dict[str, str] = field(default_factory=dict)

    def fields(self) -> list[tuple[str, str]]:
        """Name/value pairs of the known fields, in display order (for the CLI)."""
        pairs = [
            ("provider", self.provider),
            ("kubeconfig", str(self.kubeconfig)),
            ("kubernetes", self.kubernetes_version),
            ("api server", self.api_server),
            ("node", self.node_name),
            ("registry", self.registry),
            ("ingress class", self.ingress_class),
            ("ingress url", self.ingress_url),
            ("storage class", self.storage_class),
            ("startup", None if self.startup_seconds is None else f"{self.startup_seconds:.1f} s"),
        ]
        return [(k, v) for k, v in pairs if v is not None] + sorted(self.extra.items())


class Provider(Protocol):
    """A way to get a cluster: start it, stop it, say whether it runs."""

    name: str

    def up(self, on_line: proc.LineSink | None = None) -> ClusterInfo:
        """Start the cluster, or return it unchanged when it already runs."""
        ...

    def down(self, on_line: proc.LineSink | None = None) -> str:
        """Stop the cluster and remove what ``up`` created."""
        ...

    def status(self) -> ClusterInfo:
        """Describe the running cluster or raise ``EnvironmentNotReady``."""
        ...


def find_kubectl() -> str:
    """A compatible kubectl (on PATH or pinned), for whoever runs kubectl against the cluster.

    The built-in cluster names its own kubectl in its state file instead.
    """
    return str(tools.require("kubectl").path)


def api_ready(kubeconfig: Path) -> bool:
    """True when the API server answers ``/readyz`` with the kubeconfig's credentials."""
    return kube.api_ready(kubeconfig, timeout=PROBE_TIMEOUT)


def require_ready(kubeconfig: Path, provider: str) -> None:
    """Raise ``EnvironmentNotReady`` unless the API answers."""
    if not api_ready(kubeconfig):
        raise EnvironmentNotReady(
            f"{provider} cluster is not running or not reachable (kubeconfig {kubeconfig});"
            " start it with `ci cluster up` or `make cluster-up`"
        )
