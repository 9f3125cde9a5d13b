"""What the presenter prints, writes to the job summary and sets as step outputs."""

from __future__ import annotations

from pathlib import Path

import pytest

from ci import presenter
from ci.deploy import DiffResult, ObjectChange
from ci.smoke import CheckResult


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
