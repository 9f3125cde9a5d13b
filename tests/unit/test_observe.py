"""``ci observe check`` against a local server that answers like Prometheus' HTTP API.

The shipped dashboard's panels and tests/data/observability's PrometheusRule are what is
checked; the fake Prometheus answers ``/api/v1/query`` from a table of series and
``/api/v1/rules`` from a list of groups that tests change, as a live one changes after a scrape.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import parse_qs, urlparse

import pytest
import requests
import yaml
from click.testing import CliRunner

from ci import chart, config, observe
from ci.cli import main
from ci.manifests import Manifest
from ci.observe import objects

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / "tests" / "data" / "observability"
NS = "schedule-staging"


class Prometheus(BaseHTTPRequestHandler):
    state: ClassVar[dict[str, Any]] = {}

    def log_message(self, *_args: Any) -> None:
        return None

    def _send(self, code: int, body: Any) -> None:
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        url = urlparse(self.path)
        query = {k: v[0] for k, v in parse_qs(url.query).items()}
        if url.path == "/api/v1/query":
            self.state["queries"].append(query["query"])
            value = self.state["value"](query["query"])
            result = [] if value is None else [{"metric": {"pod": "b-1"}, "value": [1.0, value]}]
            data = {"resultType": "vector", "result": result}
            self._send(200, {"status": "success", "data": data})
        elif url.path == "/api/v1/rules":
            self.state["rules_asked"] += 1
            groups = self.state["groups"](self.state["rules_asked"])
            self._send(200, {"status": "success", "data": {"groups": groups}})
        else:
            self._send(404, {"status": "error", "errorType": "not_found", "error": "no route"})


@pytest.fixture
def prometheus() -> Iterator[tuple[str, dict[str, Any]]]:
    Prometheus.state = {
        "queries": [],
        "rules_asked": 0,
        "value": lambda _q: "1.5",
        "groups": lambda _n: loaded("ok"),
    }
    srv = ThreadingHTTPServer(("127.0.0.1", 0), Prometheus)
    threading.Thread(target=srv.serve_forever, args=(0.05,), daemon=True).start()
    yield f"http://127.0.0.1:{srv.server_address[1]}", Prometheus.state
    srv.shutdown()
    srv.server_close()


def loaded(health: str, error: str = "", group: str = "schedule-app.rules") -> list[Any]:
    """The good rule file's group as the operator loads it (file NAMESPACE-NAME-UID.yaml)."""
    rules = []
    for name, kind in (
        ("namespace:http_server_requests:rate5m", "recording"),
        ("BackendDown", "alerting"),
        ("HighErrorRatio", "alerting"),
    ):
        rule = {"name": name, "type": kind, "health": health, "lastError": error}
        rules.append(rule | {"lastEvaluation": "2026-12-02T06:00:00Z"})
    file = f"/etc/prometheus/rules/prometheus-local-rulefiles-0/{NS}-schedule-app-8f2c.yaml"
    return [{"name": group, "file": file, "rules": rules}]


def manifests() -> list[Manifest]:
    board = (ROOT / "charts/schedule-app/dashboards/schedule-app.json").read_text()
    dash = {"kind": "ConfigMap", "metadata": {"name": "d"}, "data": {"schedule-app.json": board}}
    rule = yaml.safe_load((DATA / "rules-good.yaml").read_text())
    return [
        Manifest("schedule-app/templates/grafana-dashboard.yaml", dash),
        Manifest("schedule-app/templates/prometheusrule.yaml", rule),
    ]


def run(url: str, **kw: Any) -> observe.ObserveResult:
    session = requests.Session()
    api = observe.Api("prometheus", url, session)
    objs = manifests()
    return observe.check(
        api,
        "staging",
        NS,
        panels=objects.panels(objs),
        rules=objects.rule_sets(objs),
        variables=kw.pop("variables", {}),
        deadline=kw.pop("deadline", 0.5),
        interval=0.05,
        **kw,
    )


def test_every_panel_with_data_and_every_rule_loaded_passes(
    prometheus: tuple[str, dict[str, Any]],
) -> None:
    url, state = prometheus
    result = run(url)
    assert result.passed, [(p.name, p.reason) for p in result.failed]
    kinds = [p.kind for p in result.probes]
    assert kinds.count("panel") == 27  # one probe per query; some panels have several
    assert kinds.count("rule") == 3
    # the dashboard's $namespace is the environment's namespace
    assert all(f'namespace="{NS}"' in q for q in state["queries"])
    assert all(p.attempts == 1 for p in result.probes)
    rule = next(p for p in result.probes if p.name.endswith("/BackendDown"))
    assert rule.name == "schedule-app/schedule-app.rules/BackendDown"
    assert rule.reason.startswith("loaded from /etc/prometheus/rules/")


def test_a_panel_without_data_fails_with_its_query(
    prometheus: tuple[str, dict[str, Any]],
) -> None:
    url, state = prometheus
    state["value"] = lambda q: None if "hikaricp" in q else ("NaN" if "histogram" in q else "2")
    result = run(url, variables={"namespace": "other"}, deadline=1.5)
    failed = {p.name: p for p in result.failed}
    assert set(failed) == {
        "dashboard 'Schedule Tracker', panel 'Hikari connections'",
        "dashboard 'Schedule Tracker', panel 'Latency p50 / p95 / p99'",
        "dashboard 'Schedule Tracker', panel 'p95 latency by endpoint'",
    }
    empty = failed["dashboard 'Schedule Tracker', panel 'Hikari connections'"]
    assert empty.reason == "no data: the query returned no sample"
    assert empty.attempts > 1  # asked again until the deadline
    assert 'namespace="other"' in empty.query  # --var wins over the environment's namespace
    nan = failed["dashboard 'Schedule Tracker', panel 'p95 latency by endpoint'"]
    assert nan.reason == "no data: every sample is NaN"
    with pytest.raises(observe.ObserveError) as caught:
        result.raise_if_failed()
    assert "Hikari connections" in caught.value.message
    assert "query: sum by (pod) (hikaricp_connections_active" in (caught.value.detail or "")


