"""The pipeline order and its timing charts."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

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
