"""The chart's observability files checked offline with the real, pinned promtool.

The rule files, alert unit tests and dashboard in tests/data/observability are good or broken
on purpose; the last tests add them to a copy of the chart and run ``ci chart check``'s step.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import pytest
import yaml

from ci import chart, config, helm, tools
from ci.errors import CiError
from ci.manifests import Finding, Manifest
from ci.observe import objects, offline

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / "tests" / "data" / "observability"


@pytest.fixture(scope="module")
def promtool() -> Path:
    """The pinned promtool; a missing one fails with the command that installs it."""
    try:
        return tools.require("promtool").path
    except CiError as exc:
        pytest.fail(f"promtool is needed: {exc} (run `ci tools install promtool`)")


def manifest(name: str) -> Manifest:
    text = (DATA / name).read_text(encoding="utf-8")
    return Manifest(f"schedule-app/templates/{name}", yaml.safe_load(text), text)


def dashboard_map() -> Manifest:
    board = (DATA / "dashboard.json").read_text(encoding="utf-8")
    obj = {"kind": "ConfigMap", "metadata": {"name": "dash"}, "data": {"d.json": board}}
    return Manifest("schedule-app/templates/dashboard.yaml", obj)


def run(
    promtool: Path, manifests: list[Manifest], tests: str = "alert-tests", chart_dir: Path = DATA
) -> list[Finding]:
    return offline.findings(
        promtool,
        "staging",
        rules=objects.rule_sets(manifests),
        queries=objects.panels(manifests),
        tests=sorted((DATA / tests).glob("*.yaml")),
        where=offline.Where(chart_dir, ROOT),
    )


def test_good_rules_with_passing_unit_tests_have_no_finding(promtool: Path) -> None:
    assert run(promtool, [manifest("rules-good.yaml")]) == []


def test_a_broken_rule_file_fails_promtool_check_rules(promtool: Path) -> None:
    found = run(promtool, [manifest("rules-good.yaml"), manifest("rules-broken.yaml")])
    (broken,) = [f for f in found if f.rule == "OBS001"]
    assert broken.message.startswith("PrometheusRule/schedule-app-broken: promtool check rules:")
    assert "could not parse expression" in broken.message
    assert "unclosed left parenthesis" in broken.message
    assert 'annotation "summary"' in broken.message
    assert broken.env == "staging"
    # the good rule file is still tested; the broken one is not tested for unit tests
    assert [f.rule for f in found] == ["OBS001"]


def test_failing_and_missing_unit_tests(promtool: Path) -> None:
    found = run(promtool, [manifest("rules-good.yaml")], tests="alert-tests-failing")
    by_rule = {f.rule: f for f in found}
    assert set(by_rule) == {"OBS002", "OBS003", "OBS006"}
    assert by_rule["OBS002"].message == (
        "PrometheusRule/schedule-app: alert HighErrorRatio has no unit test in alert-tests/"
    )
    # BackendDown is only ever expected to fire there
    assert by_rule["OBS006"].message == (
        "PrometheusRule/schedule-app: alert BackendDown has no unit test where it stays quiet"
        " (exp_alerts: [])"
    )
    failed = by_rule["OBS003"]
    assert failed.file == "tests/data/observability/alert-tests-failing/backend.yaml"
    assert "alertname: BackendDown, time: 3m" in failed.message


def test_an_answer_is_reused_only_for_the_same_rules_and_test(
    promtool: Path, tmp_path: Path
) -> None:
    """Environments with identical rules run each test file once; changed rules run again."""
    good = objects.rule_sets([manifest("rules-good.yaml")])
    test = tmp_path / "backend.yaml"
    shutil.copy(DATA / "alert-tests" / "backend.yaml", test)
    rules = tmp_path / "rules.yaml"
    assert offline.check_rules(promtool, good, tmp_path) == {}
    shutil.copy(tmp_path / f"{good[0].name}.yaml", rules)
    assert offline.run_tests(promtool, [rules], [test], tmp_path) == {}
    assert offline.run_tests(promtool, [rules], [test], tmp_path) == {}
    rules.write_text(rules.read_text().replace("for: ", "for: 1h # "), encoding="utf-8")
    (problem,) = offline.run_tests(promtool, [rules], [test], tmp_path).values()
    assert "alertname: BackendDown" in problem


def test_queries_are_checked_in_one_promtool_run_each_with_its_own_answer(
    promtool: Path,
) -> None:
    exprs = ["up == 1", "sum(rate(q_total[5m])", 'up{job="x"}[5m]', "sum(rate(q_total[5m])"]
    found = offline.query_problems(promtool, exprs)
    assert found["up == 1"] is None
    assert found['up{job="x"}[5m]'] is None
    assert "unclosed left parenthesis" in str(found["sum(rate(q_total[5m])"])
    assert list(found) == exprs[:3]


def test_dashboard_queries_parse_after_variables_are_filled(promtool: Path) -> None:
    found = run(promtool, [dashboard_map()])
    (broken,) = found
    assert broken.rule == "OBS004"
    assert broken.message.startswith(
        "dashboard 'Observability test', panel 'Broken': query does not parse:"
    )
    assert "unclosed left parenthesis" in broken.message
    # pointed at the dashboard's JSON file, on the line of that query
    assert broken.file == "tests/data/observability/dashboard.json"
    line = (DATA / "dashboard.json").read_text().splitlines()[(broken.line or 0) - 1]
    assert "jvm_gc_pause_seconds_count" in line


def test_the_shipped_dashboard_parses(promtool: Path) -> None:
    board = json.loads((ROOT / "charts/schedule-app/dashboards/schedule-app.json").read_text())
    queries = objects.dashboard_panels(board, "schedule-app/templates/grafana-dashboard.yaml")
    assert queries
    for panel in queries:
        assert offline.query_problem(promtool, objects.expand(panel.expr, panel.variables)) is None


# ----------------------------------------------------------------------------- ci chart check


def chart_copy(tmp_path: Path, rules: str) -> config.Config:
    """The chart with ``rules`` as its PrometheusRule template and the good unit tests, prod
    values only."""
    cfg = config.load(ROOT / "ci.yaml")
    target = tmp_path / "schedule-app"
    shutil.copytree(cfg.chart.path, target)
    # as a template: Helm must print the alerts' own {{ $labels... }} templates as they are
    text = (DATA / rules).read_text(encoding="utf-8").replace("{{", '{{ "{{" }}')
    (target / "templates" / "prometheusrule.yaml").write_text(text, encoding="utf-8")
    # the chart's own rule template and alert tests give way to the ones under test
    shutil.rmtree(target / offline.ALERT_TESTS)
    shutil.copytree(DATA / "alert-tests", target / offline.ALERT_TESTS)
    chart_cfg = dataclasses.replace(cfg.chart, path=target)
    prod = dataclasses.replace(cfg.environments["prod"], values=(target / "values-prod.yaml",))
    return dataclasses.replace(cfg, chart=chart_cfg, root=tmp_path, environments={"prod": prod})


def obs_findings(cfg: config.Config) -> list[Finding]:
    report = chart.check(cfg, helm.find(None), list(cfg.environments.values()))
    assert not [f for f in report.findings if f.rule.startswith("RENDER")], report.findings
    # errors only: the shipped dashboard's own warnings (OBS005) are not what is tested here
    return [f for f in report.errors if f.rule.startswith("OBS")]


def test_chart_check_runs_promtool_on_the_rendered_rules(tmp_path: Path, promtool: Path) -> None:
    good = chart_copy(tmp_path / "good", "rules-good.yaml")
    rendered = chart.render(good, helm.find(None), good.environments["prod"])
    assert [rs.alerts() for rs in objects.rule_sets(rendered.manifests)] == [
        ["BackendDown", "HighErrorRatio"]
    ]
    assert obs_findings(good) == []
    (broken,) = obs_findings(chart_copy(tmp_path / "broken", "rules-broken.yaml"))
    assert broken.rule == "OBS001"
    assert broken.file == "schedule-app/templates/prometheusrule.yaml"
    assert broken.env == "prod"
