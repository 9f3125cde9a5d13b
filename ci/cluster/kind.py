"""kind, where it works: a binary on PATH and a node image already in Docker.

Why the image check: kind pulls ``kindest/node`` on ``create``; where no registry can be
reached that fails after minutes, so ``usable`` says no up front and ``auto`` picks builtin.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from ci import paths, proc
from ci.cluster.base import ClusterInfo, find_kubectl, require_ready
from ci.errors import CiError, ClusterError, EnvironmentNotReady, ProcessError

CLUSTER_NAME = os.environ.get("CI_KIND_CLUSTER", paths.APP)
DEFAULT_KUBECONFIG = Path(".ci-out/kind/kubeconfig")
CREATE_TIMEOUT = 900.0
PROBE_TIMEOUT = 30.0


def node_image_present() -> bool:
    """True when Docker already holds a ``kindest/node`` image (nothing to pull)."""
    argv = ("docker", "images", "-q", "kindest/node")
    try:
        result = proc.run(argv, timeout=PROBE_TIMEOUT, check=False, what="docker images")
    except CiError:
        return False
    return result.ok and bool(result.stdout.strip())


def usable() -> bool:
    """kind can create a cluster on this machine without pulling anything."""
    return shutil.which("kind") is not None and node_image_present()


class KindCluster:
    """``kind create|delete cluster`` with the kubeconfig written under ``.ci-out``."""

    name = "kind"

    def __init__(self, kubeconfig: Path | None = None, cluster: str = CLUSTER_NAME) -> None:
        self.kubeconfig = (kubeconfig or DEFAULT_KUBECONFIG).resolve()
        self.cluster = cluster

    def _kind(self, *args: str, timeout: float, on_line: proc.LineSink | None = None) -> str:
        if shutil.which("kind") is None:
            raise EnvironmentNotReady("kind not found on PATH")
        try:
            return proc.run(("kind", *args), timeout=timeout, on_line=on_line).stdout
        except ProcessError as exc:
            raise ClusterError(f"kind {args[0]} failed: {exc.message}", detail=exc.detail) from exc

    def _exists(self) -> bool:
        return self.cluster in self._kind("get", "clusters", timeout=PROBE_TIMEOUT).split()

    def _info(self) -> ClusterInfo:
        kubectl = find_kubectl()
        require_ready(self.kubeconfig, self.name)
        return ClusterInfo(provider=self.name, kubeconfig=self.kubeconfig, kubectl=kubectl)

    def up(self, on_line: proc.LineSink | None = None) -> ClusterInfo:
        """Create the cluster unless it exists; (re)write its kubeconfig."""
        self.kubeconfig.parent.mkdir(parents=True, exist_ok=True)
        if not self._exists():
            args = (
                "create",
                "cluster",
                "--name",
                self.cluster,
                "--kubeconfig",
                str(self.kubeconfig),
            )
            self._kind(*args, "--wait", "120s", timeout=CREATE_TIMEOUT, on_line=on_line)
        else:
            config = self._kind("get", "kubeconfig", "--name", self.cluster, timeout=PROBE_TIMEOUT)
            self.kubeconfig.write_text(config)
        return self._info()

    def down(self, on_line: proc.LineSink | None = None) -> str:
        """Delete the cluster (a no-op when it does not exist)."""
        self._kind(
            "delete", "cluster", "--name", self.cluster, timeout=CREATE_TIMEOUT, on_line=on_line
        )
        return f"kind cluster {self.cluster} deleted"

    def status(self) -> ClusterInfo:
        """The cluster's kubeconfig, once the API answers."""
        if not self._exists():
            raise EnvironmentNotReady(f"kind cluster {self.cluster} does not exist")
        return self._info()
