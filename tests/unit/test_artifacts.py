"""The one JSON artifact writer and reader."""

from __future__ import annotations

from pathlib import Path

import pytest

from ci import artifacts
from ci.errors import ConfigError


def test_write_creates_the_folder_and_round_trips(tmp_path: Path) -> None:
    path = tmp_path / "out" / "nested" / "x.json"
    assert artifacts.write_json(path, {"b": [1, 2], "a": None}) == path
    assert path.read_text(encoding="utf-8") == '{\n  "b": [\n    1,\n    2\n  ],\n  "a": null\n}\n'
    assert artifacts.read_json(path, hint="unused") == {"b": [1, 2], "a": None}
    assert [p.name for p in path.parent.iterdir()] == ["x.json"]


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path: Path) -> None:
    path = artifacts.write_json(tmp_path / "x.json", {"old": True})
    with pytest.raises(TypeError):
        artifacts.write_json(path, {"new": object()})
    assert artifacts.read_json(path, hint="unused") == {"old": True}
    assert [p.name for p in tmp_path.iterdir()] == ["x.json"]


def test_read_names_the_hint_when_missing_and_the_file_when_broken(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"x\.json not found \(run the step first\)"):
        artifacts.read_json(tmp_path / "x.json", hint="run the step first")
    (tmp_path / "x.json").write_text("{broken", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"x\.json: cannot read JSON"):
        artifacts.read_json(tmp_path / "x.json", hint="unused")
