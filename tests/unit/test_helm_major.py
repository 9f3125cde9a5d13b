"""Helm 4 is the default major; Helm 3 stays selectable, and ``ci doctor`` warns about its end."""

from __future__ import annotations

import datetime

import pytest
from click.testing import CliRunner

from ci import helm, tools
from ci.cli import main


@pytest.fixture(autouse=True)
def _no_helm_choice(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("CI_HELM", "CI_HELM_MAJOR", "GITHUB_ACTIONS"):
        monkeypatch.delenv(name, raising=False)


def test_helm_4_is_the_default_and_3_is_selectable(monkeypatch: pytest.MonkeyPatch) -> None:
    assert tools.helm_major() == 4
    assert tools.helm_major(3) == 3
    monkeypatch.setenv("CI_HELM_MAJOR", "3")
    assert tools.helm_major() == 3
    assert tools.helm_major(4) == 4  # an explicit --helm-major wins over the environment


def test_only_helm_3_gets_a_support_warning() -> None:
    before = datetime.date(2026, 12, 1)
    assert helm.support_warning(4, before) is None
    warning = helm.support_warning(3, before)
    assert warning is not None
    assert "security support ends on 2027-02-10" in warning
    after = helm.support_warning(3, datetime.date(2027, 2, 11))
    assert after is not None
    assert "ended on 2027-02-10" in after


def test_doctor_warns_when_helm_3_is_selected(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tools, "doctor", list)  # no tool probing: only the warning matters here
    runner = CliRunner()
    quiet = runner.invoke(main, ["doctor"])
    assert quiet.exit_code == 0, quiet.output
    assert "Helm 3" not in quiet.output
    monkeypatch.setenv("CI_HELM_MAJOR", "3")
    warned = runner.invoke(main, ["doctor"])
    assert warned.exit_code == 0, warned.output
    assert "warning: Helm 3 is selected" in warned.output
    assert "2027-02-10" in warned.output
