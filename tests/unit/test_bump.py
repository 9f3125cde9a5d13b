"""Scalar splicing of `ci chart bump`: the value changes in its own quoting, nothing else does."""

from __future__ import annotations

from pathlib import Path

import pytest

from ci import bump
from ci.errors import ConfigError


@pytest.mark.parametrize(
    ("line", "quote", "expected"),
    [
        ("version: 0.1.0\n", False, "version: 1.0.0\n"),
        ("version: 0.1.0\n", True, 'version: "1.0.0"\n'),
        ("version: '0.1.0'  # released\n", False, "version: '1.0.0'  # released\n"),
        ('version: "0.1.0"\n', False, 'version: "1.0.0"\n'),
        ("version: 0.1.0   # keep\n", False, "version: 1.0.0   # keep\n"),
        ("version: 0.1.0\r\n", False, "version: 1.0.0\r\n"),
        ("version: 0.1.0", False, "version: 1.0.0"),
    ],
)
def test_splice_keeps_quotes_comments_and_line_ends(line: str, quote: bool, expected: str) -> None:
    text = "name: c\n" + line
    assert bump._splice(text, 1, len("version: "), "1.0.0", quote) == "name: c\n" + expected


def test_edit_sets_a_nested_scalar_and_reports_the_change() -> None:
    text = "# top\nweb:\n  image:\n    repository: web  # repo\n    tag: '1.0'\nother: 1\n"
    new, change = bump._edit(Path("v.yaml"), text, ("web", "image", "tag"), "2.0")
    assert new == text.replace("'1.0'", "'2.0'")
    assert change == bump.Change("v.yaml", "web.image.tag", "1.0", "2.0")


def test_edit_of_a_missing_key_is_an_error_unless_created() -> None:
    text = "---\nweb:\n  replicas: 2\n"
    with pytest.raises(ConfigError, match=r"web\.image\.tag: key not found"):
        bump._edit(Path("v.yaml"), text, ("web", "image", "tag"), "2.0")
    new, change = bump._edit(
        Path("v.yaml"), text, ("web", "image", "tag"), "2.0", quote=True, create=True
    )
    assert new == '---\nweb:\n  replicas: 2\n  image:\n    tag: "2.0"\n'
    assert change.old is None


def test_edit_through_a_scalar_is_an_error() -> None:
    with pytest.raises(ConfigError, match=r"web\.image\.tag: key not found"):
        bump._edit(Path("v.yaml"), "web: plain\n", ("web", "image", "tag"), "2.0", create=True)
    with pytest.raises(ConfigError, match=r"web\.image: not a mapping"):
        bump._edit(Path("v.yaml"), "web: [a, b]\n", ("web", "image"), "2.0")


def test_has_image_only_for_an_image_block(tmp_path: Path) -> None:
    values = tmp_path / "values.yaml"
    values.write_text("web:\n  image: {repository: web}\nworker:\n  image: worker:1\n")
    assert bump._has_image(values, "web")
    assert not bump._has_image(values, "worker")
    assert not bump._has_image(values, "db")
    assert not bump._has_image(tmp_path / "missing.yaml", "web")


def test_a_failing_edit_writes_no_file(tmp_path: Path) -> None:
    (tmp_path / "Chart.yaml").write_text("name: c\nversion: 0.1.0\n")
    with pytest.raises(ConfigError, match="appVersion: key not found"):
        bump.bump(tmp_path, version="0.2.0", app_version="2.0")
    assert (tmp_path / "Chart.yaml").read_text() == "name: c\nversion: 0.1.0\n"


def test_a_missing_chart_yaml_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        bump.bump(tmp_path, version="1.0.0")


@pytest.mark.parametrize("version", ["1.2.3", "0.0.1-rc.1", "1.0.0+build.5", "10.20.30-a-b"])
def test_semantic_versions_are_accepted(tmp_path: Path, version: str) -> None:
    (tmp_path / "Chart.yaml").write_text("version: 0.1.0\n")
    bump.bump(tmp_path, version=version)
    assert (tmp_path / "Chart.yaml").read_text() == f"version: {version}\n"


@pytest.mark.parametrize("version", ["1.2", "v1.2.3", "01.2.3", "1.2.3-", "1.2.3 "])
def test_other_versions_are_refused(tmp_path: Path, version: str) -> None:
    with pytest.raises(ConfigError, match="expected a semantic version"):
        bump.bump(tmp_path, version=version)
