"""Fixtures for the images step's integration tests: a git project to build, the base image,
a way to run ``ci`` as a user would, and registry checks through the registry's HTTP API.

Each test pushes under its own registry namespace, and everything a test pushed or tagged is
removed afterwards (manifests through the registry API, tags from the local daemon).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from ci import registry

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / "tests" / "data" / "images"
REGISTRY = "127.0.0.1:5000"
DEBIAN = "local/debian:bookworm"
DEBIAN_IN_REGISTRY = f"{REGISTRY}/base/debian:bookworm"


def _run(*argv: str, cwd: Path | None = None, timeout: float = 600) -> str:
    proc = subprocess.run(
        argv, cwd=cwd, capture_output=True, text=True, timeout=timeout, check=False
    )
    if proc.returncode != 0:
        pytest.fail(f"{' '.join(argv[:4])} failed ({proc.returncode}): {proc.stderr[-1500:]}")
    return proc.stdout


@dataclass
class Project:
    """A copy of tests/data/images in a fresh git repository, pushing to its own namespace."""

    root: Path
    namespace: str
    out: Path
    env: dict[str, str] = field(default_factory=dict)

    def ci(
        self,
        *args: str,
        timeout: float = 900,
        env: Mapping[str, str] | None = None,
        **more: str,
    ) -> subprocess.CompletedProcess[str]:
        """Run ``python -m ci -c ci.yaml -o OUT ARGS`` as a user would; never raises."""
        base = {k: v for k, v in os.environ.items() if not k.startswith("GITHUB_")}
        full_env = {**base, **self.env, **(env or {}), **more}
        return subprocess.run(
            [
                sys.executable,
                "-m",
                "ci",
                "-c",
                str(self.root / "ci.yaml"),
                "-o",
                str(self.out),
                *args,
            ],
            cwd=self.root,
            env=full_env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def commit(self, message: str) -> str:
        _run("git", "add", "-A", cwd=self.root)
        _run(
            "git",
            "-c",
            "user.name=t",
            "-c",
            "user.email=t@example.com",
            "commit",
            "-qm",
            message,
            cwd=self.root,
        )
        return self.head()

    def head(self) -> str:
        return _run("git", "rev-parse", "HEAD", cwd=self.root).strip()

    def results(self) -> dict[str, dict[str, Any]]:
        """``images.json`` by image name."""
        data = json.loads((self.out / "images.json").read_text(encoding="utf-8"))
        return {image["name"]: image for image in data["images"]}

    def repo(self, name: str) -> str:
        """Repository path inside the registry (no host)."""
        return f"{self.namespace}/{name}"


@pytest.fixture(name="debian_base", scope="session")
def debian_base_fixture(docker: Any, local_registry: str) -> str:
    """``local/debian:bookworm`` in the daemon and in the registry (buildx pulls from there)."""
    if docker.run("image", "inspect", DEBIAN, check=False).returncode != 0:
        script = ROOT / "hack" / "base-images" / "build.sh"
        if not script.exists():
            pytest.fail(f"{DEBIAN} is missing and {script} does not exist (run make base-images)")
        _run(str(script), "debian", timeout=900)
    client = registry.Client(local_registry, retries=1)
    if client.digest("base/debian", "bookworm") is None:
        docker.run("tag", DEBIAN, DEBIAN_IN_REGISTRY)
        docker.run("push", DEBIAN_IN_REGISTRY)
    return DEBIAN


@pytest.fixture(name="project")
def project_fixture(tmp_path: Path, local_registry: str, debian_base: str) -> Iterator[Project]:
    """The two-image test project, committed, with a namespace no other test uses."""
    root = tmp_path / "project"
    shutil.copytree(DATA, root)
    _run("git", "init", "-q", "-b", "main", cwd=root)
    namespace = f"it-{uuid.uuid4().hex[:10]}"
    proj = Project(
        root,
        namespace,
        tmp_path / "out",
        {
            "CI_REGISTRY_NAMESPACE": namespace,
            "CI_REGISTRY": local_registry,
            # The toolkit's pinned tools, as `make` exports them (the project is elsewhere).
            "TOOLS_DIR": os.environ.get("TOOLS_DIR", str(ROOT / ".tools" / "bin")),
        },
    )
    proj.commit("initial")
    yield proj
    clean_namespace(local_registry, namespace)


def clean_namespace(host: str, namespace: str) -> None:
    """Delete every manifest pushed under ``namespace`` and the daemon's tags for it."""
    client = registry.Client(host, retries=1)
    for name in ("api", "web", "backend", "frontend", "dbtools"):
        repo = f"{namespace}/{name}"
        digests = {client.digest(repo, tag) for tag in _tags(client, repo)}
        for digest in digests - {None}:
            assert digest is not None
            client.delete(repo, digest)
    refs = subprocess.run(
        ["docker", "images", "--format", "{{.Repository}}:{{.Tag}}", f"{host}/{namespace}/*"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout.split()
    if refs:
        subprocess.run(["docker", "rmi", "-f", *refs], capture_output=True, check=False)


def _tags(client: registry.Client, repo: str) -> list[str]:
    """The repository's tags (none when it does not exist), through the HTTP API."""
    resp = client.request(
        "GET", f"{repo}/tags/list?n=1000", scope=f"repository:{repo}:pull", missing_ok=True
    )
    return list(resp.json().get("tags") or []) if resp is not None else []


def image_config(host: str, repo: str, ref: str, platform: str = "linux/amd64") -> dict[str, Any]:
    """The image config the registry serves (labels, user), read through the HTTP API."""
    client = registry.Client(host, retries=1)
    manifest = client.manifest(repo, ref)
    assert manifest is not None, f"{host}/{repo}:{ref} not in the registry"
    if manifest.is_index:
        child = registry.pick_platform(manifest.json(), platform)
        assert child is not None, f"{host}/{repo}:{ref} has no {platform} image"
        manifest = client.manifest(repo, child)
        assert manifest is not None, f"{host}/{repo}@{child} not in the registry"
    digest = manifest.json()["config"]["digest"]
    resp = client.request("GET", f"{repo}/blobs/{digest}", scope=f"repository:{repo}:pull")
    assert resp is not None
    config: dict[str, Any] = json.loads(resp.content)
    return config


def tag_digests(host: str, repo: str) -> dict[str, str | None]:
    """Every tag of ``repo`` and the manifest digest it points to, through the HTTP API."""
    client = registry.Client(host, retries=1)
    return {tag: client.digest(repo, tag) for tag in _tags(client, repo)}
