"""The real pinned tools: each is found, reports its pinned version, and `ci doctor` agrees.

These need `make tools` to have run (the test target depends on it); a missing tool fails
with the command that installs it.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import time

import pytest

from ci import proc, tools

pytestmark = pytest.mark.integration


@pytest.fixture(autouse=True)
def _fresh_lookups() -> None:
    tools.clear_cache()


@pytest.mark.parametrize("name", list(tools.TOOLS))
def test_pinned_binary_reports_its_pinned_version(name: str) -> None:
    spec = tools.TOOLS[name]
    path = tools.tools_dir() / spec.binary
    assert path.exists(), f"{path} is missing: run `make tools`"
    assert tools.probe_version(path, spec) == spec.bare_version


@pytest.mark.parametrize("name", list(tools.TOOLS))
def test_require_finds_a_compatible_tool(name: str) -> None:
    spec = tools.TOOLS[name]
    tool = tools.require(name)
    assert tool.name == name
    assert tool.source in {"PATH", "pinned"}
    assert tools.parse_version(tool.version) >= tools.parse_version(spec.minimum)
    if tool.source == "pinned":
        assert tool.version == spec.bare_version
    else:
        assert tool.path.resolve() != (tools.tools_dir() / spec.binary).resolve()


def test_helm_defaults_to_major_4_and_both_majors_are_there() -> None:
    assert tools.parse_version(tools.require("helm").version)[0] == 4
    assert tools.parse_version(tools.require("helm", major=3).version)[0] == 3


def test_docker_finds_the_buildx_plugin() -> None:
    docker = shutil.which("docker")
    assert docker is not None, "docker CLI not found: install the docker.io package"
    result = proc.run((docker, "buildx", "version"), timeout=60)
    buildx = tools.require("buildx")
    assert tools.read_version(result.stdout, tools.TOOLS["buildx"].version_regex) == buildx.version


def test_a_second_install_skips_everything_quickly() -> None:
    tools.install()
    started = time.monotonic()
    results = tools.install()
    assert [r.action for r in results] == ["skipped"] * (len(tools.TOOLS) + len(tools.CRDS))
    assert time.monotonic() - started < 60


def test_ci_doctor_reports_every_tool_ok() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "ci", "doctor"],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    rows = {line.split()[0]: line for line in result.stdout.splitlines()[2:] if line.strip()}
    for name in tools.TOOLS:
        assert rows[name].rstrip().endswith("ok"), rows[name]
