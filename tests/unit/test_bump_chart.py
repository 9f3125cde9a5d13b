"""`ci chart bump` on a copy of the chart: only the edited scalars change, byte for byte."""

from __future__ import annotations

import difflib
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from ci import bump
from ci.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]
SOURCE = ROOT / "charts" / "schedule-app"


@pytest.fixture
def chart_dir(tmp_path: Path) -> Path:
    target = tmp_path / "schedule-app"
    shutil.copytree(SOURCE, target)
    return target


def changed_lines(before: str, after: str) -> list[str]:
    """The -/+ lines of a unified diff, without headers."""
    diff = difflib.unified_diff(before.splitlines(), after.splitlines(), lineterm="", n=0)
    return [d for d in diff if d[:1] in "+-" and not d.startswith(("+++", "---"))]


def test_version_and_app_version_change_only_their_lines(chart_dir: Path) -> None:
    chart_yaml = chart_dir / "Chart.yaml"
    before = chart_yaml.read_text()
    changes = bump.bump(chart_dir, version="1.4.0", app_version="2.0.1")
    after = chart_yaml.read_text()
    assert changed_lines(before, after) == [
        "-version: 0.1.0",
        "+version: 1.4.0",
        '-appVersion: "0.1.0"',
        '+appVersion: "2.0.1"',
    ]
    assert [(c.key, c.old, c.new) for c in changes] == [
        ("version", "0.1.0", "1.4.0"),
        ("appVersion", "0.1.0", "2.0.1"),
    ]
    assert "# Chart version: bump with" in after  # comments kept


def test_image_tag_in_a_values_file(chart_dir: Path) -> None:
    values = chart_dir / "values-prod.yaml"
    before = values.read_text()
    bump.bump(chart_dir, version="0.2.0", values_file=values, image="frontend", tag="1.2.3-rc1")
    assert changed_lines(before, values.read_text()) == [
        '-    tag: "0.1.0"',
        '+    tag: "1.2.3-rc1"',
    ]
    # the frontend's tag changed, not the backend's or dbtools' (same text, other blocks)
    assert values.read_text().count('tag: "0.1.0"') == before.count('tag: "0.1.0"') - 1


def test_plain_scalar_with_comment_keeps_the_comment(tmp_path: Path) -> None:
    chart_dir = tmp_path / "c"
    chart_dir.mkdir()
    (chart_dir / "Chart.yaml").write_text(
        "apiVersion: v2\nname: c\nversion: 0.1.0   # released\nkeywords:\n- a\n"
    )
    bump.bump(chart_dir, version="0.1.1")
    assert (chart_dir / "Chart.yaml").read_text() == (
        "apiVersion: v2\nname: c\nversion: 0.1.1   # released\nkeywords:\n- a\n"
    )


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"version": "1.0"}, "expected a semantic version"),
        ({"version": "1.0.0", "image": "backend"}, "--image and --tag go together"),
        (
            {"version": "1.0.0", "image": "x", "tag": "a b", "values_file": Path("v")},
            "valid image tag",
        ),
    ],
)
def test_bad_arguments_are_usage_errors(
    chart_dir: Path, kwargs: dict[str, object], message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        bump.bump(chart_dir, **kwargs)  # type: ignore[arg-type]


def test_unknown_image_key_is_reported_and_nothing_changes(chart_dir: Path) -> None:
    values = chart_dir / "values.yaml"
    before = (chart_dir / "Chart.yaml").read_text()
    with pytest.raises(ConfigError, match=r"worker\.image\.tag: key not found"):
        bump.bump(chart_dir, version="1.0.0", values_file=values, image="worker", tag="1")
    assert (chart_dir / "Chart.yaml").read_text() == before


def test_missing_tag_is_added_for_a_known_image(chart_dir: Path) -> None:
    values = chart_dir / "values-extra.yaml"
    values.write_text("# extra\nbackend:\n  replicaCount: 3  # three\n")
    bump.bump(chart_dir, version="1.0.0", values_file=values, image="backend", tag="2.0.0")
    text = values.read_text()
    assert text.startswith("# extra\nbackend:\n  replicaCount: 3  # three\n")
    assert yaml.safe_load(text) == {"backend": {"replicaCount": 3, "image": {"tag": "2.0.0"}}}


def test_cli_bump_prints_each_change(tmp_path: Path) -> None:
    chart_dir = tmp_path / "schedule-app"
    shutil.copytree(SOURCE, chart_dir)
    config = tmp_path / "ci.yaml"
    text = (ROOT / "ci.yaml").read_text()
    config.write_text(text)
    # the copied config resolves paths against tmp_path: give it the chart and the image inputs
    for name in ("dockerfiles", "examples"):
        (tmp_path / name).symlink_to(ROOT / name)
    (tmp_path / "charts").mkdir()
    (tmp_path / "charts" / "schedule-app").symlink_to(chart_dir)
    (tmp_path / "charts" / "crds").symlink_to(ROOT / "charts" / "crds")
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "ci",
            "--config",
            str(config),
            "chart",
            "bump",
            "--version",
            "0.3.0",
            "--values",
            str(chart_dir / "values-staging.yaml"),
            "--image",
            "backend",
            "--tag",
            "9.9.9",
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "version: 0.1.0 -> 0.3.0" in proc.stdout
    assert "backend.image.tag: 0.1.0 -> 9.9.9" in proc.stdout
    assert 'tag: "9.9.9"' in (chart_dir / "values-staging.yaml").read_text()
