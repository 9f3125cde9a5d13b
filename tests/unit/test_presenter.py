"""What the presenter prints, writes to the job summary and sets as step outputs."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace
from typing import cast

import pytest

from ci import deploy, presenter
from ci.chart import Report
from ci.config import Environment
from ci.deploy import DiffResult, ObjectChange
from ci.errors import DeployError
from ci.images.gitinfo import GitInfo
from ci.images.results import ImageResult, ImagesResult
from ci.manifests import WARNING, Finding
from ci.pipeline import PipelineResult, Step, StepResult, Summary
from ci.release import ImageRef
from ci.smoke import CheckResult, SmokeResult
from ci.tools import ToolStatus


@pytest.fixture
def plain(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("GITHUB_ACTIONS", "GITHUB_STEP_SUMMARY", "GITHUB_OUTPUT"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def actions(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> dict[str, Path]:
    files = {"summary": tmp_path / "summary.md", "output": tmp_path / "output"}
    monkeypatch.setenv("GITHUB_ACTIONS", "true")
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(files["summary"]))
    monkeypatch.setenv("GITHUB_OUTPUT", str(files["output"]))
    return files


def test_diff_markdown_collapses_each_object_diff() -> None:
    diff = DiffResult(
        changes=[ObjectChange("ConfigMap", "app", "cfg", "changed", "-a\n+b\n")],
        unchanged=2,
        live_revision=4,
    )
    md = presenter.diff_markdown(diff, "staging")
    assert md.startswith("### Changes to staging\n\ndiff against revision 4: 0 added, 1 changed")
    assert "<summary>changed: ConfigMap/cfg (app)</summary>\n\n```diff\n-a\n+b\n```" in md
    assert md.endswith("</details>\n")


def test_smoke_row_matches_the_headers() -> None:
    row = presenter.smoke_row(CheckResult("health", "http", "passed", attempts=2, seconds=1.25))
    assert dict(zip(presenter.SMOKE_HEADERS, row, strict=True)) == {
        "check": "health",
        "type": "http",
        "result": "passed",
        "attempts": "2",
        "time": "1.2s",
    }


# ----------------------------------------------------------------------------- tools, chart


def test_doctor_prints_the_table_and_each_problems_hint_on_stderr(
    plain: None, capsys: pytest.CaptureFixture[str]
) -> None:
    presenter.doctor(
        [
            ToolStatus("helm3", Path("/bin/helm3"), "3.22.0", "pinned", "ok"),
            ToolStatus("go", None, None, "-", "missing", hint="install go", required=False),
        ]
    )
    out, err = capsys.readouterr()
    lines = out.splitlines()
    assert lines[0].split() == ["tool", "version", "source", "path", "status"]
    assert lines[2].split() == ["helm3", "3.22.0", "pinned", "/bin/helm3", "ok"]
    assert lines[3].split() == ["go", "-", "-", "-", "missing", "(optional)"]
    assert err == "go: install go\n"


def test_findings_are_annotated_and_totalled(
    actions: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    report = Report(
        findings=[
            Finding("RES001", "no resources", "templates/web.yaml", 7, env="staging"),
            Finding("PRB001", "no probe", "templates/web.yaml", None, severity=WARNING),
        ],
        checked={"staging": 12},
        seconds=0.5,
    )
    presenter.chart_checked(report, Path("out/findings.json"))
    out = capsys.readouterr().out.splitlines()
    assert out == [
        "::error file=templates/web.yaml,line=7,title=RES001::[staging] no resources",
        "::warning file=templates/web.yaml,title=PRB001::no probe",
        "chart check: 1 error(s), 2 finding(s) (staging: 12) in 0.50s",
    ]
    summary = actions["summary"].read_text()
    assert "| staging | 12 |" in summary
    assert summary.endswith("1 error(s); findings in `out/findings.json`\n")


# ----------------------------------------------------------------------------- images


def test_images_table_summary_and_outputs(
    actions: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    image = ImageResult(
        "api", "reg/api", "api", ["abc1234", "main"], "h", "inputs-h", "built", "sha256:aa"
    )
    image.log = ["#1 building"]
    result = ImagesResult("buildx", True, GitInfo("abc1234"), [image], duration=3.0)
    presenter.images(result)
    out = capsys.readouterr().out
    assert "::group::build log: api" in out
    assert "#1 building" in out
    assert "builder buildx, 3.0s; written None" in out
    assert "| api | built | sha256:aa | abc1234, main | 0.0s |" in actions["summary"].read_text()
    outputs = actions["output"].read_text()
    assert "api-digest<<" in outputs
    assert '"digest": "sha256:aa"' in outputs


def test_image_progress_aligns_names(plain: None, capsys: pytest.CaptureFixture[str]) -> None:
    show = presenter.image_progress(["api", "frontend"])
    show("api", "building")
    assert capsys.readouterr().out == "api       building\n"


# ----------------------------------------------------------------------------- deploy, smoke


def _deploy_result() -> deploy.Result:
    """A deploy's result; the plan holds only what the presenter reads."""
    plan = SimpleNamespace(
        env=Environment("staging", "app", "schedule", (), 600, False, True),
        chart_version="1.2.0",
        images=[ImageRef("api", "reg/api", "sha256:bb", "api")],
        git_sha="0123456789abcdef",
        triggered_by="push",
    )
    return deploy.Result(
        cast(deploy.Plan, plan), revision=5, previous_revision=4, record_path=Path("release.json")
    )


