"""Another team adopts the toolkit: a two-service application in its own git repository,
scaffolded by ``ci init`` of the installed wheel, edited as its team would, then validated,
built and pushed to the local registry, and its chart checked. Nothing of this repository is
used but the wheel (the cluster part, deploy and smoke, is tests/e2e/test_adopter.py)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
import requests

from tests.integration.fixtures_adopter import (
    PROJECT,
    REGISTRY,
    SERVICES,
    edit_after_init,
    git,
    make_repo,
    registry_env,
)
from tests.integration.fixtures_wheel import ROOT, TOOLS_BIN, InstalledCi, installed_ci

pytestmark = pytest.mark.integration
__all__ = ["installed_ci"]  # the fixture, used by name below

MANIFEST_TYPES = ", ".join(
    [
        "application/vnd.oci.image.index.v1+json",
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.docker.distribution.manifest.v2+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
    ]
)


def ok(result: object) -> None:
    code = getattr(result, "returncode", None)
    assert code == 0, (
        f"exit {code}:\n{getattr(result, 'stdout', '')}\n{getattr(result, 'stderr', '')}"
    )


def test_an_adopter_validates_builds_pushes_and_checks_its_chart(
    installed_ci: InstalledCi, tmp_path: Path
) -> None:
    repo = make_repo(tmp_path)
    env = registry_env()
    init = installed_ci.run("init", "--project", PROJECT, cwd=repo)
    ok(init)
    assert f"created charts/{PROJECT}/Chart.yaml" in init.stdout
    edit_after_init(repo)
    git(repo, "add", ".")
    git(repo, "commit", "-q", "-m", "ci: scaffold from ci init")

    ok(installed_ci.run("config", "validate", cwd=repo, env=env))
    ok(installed_ci.run("images", "build", "--push", cwd=repo, env=env, timeout=1200))
    images = json.loads((repo / ".ci-out" / "images.json").read_text())
    by_name = {i["name"]: i for i in images["images"]}
    assert sorted(by_name) == sorted(SERVICES)
    for name, image in by_name.items():
        repository = f"{env['CI_REGISTRY_NAMESPACE']}/{name}"
        assert image["repository"] == f"{REGISTRY}/{repository}"
        url = f"http://{REGISTRY}/v2/{repository}/manifests/{image['digest']}"
        response = requests.head(url, headers={"Accept": MANIFEST_TYPES}, timeout=10)
        assert response.status_code == 200, f"{name}: {url} -> {response.status_code}"
    ok(installed_ci.run("chart", "check", cwd=repo, env=env))

    # The chart the team edited renders both services and routes /inventory/ to the API.
    rendered = "\n".join(p.read_text() for p in (repo / ".ci-out" / "rendered").rglob("*.yaml"))
    assert "bookshelf-inventory" in rendered
    assert "path: /inventory/" in rendered

    # The workflow ci init wrote passes the linters this repository's own workflows pass.
    lint = [
        [str(TOOLS_BIN / "actionlint"), "-shellcheck="],
        [str(ROOT / ".venv/bin/zizmor"), "--offline", "--no-progress", ".github"],
    ]
    for argv in lint:
        done = subprocess.run(argv, cwd=repo, capture_output=True, text=True, check=False)
        assert done.returncode == 0, f"{argv[0]}:\n{done.stdout}\n{done.stderr}"

    tracked = git(repo, "ls-files").split()
    copied = [
        f
        for f in tracked
        if (ROOT / f).is_file() and (ROOT / f).read_bytes() == (repo / f).read_bytes()
    ]
    assert not copied, f"files of this repository were copied: {copied}"


def test_init_again_keeps_what_the_team_edited(installed_ci: InstalledCi, tmp_path: Path) -> None:
    repo = make_repo(tmp_path)
    ok(installed_ci.run("init", cwd=repo))
    edit_after_init(repo)
    values = (repo / "charts" / PROJECT / "values.yaml").read_text()
    again = installed_ci.run("init", cwd=repo)
    ok(again)
    assert "created" not in again.stdout
    assert f"chart: charts/{PROJECT} (existing chart)" in again.stdout
    assert "kept ci.yaml" in again.stdout
    assert (repo / "charts" / PROJECT / "values.yaml").read_text() == values
