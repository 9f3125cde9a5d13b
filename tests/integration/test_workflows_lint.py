"""actionlint and zizmor on the real workflows, and `ci chart check` as an Actions step.

The linters run for real (the pinned actionlint from `make tools`, zizmor from the dev extra,
offline). Each is also shown a workflow broken on purpose, so a linter that silently checks
nothing would fail here too.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from ci import tools
from ci.errors import ToolError
from tests.integration.fixtures_images import (
    Project,
    debian_base_fixture,  # noqa: F401 - a fixture, used by name
    project_fixture,  # noqa: F401 - a fixture, used by name
)

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent

BROKEN_WORKFLOW = """\
name: broken
on: pull_request_target
jobs:
  build:
    runs-on: ubuntu-24.04
    steps:
      - uses: actions/checkout@v4
        with:
          ref: ${{ github.event.pull_request.head.sha }}
      - run: echo "${{ github.event.pull_request.title }}" $UNQUOTED
"""


def actionlint() -> Path:
    try:
        return tools.require("actionlint").path
    except ToolError as exc:
        pytest.fail(str(exc))


def venv_tool(name: str) -> Path:
    path = BIN / name
    if not path.exists():
        pytest.fail(f"{name} not found next to {sys.executable}; run `make setup` (dev extra)")
    return path


def run(
    argv: list[str | Path], cwd: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(a) for a in argv],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=env,
        timeout=300,
        check=False,
    )


def broken_repo(tmp_path: Path) -> Path:
    workflows = tmp_path / ".github" / "workflows"
    workflows.mkdir(parents=True)
    (workflows / "broken.yml").write_text(BROKEN_WORKFLOW)
    return tmp_path


def test_actionlint_passes_on_every_workflow() -> None:
    result = run([actionlint(), f"-shellcheck={venv_tool('shellcheck')}", "-color=false"], ROOT)
    assert result.returncode == 0, result.stdout + result.stderr


def test_actionlint_reports_shell_problems_in_run_steps(tmp_path: Path) -> None:
    repo = broken_repo(tmp_path)
    shellcheck = f"-shellcheck={venv_tool('shellcheck')}"
    result = run([actionlint(), shellcheck, "-color=false", ".github/workflows/broken.yml"], repo)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "SC2086" in result.stdout, result.stdout  # from shellcheck, through actionlint
    assert "[expression]" in result.stdout or "untrusted" in result.stdout, result.stdout


def test_zizmor_offline_passes_on_the_workflows_and_actions() -> None:
    result = run([venv_tool("zizmor"), "--offline", "--no-progress", ".github"], ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    for path in sorted((ROOT / ".github").rglob("*.yml")):
        if path.name != "zizmor.yml":
            assert str(path.relative_to(ROOT)) in result.stderr, f"{path} was not audited"


def test_zizmor_finds_the_classic_mistakes(tmp_path: Path) -> None:
    repo = broken_repo(tmp_path)
    result = run([venv_tool("zizmor"), "--offline", "--no-progress", ".github"], repo)
    assert result.returncode != 0, result.stdout
    for audit in ("unpinned-uses", "template-injection", "dangerous-triggers", "artipacked"):
        assert f"[{audit}]" in result.stdout, f"{audit} missing from:\n{result.stdout}"


def actions_files(tmp_path: Path) -> dict[str, str]:
    output, summary = tmp_path / "github-output", tmp_path / "summary.md"
    output.touch()
    summary.touch()
    env = {k: v for k, v in os.environ.items() if not k.startswith("GITHUB_")}
    env.update(
        GITHUB_ACTIONS="true",
        GITHUB_OUTPUT=str(output),
        GITHUB_STEP_SUMMARY=str(summary),
        TOOLS_DIR=str(tools.tools_dir()),
    )
    return env


def test_chart_check_as_an_actions_step_writes_the_job_summary(tmp_path: Path) -> None:
    env = actions_files(tmp_path)
    out = tmp_path / "out"
    result = run([BIN / "ci", "-o", out, "chart", "check"], ROOT, env)
    assert result.returncode == 0, result.stdout + result.stderr
    summary = Path(env["GITHUB_STEP_SUMMARY"]).read_text()
    assert summary.startswith("## Chart check\n")
    assert "| environment | objects |" in summary
    for name in ("staging", "prod"):
        assert f"| {name} | " in summary, summary
    assert (out / "findings.json").is_file()


def test_a_chart_finding_is_annotated_at_the_template_line(tmp_path: Path) -> None:
    """A copy of the project whose staging PostgreSQL requests less CPU than its limit (RES002).

    The chart itself refuses some values at render time (a `latest` tag, requests above
    limits); this one it renders, and only the policy finds it, at the template's line.
    """
    project = tmp_path / "project"
    project.mkdir()
    shutil.copy(ROOT / "ci.yaml", project / "ci.yaml")
    for name in ("dockerfiles", "examples"):
        (project / name).symlink_to(ROOT / name)
    shutil.copytree(ROOT / "charts", project / "charts")
    values = project / "charts" / "schedule-app" / "values-staging.yaml"
    text = values.read_text()
    assert "postgresql:\n" in text
    values.write_text(
        text.replace("postgresql:\n", "postgresql:\n  resources:\n    requests: {cpu: 10m}\n", 1)
    )
    env = actions_files(tmp_path)
    result = run(
        [BIN / "ci", "-o", tmp_path / "out", "chart", "check", "--env", "staging"], project, env
    )
    assert result.returncode == 1, result.stdout + result.stderr
    errors = [line for line in result.stdout.splitlines() if line.startswith("::error file=")]
    assert errors, result.stdout
    head, message = errors[0].split("::", 2)[1:]
    props = dict(p.split("=", 1) for p in head.removeprefix("error ").split(","))
    assert props["title"] == "RES002"
    assert "requests cpu 10m" in message
    template = project / props["file"]
    assert "resources:" in template.read_text().splitlines()[int(props["line"]) - 1]
    assert f"\n{len(errors)} error(s);" in Path(env["GITHUB_STEP_SUMMARY"]).read_text()


def read_outputs(path: Path) -> dict[str, str]:
    """Parse GITHUB_OUTPUT as the runner does: ``name<<DELIMITER``, lines, ``DELIMITER``."""
    outputs: dict[str, str] = {}
    lines = iter(path.read_text().splitlines())
    for line in lines:
        name, delimiter = line.split("<<", 1)
        value = []
        for inner in lines:
            if inner == delimiter:
                break
            value.append(inner)
        outputs[name] = "\n".join(value)
    return outputs


def test_images_build_as_an_actions_step_sets_digest_outputs_and_the_summary(
    project: Project, tmp_path: Path
) -> None:
    files = actions_files(tmp_path)
    env = {k: files[k] for k in ("GITHUB_ACTIONS", "GITHUB_OUTPUT", "GITHUB_STEP_SUMMARY")}
    result = project.ci("images", "build", "--push", "--builder", "docker", env=env)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    recorded = project.results()
    assert recorded
    outputs = read_outputs(Path(env["GITHUB_OUTPUT"]))
    for name, image in recorded.items():
        assert image["digest"].startswith("sha256:")
        assert outputs[f"{name}-digest"] == image["digest"]
        assert f"::group::build log: {name}" in result.stdout
    assert {i["name"]: i["digest"] for i in json.loads(outputs["images"])} == {
        n: r["digest"] for n, r in recorded.items()
    }
    summary = Path(env["GITHUB_STEP_SUMMARY"]).read_text()
    assert summary.startswith("### Images\n")
    for name, image in recorded.items():
        assert f"| {name} | built | {image['digest']} |" in summary, summary