def test_deployed_prints_the_revision_and_sets_outputs(
    actions: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    presenter.deployed("staging", _deploy_result())
    out = capsys.readouterr().out
    assert "api    reg/api@sha256:bb" in out
    assert "schedule revision 5 in app (previous 4), chart 1.2.0" in out
    summary = actions["summary"].read_text()
    assert summary.startswith("### Deploy: staging\n\n")
    assert "| schedule | app | 5 | 4 | 1.2.0 | 0123456789ab | push |" in summary
    outputs = actions["output"].read_text()
    assert "revision<<" in outputs
    assert "release.json" in outputs


def test_a_failed_deploy_goes_to_the_summary_and_is_raised_again(
    actions: dict[str, Path],
) -> None:
    with pytest.raises(DeployError), presenter.deploying("prod"):
        raise DeployError("upgrade failed", detail="pod web: CrashLoopBackOff")
    summary = actions["summary"].read_text()
    assert summary.startswith("### Deploy: prod FAILED\n\nupgrade failed\n")
    assert "```\npod web: CrashLoopBackOff\n```" in summary


def test_smoke_verdict_summary_and_output(
    actions: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    checks = [
        CheckResult("health", "http", "passed", 1, 0.2),
        CheckResult("api", "http", "failed", 3, 9.0),
    ]
    result = SmokeResult("staging", "http://x", checks, "t", duration=9.5, rollback="rolled back")
    presenter.smoke(result)
    out = capsys.readouterr().out
    assert "smoke staging: FAILED in 9.5s; written None" in out
    summary = actions["summary"].read_text()
    assert summary.startswith("### Smoke: staging (FAILED)\n\n")
    assert "| api | http | failed | 3 | 9.0s |" in summary
    assert summary.endswith("\nrolled back\n")
    assert "smoke<<" in actions["output"].read_text()


# ----------------------------------------------------------------------------- pipeline


def test_step_output_keeps_stderr_apart_and_the_run_log_does_not(
    plain: None, capsys: pytest.CaptureFixture[str]
) -> None:
    presenter.step_output("built", "stdout")
    presenter.step_output("error: x", "stderr")
    assert capsys.readouterr() == ("built\n", "error: x\n")
    presenter.step_line("error: x", "stderr")
    assert capsys.readouterr() == ("error: x\n", "")


def test_pipeline_prints_the_text_summary_and_writes_the_markdown_one(
    actions: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    started = datetime(2026, 1, 1, tzinfo=UTC)
    config = Step("config", ("config", "validate"))
    result = PipelineResult([StepResult(config, started, 1.5, 0)])
    presenter.pipeline(Summary(images=[["api", "built", "sha256:aa", "2.0s"]]), result)
    out = capsys.readouterr().out
    assert out.startswith("\nImages\n")
    assert out.endswith("\npipeline passed\n")
    summary = actions["summary"].read_text()
    assert summary.startswith("## Pipeline :white_check_mark: passed\n")
    assert "  config (1.5s) : 0, 1500" in summary
