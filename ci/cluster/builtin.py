"""The project's own single-node cluster (``hack/cluster/cluster.sh``), for machines without kind.

The shell script does the work (it must also run from ``make`` on a machine without the
package installed); this module runs it and reads the ``cluster.json`` it writes.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from ci import paths, proc
from ci.cluster.base import ClusterInfo, require_ready
from ci.errors import ClusterError, EnvironmentNotReady, ProcessError

#: Seconds ``up`` may take: a cold start compiles Kubernetes (12-16 min on 2 cores, more if busy).
UP_TIMEOUT = 3600.0
#: Seconds ``down`` may take.
DOWN_TIMEOUT = 300.0


def default_state() -> Path:
    """The script's own default (``CLUSTER_STATE`` in hack/cluster/paths.sh), so ``make`` and
    ``ci`` agree: /run/APP/cluster, or the former name's folder while only that one exists."""
    return paths.prefer_legacy(
        paths.RUN_ROOT / paths.APP / "cluster", paths.RUN_ROOT / paths.LEGACY_APP / "cluster"
    )


def script_path() -> Path:
    """``CI_CLUSTER_SCRIPT``, else ``hack/cluster/cluster.sh`` of a source checkout, else the
    copy an installed wheel carries as data of the package ``ci.hack``."""
    override = os.environ.get("CI_CLUSTER_SCRIPT")
    if override:
        return Path(override)
    checkout = Path(__file__).resolve().parents[2] / "hack" / "cluster" / "cluster.sh"
    if checkout.is_file():
        return checkout
    return Path(__file__).resolve().parents[1] / "hack" / "cluster" / "cluster.sh"


def state_dir() -> Path:
    """Where the script keeps the kubeconfig and ``cluster.json`` (``CLUSTER_STATE``)."""
    env = os.environ.get("CLUSTER_STATE")
    return Path(env) if env else default_state()


def parse_state(data: dict[str, Any]) -> ClusterInfo:
    """A ``ClusterInfo`` from the script's ``cluster.json``."""
    try:
        return ClusterInfo(
            provider="builtin",
            kubeconfig=Path(data["kubeconfig"]),
            kubernetes_version=data.get("kubernetes_version"),
            api_server=data.get("api_server"),
            node_name=data.get("node_name"),
            registry=data.get("registry"),
            ingress_class=data.get("ingress_class"),
            ingress_url=data.get("ingress_url"),
            storage_class=data.get("storage_class"),
            kubectl=data.get("kubectl") or "kubectl",
            startup_seconds=data.get("startup_seconds"),
            extra={"ingress tls": data["ingress_tls_url"]} if "ingress_tls_url" in data else {},
        )
    except (KeyError, TypeError) as exc:
        raise ClusterError(f"cluster state is malformed: missing {exc}") from exc


class BuiltinCluster:
    """Runs ``cluster.sh up|down|status``; needs root (kubelet and containerd)."""

    name = "builtin"

    def __init__(self, script: Path | None = None, state: Path | None = None) -> None:
        self.script = script or script_path()
        self.state = state or state_dir()

    def _run(
        self, command: str, timeout: float, on_line: proc.LineSink | None = None
    ) -> proc.Result:
        if not self.script.is_file():
            raise EnvironmentNotReady(f"cluster script not found: {self.script}")
        if os.geteuid() != 0:
            raise EnvironmentNotReady("the built-in cluster needs root (kubelet, containerd)")
        env = {"CLUSTER_STATE": str(self.state)}
        argv = ("bash", str(self.script), command)
        return proc.run(argv, timeout=timeout, env=env, on_line=on_line, what=f"cluster {command}")

    def _read_state(self) -> ClusterInfo:
        path = self.state / "cluster.json"
        try:
            return parse_state(json.loads(path.read_text()))
        except FileNotFoundError as exc:
            raise EnvironmentNotReady(f"built-in cluster is not running ({path} missing)") from exc
        except json.JSONDecodeError as exc:
            raise ClusterError(f"{path}: not JSON: {exc}") from exc

    def up(self, on_line: proc.LineSink | None = None) -> ClusterInfo:
        """Start the cluster (a no-op when it already runs)."""
        try:
            self._run("up", UP_TIMEOUT, on_line)
        except ProcessError as exc:
            raise ClusterError(
                f"built-in cluster failed to start: {exc.message}", detail=exc.detail
            ) from exc
        return self.status()

    def down(self, on_line: proc.LineSink | None = None) -> str:
        """Stop every process, unmount, remove interfaces, rules and state."""
        try:
            self._run("down", DOWN_TIMEOUT, on_line)
        except ProcessError as exc:
            raise ClusterError(
                f"built-in cluster failed to stop: {exc.message}", detail=exc.detail
            ) from exc
        return "built-in cluster stopped and cleaned up"

    def status(self) -> ClusterInfo:
        """The state the script wrote, once the API answers with it."""
        info = self._read_state()
        require_ready(info.kubeconfig, self.name)
        return info
