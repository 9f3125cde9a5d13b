"""A cluster someone else runs: the toolkit only needs its kubeconfig and never stops it."""

from __future__ import annotations

from pathlib import Path

from ci import proc
from ci.cluster.base import ClusterInfo, find_kubectl, require_ready
from ci.errors import EnvironmentNotReady


class ExistingCluster:
    """``up`` and ``status`` check that the API answers; ``down`` leaves the cluster alone."""

    name = "existing"

    def __init__(self, kubeconfig: Path, kubectl: str | None = None) -> None:
        self.kubeconfig = kubeconfig
        self.kubectl = kubectl

    def _info(self) -> ClusterInfo:
        if not self.kubeconfig.is_file():
            raise EnvironmentNotReady(f"kubeconfig not found: {self.kubeconfig}")
        kubectl = self.kubectl or find_kubectl()
        require_ready(self.kubeconfig, self.name)
        return ClusterInfo(provider=self.name, kubeconfig=self.kubeconfig, kubectl=kubectl)

    def up(self, on_line: proc.LineSink | None = None) -> ClusterInfo:
        """Nothing to start: check the cluster answers."""
        return self._info()

    def down(self, on_line: proc.LineSink | None = None) -> str:
        """An existing cluster is not ours to stop."""
        return f"left the existing cluster running ({self.kubeconfig})"

    def status(self) -> ClusterInfo:
        """The kubeconfig, once the API answers with it."""
        return self._info()