def test_rules_not_loaded_or_failing_are_reported(
    prometheus: tuple[str, dict[str, Any]],
) -> None:
    url, state = prometheus
    state["groups"] = lambda _n: loaded("ok", group="another-group")
    missing = run(url, deadline=0)
    assert {p.reason for p in missing.failed} == {"rule group not loaded by Prometheus"}
    state["groups"] = lambda _n: loaded("err", error="many-to-many matching not allowed")
    broken = run(url, deadline=0)
    assert len(broken.failed) == 3
    assert broken.failed[0].reason == "evaluation error: many-to-many matching not allowed"


def test_rules_not_evaluated_yet_are_asked_again(prometheus: tuple[str, dict[str, Any]]) -> None:
    url, state = prometheus
    state["groups"] = lambda n: loaded("unknown" if n < 3 else "ok")
    lines: list[str] = []
    result = run(url, deadline=5, on_line=lines.append)
    assert result.passed
    assert state["rules_asked"] == 3
    assert any("not evaluated yet" in line and "retrying" in line for line in lines)


def test_prometheus_errors_fail_every_probe(prometheus: tuple[str, dict[str, Any]]) -> None:
    url, _ = prometheus
    result = run(url + "/nothing-here", deadline=0)
    assert not result.passed
    assert {p.reason for p in result.probes} == {"Prometheus not_found: no route"}


# ----------------------------------------------------------------------------- pure parts


def test_grafana_variables_are_expanded() -> None:
    board = json.loads((DATA / "dashboard.json").read_text())
    queries = objects.dashboard_panels(board, "x/templates/d.yaml")
    assert [p.title for p in queries] == ["Requests per second", "Broken"]  # no Loki panel
    first = objects.expand(queries[0].expr, queries[0].variables)
    assert first == (
        "sum by (pod) (rate(http_server_requests_seconds_count"
        '{namespace="schedule-staging", pod=~".+"}[5m]))'
    )
    second = objects.expand(queries[1].expr, queries[1].variables, {"namespace": "ns"})
    assert 'namespace="ns"' in second


def test_dashboards_come_from_configmaps_only() -> None:
    board = (DATA / "dashboard.json").read_text()
    secret = Manifest("s", {"kind": "Secret", "data": {"d.json": board}})
    not_json = Manifest("c", {"kind": "ConfigMap", "data": {"a": "{oops", "b": "text"}})
    assert objects.panels([secret, not_json]) == []


# ----------------------------------------------------------------------------- the command


def test_cli_writes_observe_json_and_exits_1_on_an_empty_panel(
    prometheus: tuple[str, dict[str, Any]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from ci import helm

    url, state = prometheus
    state["value"] = lambda q: None if "jvm_memory" in q else "1"
    text = (
        (ROOT / "ci.yaml")
        .read_text()
        .replace(
            "    base_url: ${STAGING_URL:-https://staging.schedule.example.com}\n",
            "    base_url: ${STAGING_URL:-https://staging.schedule.example.com}\n"
            f"    observability:\n      prometheus: {{url: {url}}}\n",
        )
    )
    cfg_path = ROOT / f".ci-test-{tmp_path.name}.yaml"
    cfg_path.write_text(text)
    objs = tuple(manifests())
    monkeypatch.setattr(helm, "find", lambda major=None: None)
    monkeypatch.setattr(chart, "render", lambda cfg, h, env: chart.Rendered(env.name, "", objs))
    out = tmp_path / "out"
    try:
        loaded_cfg = config.load(cfg_path)
        assert loaded_cfg.environments["staging"].observability.prometheus.url == url
        res = CliRunner().invoke(
            main,
            [
                *("-c", str(cfg_path), "-o", str(out)),
                *("observe", "check", "--env", "staging", "--deadline", "1s", "--interval", "1s"),
            ],
        )
    finally:
        cfg_path.unlink()
    assert res.exit_code == 1, res.output
    assert (
        "observe check failed in staging: dashboard 'Schedule Tracker', panel 'Heap used and"
        in (res.output)
    )
    saved = json.loads((out / "observe.json").read_text())
    assert saved["result"] == "failed"
    assert saved["prometheus"] == url
    assert len(saved["probes"]) == 30


def test_cli_rejects_a_bad_variable() -> None:
    res = CliRunner().invoke(main, ["observe", "check", "--env", "staging", "--var", "novalue"])
    assert res.exit_code == 2
    assert "--var 'novalue': expected NAME=VALUE" in res.output


def test_counter_functions_on_gauges_are_spotted_by_name() -> None:
    from ci.observe import offline

    assert offline.gauge_rates('sum(rate(process_cpu_usage{pod="a"}[5m]))') == [
        ("rate", "process_cpu_usage")
    ]
    assert offline.gauge_rates("increase(jvm_memory_used_bytes[1h]) + irate(x_total[1m])") == [
        ("increase", "jvm_memory_used_bytes")
    ]
    counters = "rate(a_total[5m]) + rate(b_seconds_count[5m]) + rate(c_bucket{le='1'}[5m])"
    assert offline.gauge_rates(counters + " + rate(d_sum[5m])") == []
