"""Cache and run-time folders: XDG rules, overrides, and caches made under the former name."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from ci import paths


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for name in ("CI_CACHE", "CI_RUN_DIR", "XDG_CACHE_HOME", "XDG_RUNTIME_DIR"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    return tmp_path


def test_cache_follows_xdg_cache_home(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert paths.cache_home() == home / ".cache" / "ci-delivery-steps"
    monkeypatch.setenv("XDG_CACHE_HOME", str(home / "xdg"))
    assert paths.cache_home() == home / "xdg" / "ci-delivery-steps"
    monkeypatch.setenv("XDG_CACHE_HOME", "relative/ignored")  # the spec says: ignore it
    assert paths.cache_home() == home / ".cache" / "ci-delivery-steps"


def test_ci_cache_overrides_everything(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (home / ".cache" / "schedule-ci").mkdir(parents=True)
    monkeypatch.setenv("CI_CACHE", str(home / "elsewhere"))
    assert paths.cache_home() == home / "elsewhere"


def test_a_cache_made_under_the_former_name_stays_in_use(home: Path) -> None:
    legacy = home / ".cache" / "schedule-ci"
    legacy.mkdir(parents=True)
    assert paths.cache_home() == legacy
    (home / ".cache" / "ci-delivery-steps").mkdir()
    assert paths.cache_home() == home / ".cache" / "ci-delivery-steps"


def test_run_dir_for_a_user_is_the_runtime_dir(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    assert paths.run_dir() == home / ".local" / "state" / "ci-delivery-steps"
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(home / "run"))
    assert paths.run_dir() == home / "run" / "ci-delivery-steps"
    monkeypatch.setenv("CI_RUN_DIR", str(home / "sockets"))
    assert paths.run_dir() == home / "sockets"


def test_run_dir_for_root_is_under_run(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    monkeypatch.setattr(paths, "RUN_ROOT", home / "run")
    assert paths.run_dir() == home / "run" / "ci-delivery-steps"
    (home / "run" / "schedule-ci").mkdir(parents=True)  # a daemon started before the rename
    assert paths.run_dir() == home / "run" / "schedule-ci"
