"""Shared fixtures for the integration tests: the real Docker daemon, the local registry and the
local base images. Fixtures start what they need once per session and remove what they created."""

from __future__ import annotations

import json
import shutil
import subprocess
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import requests

from ci import helm
from ci.errors import CiError

ROOT = Path(__file__).resolve().parents[2]
REGISTRY = "127.0.0.1:5000"
# Build arguments that select the local stand-ins for the upstream base images (make base-images).
LOCAL_BASES = {
    "maven": "local/maven:bookworm",
    "jre": "local/jre:bookworm",
    "node": "local/node:bookworm",
    "nginx": "local/nginx:bookworm",
    "pgclient": "local/pgclient:bookworm",
    "postgres": "local/postgres:bookworm",
    "rabbitmq": "local/rabbitmq:bookworm",
    "postgres-exporter": "local/postgres-exporter:bookworm",
}


@dataclass
class Docker:
    """The docker CLI, plus bookkeeping of what a test session created so it can be removed."""

    binary: str
    containers: list[str] = field(default_factory=list)
    networks: list[str] = field(default_factory=list)

    def run(
        self, *args: str, timeout: float = 600, check: bool = True, stdin: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        """Runs `docker ARGS`; with check, a failure fails the test with docker's own output."""
        proc = subprocess.run(
            [self.binary, *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            input=stdin,
            check=False,
        )
        if check and proc.returncode != 0:
            pytest.fail(
                f"docker {' '.join(args[:3])} ... exited {proc.returncode}:\n"
                f"{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
            )
        return proc

    def inspect(self, kind: str, name: str) -> dict[str, object]:
        """`docker KIND inspect NAME` as a dict (kind: image, container, network)."""
        data = json.loads(self.run(kind, "inspect", name).stdout)
        assert isinstance(data, list)
        assert isinstance(data[0], dict)
        return data[0]

    def network(self) -> str:
        """Creates a user-defined bridge network (container names resolve on it)."""
        name = f"it-{uuid.uuid4().hex[:8]}"
        self.run("network", "create", name)
        self.networks.append(name)
        return name

    def start(
        self,
        image: str,
        *cmd: str,
        network: str,
        alias: str,
        env: dict[str, str] | None = None,
        extra: Sequence[str] = (),
    ) -> str:
        """Starts a detached container reachable as ALIAS on NETWORK; returns its name."""
        name = f"{alias}-{uuid.uuid4().hex[:8]}"
        args = ["run", "-d", "--name", name, "--network", network, "--network-alias", alias]
        for key, value in (env or {}).items():
            args += ["-e", f"{key}={value}"]
        self.run(*args, *extra, image, *cmd)
        self.containers.append(name)
        return name

    def ip(self, container: str, network: str) -> str:
        """The container's address on NETWORK (reachable from this host through the bridge)."""
        settings = self.inspect("container", container)["NetworkSettings"]
        assert isinstance(settings, dict)
        address = settings["Networks"][network]["IPAddress"]
        assert isinstance(address, str)
        assert address, f"{container} has no address on {network}"
        return address

    def logs(self, container: str) -> str:
        proc = self.run("logs", "--tail", "80", container, check=False)
        return proc.stdout + proc.stderr

    def cleanup(self) -> None:
        for name in reversed(self.containers):
            self.run("rm", "-f", "-v", name, check=False, timeout=60)
        for name in reversed(self.networks):
            self.run("network", "rm", name, check=False, timeout=60)
        self.containers.clear()
        self.networks.clear()


@pytest.fixture(params=[3, 4], ids=lambda m: f"helm{m}", scope="module")
def helm_bin(request: pytest.FixtureRequest) -> helm.Helm:
    """The pinned Helm of each major, for the tests that run under both; a missing one
    fails with the command that installs it."""
    try:
        found = helm.find(request.param)
    except CiError as exc:
        pytest.fail(f"Helm {request.param} is needed: {exc} (run `make tools`)")
    assert found.major == request.param
    return found


@pytest.fixture(scope="session")
def docker() -> Iterator[Docker]:
    """The Docker CLI talking to a running daemon; fails (never skips) when either is missing."""
    binary = shutil.which("docker")
    if binary is None:
        pytest.fail("the docker CLI is not installed (apt-get install docker.io, or make services)")
    proc = subprocess.run(
        [binary, "info", "--format", "{{.ServerVersion}}"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    if proc.returncode != 0:
        pytest.fail(
            "no Docker daemon answers (start it with `make services` or hack/dockerd.sh): "
            + proc.stderr.strip()[-500:]
        )
    client = Docker(binary)
    yield client
    client.cleanup()


@pytest.fixture(scope="session")
def local_registry() -> str:
    """The local registry's address, started with hack/registry.sh when it does not answer."""
    if not _registry_answers():
        proc = subprocess.run(
            [str(ROOT / "hack/registry.sh"), "up"],
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        if proc.returncode != 0 or not _registry_answers():
            pytest.fail(f"the local registry on {REGISTRY} does not start: {proc.stderr[-500:]}")
    return REGISTRY


def _registry_answers() -> bool:
    try:
        return requests.get(f"http://{REGISTRY}/v2/", timeout=3).status_code == 200
    except requests.RequestException:
        return False


@pytest.fixture(scope="session")
def base_images(docker: Docker) -> dict[str, str]:
    """The local base images by short name; fails when `make base-images` has not been run."""
    missing = [
        ref
        for ref in LOCAL_BASES.values()
        if docker.run("image", "inspect", ref, check=False).returncode != 0
    ]
    if missing:
        pytest.fail(f"local base images missing: {', '.join(missing)} (run `make base-images`)")
    return dict(LOCAL_BASES)
