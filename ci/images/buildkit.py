"""The BuildKit daemons behind the buildx builders: started when none answers, reused when one does.

Why the step runs its own ``buildkitd``: the ``docker`` driver of older Docker Engines cannot
export cache to a registry, so buildx uses a ``remote`` builder pointing at a daemon this module
starts, detached, so it outlives the run and the next run finds it ready.

Why a second way: a GitHub-hosted runner has no ``buildkitd`` binary but does have ``docker
buildx``, whose ``docker-container`` driver pulls BuildKit and runs it in a container. That
builder has the same registry cache, multi-platform output and attestations, so a hosted run
does not drop to the classic builder.
"""

from __future__ import annotations

import socket as socketlib
from collections.abc import Sequence
from pathlib import Path

from tenacity import RetryError, Retrying, retry_if_result, stop_after_delay, wait_fixed

from ci import paths, proc, tools
from ci.errors import EnvironmentNotReady

#: Where the images step starts its own BuildKit daemon when none is running.
BUILDKIT_DIR = paths.run_dir()
BUILDKIT_SOCKET = BUILDKIT_DIR / "buildkitd.sock"
BUILDX_BUILDER = "ci"
#: The ``docker buildx`` builder with the ``docker-container`` driver (hosted runners).
CONTAINER_BUILDER = "ci-container"
#: How the docker CLI runs buildx: the runner's plugin, which the container driver needs.
DOCKER_BUILDX = ("docker", "buildx")


def buildkit_config(insecure_hosts: Sequence[str]) -> str:
    """``buildkitd.toml``: registries on this machine speak plain HTTP."""
    lines = []
    for host in sorted(set(insecure_hosts)):
        lines += [f'[registry."{host}"]', "  http = true", "  insecure = true", ""]
    return "\n".join(lines)


def _buildx_ready(buildx: Path | Sequence[str], builder: str) -> bool:
    result = proc.run(
        (*_command(buildx), "inspect", "--bootstrap", builder),
        timeout=120,
        check=False,
        what="buildx inspect",
    )
    return result.ok and "running" in result.stdout.lower()


def _command(buildx: Path | Sequence[str]) -> tuple[str, ...]:
    """The argv prefix that runs buildx: a standalone binary or ``docker buildx``."""
    return (str(buildx),) if isinstance(buildx, Path) else tuple(buildx)


def container_create_argv(command: Sequence[str], builder: str) -> tuple[str, ...]:
    """``buildx create`` for a ``docker-container`` builder, started at once (pure: tested).

    ``--bootstrap`` pulls and starts BuildKit now, so a missing image or daemon fails here,
    where the error names the builder, and not halfway through the first image.
    """
    return (
        *command,
        "create",
        "--name",
        builder,
        "--driver",
        "docker-container",
        "--bootstrap",
    )


def ensure_container_builder(
    command: Sequence[str] = DOCKER_BUILDX, builder: str = CONTAINER_BUILDER
) -> None:
    """Make ``docker buildx --builder ci-container`` work: reuse it when it runs, else create it.

    A builder of that name that does not start (its container removed) is removed and created
    again. Raises ``ProcessError`` or ``ToolError`` (no docker CLI) when it cannot be.
    """
    if _buildx_ready(command, builder):
        return
    proc.run((*command, "rm", builder), timeout=60, check=False, what="buildx rm")
    proc.run(container_create_argv(command, builder), timeout=600, what="buildx create")
    if not _buildx_ready(command, builder):
        raise EnvironmentNotReady(
            f"buildx builder '{builder}' (docker-container driver) did not start"
        )


def ensure_buildkit(
    buildx: Path,
    insecure_hosts: Sequence[str],
    socket: Path = BUILDKIT_SOCKET,
    builder: str = BUILDX_BUILDER,
) -> None:
    """Make ``buildx --builder ci`` work: start ``buildkitd`` and create the remote builder.

    Idempotent and fast when both exist (one ``buildx inspect``).
    """
    if _buildx_ready(buildx, builder):
        return
    if not socket_alive(socket):
        # A socket file left by a daemon that is gone (a reboot, a killed container) must not
        # pass for a running one: remove it and start afresh.
        socket.unlink(missing_ok=True)
        buildkitd = tools.require("buildkitd")
        socket.parent.mkdir(parents=True, exist_ok=True)
        config = socket.parent / "buildkitd.toml"
        config.write_text(buildkit_config(insecure_hosts), encoding="utf-8")
        logfile = socket.parent / "buildkitd.log"
        proc.run(
            (
                "sh",
                "-c",
                'exec setsid -f "$0" "$@" >>"$LOG" 2>&1 </dev/null',
                str(buildkitd.path),
                "--addr",
                f"unix://{socket}",
                "--config",
                str(config),
            ),
            env={"LOG": str(logfile)},
            timeout=30,
            what="start buildkitd",
        )
        _wait_for(socket, logfile)
    proc.run((str(buildx), "rm", builder), timeout=30, check=False, what="buildx rm")
    proc.run(
        (str(buildx), "create", "--name", builder, "--driver", "remote", f"unix://{socket}"),
        timeout=60,
        what="buildx create",
    )
    if not _buildx_ready(buildx, builder):
        logfile = socket.parent / "buildkitd.log"
        raise EnvironmentNotReady(
            f"buildx builder '{builder}' at unix://{socket} did not start (log: {logfile})",
            detail=_log_tail(logfile),
        )


def _log_tail(logfile: Path) -> str:
    """The end of the daemon's log, for an error; empty when it wrote none."""
    if not logfile.exists():
        return ""
    return proc.tail(logfile.read_text(encoding="utf-8", errors="replace"))


def socket_alive(path: Path, timeout: float = 2.0) -> bool:
    """True when something accepts connections on the Unix socket ``path``."""
    if not path.exists():
        return False
    sock = socketlib.socket(socketlib.AF_UNIX, socketlib.SOCK_STREAM)
    sock.settimeout(timeout)
    try:
        sock.connect(str(path))
    except OSError:
        return False
    finally:
        sock.close()
    return True


def _wait_for(socket: Path, logfile: Path, timeout: float = 30.0) -> None:
    """Poll for the socket ``buildkitd`` creates once it listens."""
    try:
        Retrying(
            stop=stop_after_delay(timeout),
            wait=wait_fixed(0.2),
            retry=retry_if_result(lambda found: not found),
        )(socket.exists)
    except RetryError:
        raise EnvironmentNotReady(
            f"buildkitd did not create {socket} within {timeout:g}s",
            detail=_log_tail(logfile),
        ) from None
