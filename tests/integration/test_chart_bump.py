"""A chart bumped by `ci chart bump` still passes the real `helm lint --strict`."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from ci import bump, helm
from ci.errors import CiError

ROOT = Path(__file__).resolve().parents[2]
SOURCE = ROOT / "charts" / "schedule-app"


@pytest.fixture
def chart_dir(tmp_path: Path) -> Path:
    target = tmp_path / "schedule-app"
    shutil.copytree(SOURCE, target)
    return target


@pytest.mark.integration
@pytest.mark.parametrize("major", [3, 4])
def test_bumped_chart_still_lints(chart_dir: Path, major: int) -> None:
    try:
        h = helm.find(major)
    except CiError as exc:
        pytest.fail(f"Helm {major} is needed: {exc} (run `make tools`)")
    bump.bump(chart_dir, version="3.0.0", app_version="3.0.0")
    proc = subprocess.run(
        [h.path, "show", "chart", str(chart_dir)], capture_output=True, text=True, check=True
    )
    assert "version: 3.0.0" in proc.stdout
    lint = subprocess.run(
        [h.path, "lint", "--strict", str(chart_dir)], capture_output=True, text=True, check=False
    )
    assert lint.returncode == 0, lint.stdout + lint.stderr
