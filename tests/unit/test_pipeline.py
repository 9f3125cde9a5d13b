"""The pipeline order and its timing charts."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

from ci import pipeline
from ci.pipeline import PipelineResult, Step, StepResult


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


def test_text_chart_scales_bars_and_marks_failures() -> None:
    lines = pipeline.text_chart(_result(), width=8).splitlines()
    assert lines[0].startswith("config  ##       ")
    assert "########" in lines[1]
    assert lines[2].endswith("FAILED (1)")
    assert lines[3].endswith("skipped")
    assert lines[-1].split()[-1] == "7.0s"


def test_mermaid_gantt_offsets_from_the_first_step() -> None:
    text = pipeline.mermaid_gantt(_result())
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
    text = pipeline.summary_text(summary, _result())
    assert text.index("Images") < text.index("Deploy") < text.index("Smoke checks")
    assert text.rstrip().endswith("pipeline FAILED")
    md = pipeline.summary_markdown(summary, _result())
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
