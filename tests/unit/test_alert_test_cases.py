"""OBS002/OBS006's reading of promtool test files: which alerts are tested firing, which quiet.

Pure file reading (no promtool): an alert that always fires passes a test expecting it to
fire, one that never fires passes a test expecting silence, so the check wants both.
"""

from __future__ import annotations

from pathlib import Path

import yaml

from ci.manifests import Manifest
from ci.observe import objects, offline


def rule_set(*alerts: str) -> objects.RuleSet:
    rules = [{"alert": a, "expr": "vector(1)"} for a in alerts]
    obj = {
        "kind": "PrometheusRule",
        "metadata": {"name": "app"},
        "spec": {"groups": [{"name": "g", "rules": rules}]},
    }
    (rs,) = objects.rule_sets([Manifest("app/templates/rules.yaml", obj)])
    return rs


def cases_file(tmp_path: Path, name: str, cases: list[tuple[str, bool]]) -> Path:
    tests = [
        {"alertname": alert, "eval_time": "5m", "exp_alerts": [{"exp_labels": {}}] if fires else []}
        for alert, fires in cases
    ]
    path = tmp_path / name
    path.write_text(yaml.safe_dump({"tests": [{"interval": "1m", "alert_rule_test": tests}]}))
    return path


def test_alerts_need_a_firing_and_a_quiet_case(tmp_path: Path) -> None:
    rs = rule_set("Both", "OnlyFires", "OnlyQuiet", "Untested")
    files = [
        cases_file(tmp_path, "a.yaml", [("Both", True), ("OnlyFires", True)]),
        # cases of one alert may sit in different files
        cases_file(tmp_path, "b.yaml", [("Both", False), ("OnlyQuiet", False)]),
    ]
    assert [(a, missing) for _, a, missing in offline.one_sided([rs], files)] == [
        ("OnlyFires", "quiet"),
        ("OnlyQuiet", "firing"),
    ]
    # an alert without any test is OBS002's alone
    assert [a for _, a in offline.untested([rs], files)] == ["Untested"]


def test_a_file_that_is_no_test_file_counts_for_nothing(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("- not\n- a mapping\n")
    rs = rule_set("A")
    assert offline.one_sided([rs], [bad]) == []
    assert [a for _, a in offline.untested([rs], [bad])] == ["A"]
