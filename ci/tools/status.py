"""``ci doctor``: what every tool resolves to, where it came from, and what is missing.

Why a report of its own: discovery stops at the first compatible candidate and raises for a
missing one; the doctor looks at every tool (and the docker daemon and Go, which only some
steps need) and says for each what to do, without stopping at the first problem.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from ci import proc
from ci.errors import ProcessError, ToolError
from ci.tools import crds, discovery
from ci.tools.discovery import (
    PROBE_TIMEOUT,
    ci_helm,
    display_path,
    parse_version,
    read_version,
    require,
    search,
    tools_dir,
)
from ci.tools.specs import CRDS, GO_MINIMUM, INSTALL_HINT, SEMVER, TOOLS, CrdSpec, ToolSpec


@dataclass(frozen=True)
class ToolStatus:
    """One line of ``ci doctor``: what was found, where, and what to do if it is not ok."""

    name: str
    path: Path | None
    version: str | None
    source: str
    status: str  # "ok", "missing" or "too-old"
    hint: str = ""
    required: bool = True

    @property
    def ok(self) -> bool:
        return self.status == "ok"


# ------------------------------------------------------------------------------ doctor


def _tool_status(spec: ToolSpec) -> ToolStatus:
    probes = search(spec)
    if probes and not probes[-1].problem:
        best = probes[-1]
        return ToolStatus(spec.name, best.path, best.version, best.source, "ok")
    if not probes:
        hint = f"not found on PATH or in {display_path(tools_dir())}; {INSTALL_HINT}"
        return ToolStatus(spec.name, None, None, "-", "missing", hint)
    first = probes[0]
    status = "too-old" if first.version else "missing"
    return ToolStatus(
        spec.name,
        first.path,
        first.version,
        first.source,
        status,
        f"{first.problem}; {INSTALL_HINT}",
    )


def _ci_helm_status() -> ToolStatus:
    """The helm named by ``CI_HELM``, checked as ``require("helm")`` would."""
    try:
        tool = require("helm")
    except ToolError as exc:
        path = ci_helm()
        return ToolStatus("helm (CI_HELM)", path, None, "CI_HELM", "missing", exc.message)
    return ToolStatus("helm (CI_HELM)", tool.path, tool.version, tool.source, "ok")


def go_status() -> ToolStatus:
    go = discovery.find_go()
    hint = f"needed only to build missing tools: install Go >= {GO_MINIMUM} in /usr/local/go"
    if go is None:
        return ToolStatus("go", None, None, "-", "missing", hint, required=False)
    version = _run_version((str(go), "version"), r"go(\d+\.\d+(?:\.\d+)?)")
    source = "PATH" if shutil.which("go") else "/usr/local/go"
    if version is None or parse_version(version) < parse_version(GO_MINIMUM):
        return ToolStatus("go", go, version, source, "too-old", hint, required=False)
    return ToolStatus("go", go, version, source, "ok", required=False)


def _run_version(argv: tuple[str, ...], regex: str) -> str | None:
    try:
        result = proc.run(argv, timeout=PROBE_TIMEOUT, check=False, what="version check")
    except (ToolError, ProcessError):
        return None
    if not result.ok:
        return None
    return read_version(result.stdout, regex)


def _docker_statuses() -> list[ToolStatus]:
    """The docker CLI, and whether its daemon answers (the images step needs both)."""
    hit = shutil.which("docker")
    if hit is None:
        hint = "install the docker.io package (Debian) or Docker Engine"
        return [
            ToolStatus("docker", None, None, "-", "missing", hint),
            ToolStatus("docker daemon", None, None, "-", "missing", "needs the docker CLI"),
        ]
    docker = Path(hit)
    fmt = "{{.Client.Version}}"
    client = _run_version((hit, "version", "--format", fmt), SEMVER)
    cli = ToolStatus("docker", docker, client, "PATH", "ok" if client else "missing")
    server = _run_version((hit, "version", "--format", "{{.Server.Version}}"), SEMVER)
    host = os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")
    if server is None:
        hint = f"daemon not reachable at {host}: run `make services`"
        return [cli, ToolStatus("docker daemon", None, None, host, "missing", hint)]
    return [cli, ToolStatus("docker daemon", None, server, host, "ok")]


def _crd_status(spec: CrdSpec) -> ToolStatus:
    """A CRD set is usable when converted, or when Go's module cache holds its module."""
    if crds.is_installed(spec):
        return ToolStatus(spec.name, crds.schema_dir(spec), spec.version, "pinned", "ok")
    module = crds.cached_module(spec)
    if module is not None:
        return ToolStatus(spec.name, module, spec.version, "go module cache", "ok")
    hint = f"schemas of {spec.module} {spec.version} not cached; {INSTALL_HINT}"
    return ToolStatus(spec.name, None, None, "-", "missing", hint)


def doctor() -> list[ToolStatus]:
    """What every tool resolves to, where it came from, and what is missing or too old."""
    statuses = [_tool_status(spec) for spec in TOOLS.values()]
    statuses += [_crd_status(spec) for spec in CRDS.values()]
    if ci_helm() is not None:
        statuses.append(_ci_helm_status())
    return [*statuses, *_docker_statuses(), go_status()]
