"""The wheel, installed in a fresh virtualenv outside the repository, works on its own: the
version comes from the git tag, the package data (schema, init templates, cluster scripts) is
inside, and ``ci init``, ``ci config validate`` and ``ci chart check`` run on a new project."""

from __future__ import annotations

import os
import subprocess
import zipfile
from pathlib import Path

import pytest

from tests.integration.fixtures_wheel import RELEASE_TAG, ROOT, InstalledCi, installed_ci

pytestmark = pytest.mark.integration
__all__ = ["installed_ci"]  # the fixture, used by name below


def test_the_version_is_the_git_tag(installed_ci: InstalledCi, tmp_path: Path) -> None:
    result = installed_ci.run("--version", cwd=tmp_path)
    assert (result.returncode, result.stdout) == (0, f"ci, version {RELEASE_TAG[1:]}\n")
    assert installed_ci.wheel.name.startswith(f"ci_delivery_steps-{RELEASE_TAG[1:]}-")


def test_the_wheel_carries_its_data_and_nothing_of_the_repository(
    installed_ci: InstalledCi,
) -> None:
    names = set(zipfile.ZipFile(installed_ci.wheel).namelist())
    for needed in (
        "ci/schemas/config.schema.json",
        "ci/scaffold/templates/chart/.helmignore",
        "ci/scaffold/templates/chart/templates/deployment.yaml",
        "ci/hack/cluster/cluster.sh",
        "ci/hack/dockerd.sh",
        "ci/hack/registry.sh",
    ):
        assert needed in names, needed
    assert not [n for n in names if n.startswith(("tests/", "charts/", "examples/", ".github/"))]


def test_the_installed_package_finds_its_cluster_scripts(
    installed_ci: InstalledCi, tmp_path: Path
) -> None:
    code = (
        "import ci, ci.cluster.builtin as b, os; s = b.script_path(); "
        "print(ci.__file__); print(s); print(os.access(s, os.X_OK))"
    )
    out = subprocess.run(
        [str(installed_ci.python), "-c", code],
        cwd=tmp_path,
        env=installed_ci.env(),
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    package, script, executable = Path(out[0]), Path(out[1]), out[2]
    assert package.is_relative_to(installed_ci.venv), "ci was imported from outside the venv"
    assert not script.is_relative_to(ROOT)
    assert script == package.parent / "hack" / "cluster" / "cluster.sh"
    assert executable == "True"
    sibling = script.parent.parent / "dockerd.sh"  # cluster.sh runs $root/hack/dockerd.sh
    assert os.access(sibling, os.X_OK)


def test_init_validate_and_chart_check_on_a_new_project(
    installed_ci: InstalledCi, tmp_path: Path
) -> None:
    project = tmp_path / "notes"
    (project / "app").mkdir(parents=True)
    (project / "app" / "Dockerfile").write_text("FROM scratch\nEXPOSE 3000\n")
    for args in (("init",), ("config", "validate"), ("chart", "check")):
        result = installed_ci.run(*args, cwd=project)
        assert result.returncode == 0, f"ci {' '.join(args)}:\n{result.stdout}\n{result.stderr}"
    assert (project / "charts" / "notes" / "Chart.yaml").is_file()
    assert (project / ".ci-out" / "findings.json").is_file()
