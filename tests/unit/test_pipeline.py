"""The pipeline order and its timing charts."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from ci import pipeline, presenter
from ci.cli import main
from ci.pipeline import PipelineResult, Step, StepResult

ROOT = Path(__file__).resolve().parents[2]
BAD_CONFIG = ROOT / "tests" / "data" / "config" / "bad" / "timeout-bad.yaml"


def _result() -> PipelineResult:
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    steps = pipeline.push_pipeline()
    return PipelineResult(
        steps=[
            StepResult(steps[0], t0, 1.0, 0),
            StepResult(steps[1], t0 + timedelta(seconds=1), 4.0, 0),
            StepResult(steps[2], t0 + timedelta(seconds=5), 2.0, 1),
        ],
        skipped=list(steps[3:]),
    )


def test_push_pipeline_order() -> None:
    assert [s.command() for s in pipeline.push_pipeline("qa")] == [
        "ci config validate",
        "ci images build --push",
        "ci chart check",
        "ci deploy --env qa",
        "ci smoke --env qa",
    ]


def test_each_step_needs_only_earlier_steps() -> None:
    steps = pipeline.push_pipeline()
    for i, step in enumerate(steps):
        assert set(step.needs) <= {s.name for s in steps[:i]}, step.name


def test_requirements_are_the_needs_and_theirs() -> None:
    steps = pipeline.push_pipeline()
    assert pipeline.requirements(steps, "config") == set()
    assert pipeline.requirements(steps, "deploy") == {"config", "images", "chart"}
    assert pipeline.requirements(steps, "smoke") == {"config", "images", "chart", "deploy"}


def test_without_push_the_images_are_only_built() -> None:
    steps = {s.name: s for s in pipeline.push_pipeline(push=False)}
    assert steps["images"].command() == "ci images build"
    assert steps["deploy"] == {s.name: s for s in pipeline.push_pipeline()}["deploy"]


def ci(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ci", *args], capture_output=True, text=True, check=False
    )


def test_pipeline_step_runs_the_step_and_exits_with_its_exit_code(tmp_path: Path) -> None:
    ok = ci("-o", str(tmp_path), "pipeline", "step", "config")
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.startswith("==> [config] ci config validate\n")
    assert "valid" in ok.stdout
    bad = ci("-c", str(BAD_CONFIG), "-o", str(tmp_path), "pipeline", "step", "config")
    assert bad.returncode == 2  # config validate's own code (`pipeline run` reports 1)
    assert bad.stderr.startswith(f"error: {BAD_CONFIG}:"), bad.stderr


def test_pipeline_step_with_an_unknown_name_lists_the_steps() -> None:
    result = ci("pipeline", "step", "deplyo")
    assert result.returncode == 2
    assert result.stderr == (
        "error: ci pipeline step: Invalid value for NAME: "
        "expected one of: config, images, chart, deploy, smoke\n"
    )


@pytest.mark.parametrize(("returncode", "exit_code"), [(0, 0), (3, 3), (-15, 143)])
def test_pipeline_step_passes_the_global_options_and_the_exit_code_through(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, returncode: int, exit_code: int
) -> None:
    seen: dict[str, Any] = {}

    def fake_run(steps: Sequence[Step], **kwargs: Any) -> PipelineResult:
        seen.update(steps=list(steps), global_args=tuple(kwargs["global_args"]))
        return PipelineResult(steps=[StepResult(steps[0], datetime.now(UTC), 0.1, returncode)])

    monkeypatch.setattr(pipeline, "run", fake_run)
    args = ["-c", "other.yaml", "-o", str(tmp_path), "pipeline", "step", "deploy", "--env", "qa"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == exit_code, result.output
    assert seen["steps"] == [Step("deploy", ("deploy", "--env", "qa"), ("images", "chart"))]
    assert seen["global_args"] == ("--config", "other.yaml", "--out-dir", str(tmp_path))


def test_text_chart_scales_bars_and_marks_failures() -> None:
    lines = presenter.text_chart(_result(), width=8).splitlines()
    assert lines[0].startswith("config  ##       ")
    assert "########" in lines[1]
    assert lines[2].endswith("FAILED (1)")
    assert lines[3].endswith("skipped")
    assert lines[-1].split()[-1] == "7.0s"


def test_mermaid_gantt_offsets_from_the_first_step() -> None:
    text = presenter.mermaid_gantt(_result())
    assert text.startswith("```mermaid\ngantt\n")
    assert "  images (4.0s) : 1000, 5000" in text
    assert "  chart (2.0s) : crit, 5000, 7000" in text


def test_run_stops_at_the_first_failure() -> None:
    steps = (Step("version", ("--version",)), Step("bad", ("no-such-command",)), Step("never", ()))
    result = pipeline.run(steps)
    assert [s.ok for s in result.steps] == [True, False]
    assert result.steps[1].returncode == 2
    assert [s.name for s in result.skipped] == ["never"]
    assert not result.ok


def test_summary_reads_the_artifacts_of_the_steps(tmp_path: Path) -> None:
    (tmp_path / "images.json").write_text(
        json.dumps(
            {
                "images": [
                    {"name": "backend", "status": "cached", "digest": "sha256:ab", "duration": 0.4}
                ]
            }
        )
    )
    (tmp_path / "release.json").write_text(
        json.dumps(
            {
                "env": "local",
                "release": "app",
                "revision": 3,
                "previous_revision": 2,
                "git_sha": "0123456789abcdef",
                "smoke": {"result": "passed"},
            }
        )
    )
    (tmp_path / "smoke.json").write_text(
        json.dumps(
            {"checks": [{"name": "frontend", "status": "passed", "attempts": 2, "seconds": 1.25}]}
        )
    )
    summary = pipeline.collect_summary(tmp_path)
    assert summary.images == [["backend", "cached", "sha256:ab", "0.4s"]]
    assert summary.deploy == [["local", "app", "3", "2", "0123456789ab", "passed"]]
    assert summary.smoke == [["frontend", "passed", "2", "1.2s"]]
    text = presenter.summary_text(summary, _result())
    assert text.index("Images") < text.index("Deploy") < text.index("Smoke checks")
    assert text.rstrip().endswith("pipeline FAILED")
    md = presenter.summary_markdown(summary, _result())
    assert "| backend | cached | sha256:ab | 0.4s |" in md
    assert "```mermaid" in md


def test_summary_of_a_run_that_wrote_nothing(tmp_path: Path) -> None:
    (tmp_path / "images.json").write_text("{not json")
    summary = pipeline.collect_summary(tmp_path)
    assert (summary.images, summary.deploy, summary.smoke) == ([], [], [])


def test_write_result(tmp_path: Path) -> None:
    path = pipeline.write_result(_result(), tmp_path)
    data = json.loads(path.read_text())
    assert [s["name"] for s in data["steps"]] == ["config", "images", "chart"]
    assert data["steps"][2]["returncode"] == 1
    assert data["skipped"] == ["deploy", "smoke"]
    assert data["ok"] is False


# ----------------------------------------------------------------------------- under Actions


def actions_env(tmp_path: Path) -> dict[str, str]:
    output, summary = tmp_path / "output", tmp_path / "summary.md"
    output.touch()
    summary.touch()
    env = {k: v for k, v in os.environ.items() if not k.startswith("GITHUB_")}
    env.update(GITHUB_ACTIONS="true", GITHUB_OUTPUT=str(output), GITHUB_STEP_SUMMARY=str(summary))
    return env


def run_ci(args: list[str], env: Mapping[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ci", *args],
        capture_output=True,
        text=True,
        env=dict(env),
        cwd=ROOT,
        timeout=120,
        check=False,
    )


def test_a_bad_configuration_is_annotated_at_its_file_and_line(tmp_path: Path) -> None:
    bad = ROOT / "tests" / "data" / "config" / "bad" / "timeout-bad.yaml"
    line = next(n for n, text in enumerate(bad.read_text().splitlines(), 1) if "10 minutes" in text)
    result = run_ci(["-c", str(bad), "config", "validate"], actions_env(tmp_path))
    assert result.returncode == 2, result.stderr
    assert f"::error file={bad},line={line}::environments.staging.timeout: " in result.stdout


def test_the_pipeline_under_actions_writes_its_timing_chart_to_the_job_summary(
    tmp_path: Path,
) -> None:
    env = actions_env(tmp_path)
    result = run_ci(["-o", str(tmp_path / "out"), "pipeline", "run", "--until", "config"], env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "==> [config] ci config validate" in result.stdout
    summary = Path(env["GITHUB_STEP_SUMMARY"]).read_text()
    assert summary.startswith("## Pipeline :white_check_mark: passed\n")
    assert "```mermaid\ngantt\n" in summary
    assert re.search(r"^  config \(\d+\.\ds\) : \d+, \d+$", summary, re.M), summary


def test_a_failing_step_is_marked_in_the_summary_and_fails_the_pipeline(tmp_path: Path) -> None:
    env = actions_env(tmp_path)
    bad = ROOT / "tests" / "data" / "config" / "bad" / "timeout-bad.yaml"
    result = run_ci(["-c", str(bad), "pipeline", "run", "--until", "images"], env)
    assert result.returncode == 1
    assert "::error file=" in result.stdout
    summary = Path(env["GITHUB_STEP_SUMMARY"]).read_text()
    assert re.search(r"^  config \(\d+\.\ds\) : crit, ", summary, re.M), summary
    assert "images (" not in summary
