"""The metrics, trace and logs smoke checks against local servers that answer like the real APIs.

One server plays the application (it records the ``traceparent`` of each request, and "exports"
a span and a log line for it as an instrumented backend would), another plays Prometheus'
``/api/v1/query``, Jaeger v2's ``/api/traces/{id}``, VictoriaLogs' ``/select/logsql/query`` and
Loki's ``/loki/api/v1/query_range``.
"""

from __future__ import annotations

import functools
import json
import re
import threading
from collections.abc import Iterator
from dataclasses import replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import parse_qs, urlparse

import pytest

from ci import config, release, smoke
from ci.config import Endpoint, SmokeCheck
from ci.config.model import Observability
from ci.errors import ConfigError
from ci.observe import prometheus

ROOT = Path(__file__).resolve().parents[2]


class Handler(BaseHTTPRequestHandler):
    """Both servers: the application's routes and the observability APIs, on one shared state."""

    state: ClassVar[dict[str, Any]] = {}

    def log_message(self, *_args: Any) -> None:
        return None

    def _send(self, code: int, body: Any, ctype: str = "application/json") -> None:
        data = body.encode() if isinstance(body, str) else json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_POST(self) -> None:  # the application: POST /api/schedules
        st = self.state
        length = int(self.headers.get("Content-Length", 0))
        self.rfile.read(length)
        header = self.headers.get("traceparent", "")
        st["traceparents"].append(header)
        match = re.fullmatch(r"00-([0-9a-f]{32})-[0-9a-f]{16}-01", header)
        if match and st["export"]:
            trace_id = match.group(1)
            st["traces"][trace_id] = [
                ("backend", "http post /api/schedules"),
                ("backend", "INSERT scheduledb.schedule"),
            ]
            st["logs"].append({"_msg": "schedule created", "trace_id": trace_id})
        self._send(201, {"id": 7})

    def do_GET(self) -> None:
        url = urlparse(self.path)
        query = {k: v[0] for k, v in parse_qs(url.query).items()}
        proxied = re.match(r"/api/v1/namespaces/([^/]+)/services/([^/]+)/proxy(/.*)", url.path)
        if proxied:  # the API server's service proxy, in front of the same APIs
            self.state["proxied"].append((*proxied.groups()[:2], self.headers["Authorization"]))
            url = url._replace(path=proxied.group(3))
        self.state["asked"].append((url.path, query))
        if url.path == "/api/v1/query":
            self._prometheus(query.get("query", ""))
        elif url.path.startswith("/api/traces/"):
            self._jaeger(url.path.rsplit("/", 1)[1])
        elif url.path == "/select/logsql/query":
            self._victorialogs(query.get("query", ""))
        elif url.path == "/loki/api/v1/query_range":
            self._loki(query.get("query", ""))
        else:
            self._send(404, "404 page not found", "text/plain")

    def _prometheus(self, promql: str) -> None:
        if promql.count("(") != promql.count(")"):
            error = "1:5: parse error: unclosed left parenthesis"
            self._send(400, {"status": "error", "errorType": "bad_data", "error": error})
            return
        series = self.state["series"].get(promql, [])
        result = [{"metric": m, "value": [1700000000.0, v]} for m, v in series]
        self._send(200, {"status": "success", "data": {"resultType": "vector", "result": result}})

    def _jaeger(self, trace_id: str) -> None:
        spans = self.state["traces"].get(trace_id)
        if spans is None:
            self._send(404, {"data": None, "errors": [{"code": 404, "msg": "trace not found"}]})
            return
        services = sorted({s for s, _ in spans})
        pid = {s: f"p{i}" for i, s in enumerate(services)}
        trace = {
            "traceID": trace_id,
            "spans": [
                {
                    "traceID": trace_id,
                    "spanID": f"{i:016x}",
                    "operationName": op,
                    "processID": pid[s],
                }
                for i, (s, op) in enumerate(spans)
            ],
            "processes": {pid[s]: {"serviceName": s, "tags": []} for s in services},
        }
        self._send(200, {"data": [trace], "total": 0, "limit": 0, "offset": 0, "errors": None})

    def _matching(self, text: str) -> list[dict[str, str]]:
        ids = re.findall(r"[0-9a-f]{32}", text)
        return [r for r in self.state["logs"] if not ids or r.get("trace_id") in ids]

    def _victorialogs(self, logsql: str) -> None:
        lines = "".join(json.dumps(r) + "\n" for r in self._matching(logsql))
        self._send(200, lines, "application/stream+json")

    def _loki(self, logql: str) -> None:
        values = [["1700000000000000000", json.dumps(r)] for r in self._matching(logql)]
        result = [{"stream": {"app": "backend"}, "values": values}] if values else []
        self._send(200, {"status": "success", "data": {"resultType": "streams", "result": result}})


@pytest.fixture
def server() -> Iterator[tuple[str, dict[str, Any]]]:
    Handler.state = {
        "traceparents": [],
        "traces": {},
        "logs": [],
        "series": {},
        "asked": [],
        "export": True,
        "proxied": [],
    }
    srv = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=srv.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{srv.server_address[1]}", Handler.state
    srv.shutdown()
    srv.server_close()


def check(name: str, type: str, **over: Any) -> SmokeCheck:
    return SmokeCheck(name=name, type=type, method="GET", expect_status=200, **over)


CREATE = SmokeCheck(
    name="create-schedule",
    type="http",
    method="POST",
    expect_status=201,
    path="/api/schedules",
    json={"title": "smoke"},
)


@functools.cache
def project_config() -> config.Config:
    return config.load(ROOT / "ci.yaml")


def configured(
    url: str,
    checks: tuple[SmokeCheck, ...],
    kind: str = "victorialogs",
    endpoints: Observability | None = None,
) -> Any:
    """ci.yaml's staging environment, its APIs at ``url``, with ``checks`` and a short deadline."""
    loaded = project_config()
    endpoints = endpoints or Observability(
        prometheus=Endpoint(url=url), jaeger=Endpoint(url=url), logs=Endpoint(url=url, kind=kind)
    )
    env = replace(loaded.environments["staging"], observability=endpoints)
    smoke_cfg = replace(loaded.smoke, checks=checks, deadline=1, interval=0)
    return replace(loaded, smoke=smoke_cfg, environments={**loaded.environments, "staging": env})


def run(url: str, checks: tuple[SmokeCheck, ...], **kw: Any) -> list[smoke.CheckResult]:
    cfg = configured(url, checks, **kw)
    target = smoke.Target(cfg.environments["staging"], url)
    return smoke.Runner(cfg, target, deadline=1.0, interval=0.05).run()


# ----------------------------------------------------------------------------- traceparent


def test_every_http_request_carries_a_fresh_traceparent(
    server: tuple[str, dict[str, Any]],
) -> None:
    url, state = server
    results = run(url, (CREATE, replace(CREATE, name="again")))
    first, second = state["traceparents"]
    assert second.split("-")[1] == results[1].trace_id
    assert re.fullmatch(r"00-[0-9a-f]{32}-[0-9a-f]{16}-01", first)
    assert first.split("-")[1] == results[0].trace_id
    assert results[0].trace_id != results[1].trace_id


# ----------------------------------------------------------------------------- metrics


def test_metrics_check_passes_when_every_sample_is_within_bounds(
    server: tuple[str, dict[str, Any]],
) -> None:
    url, state = server
    state["series"]['up{job="backend"}'] = [({"__name__": "up", "job": "backend"}, "1")]
    (result,) = run(url, (check("up", "metrics", query='up{job="backend"}', min=1),))
    assert (result.status, result.attempts) == ("passed", 1)
    assert state["asked"][0] == ("/api/v1/query", {"query": 'up{job="backend"}'})
    assert result.body == 'up{job="backend"} 1'


def test_queries_name_the_environment(server: tuple[str, dict[str, Any]]) -> None:
    url, state = server
    query = 'up{namespace="{namespace}", job="{release}-backend"}'
    state["series"]['up{namespace="schedule-staging", job="schedule-app-backend"}'] = [({}, "1")]
    (result,) = run(url, (check("up", "metrics", query=query),))
    assert result.status == "passed", result.failure_text()


def test_metrics_check_below_min_reports_the_sample(server: tuple[str, dict[str, Any]]) -> None:
    url, state = server
    state["series"]["up"] = [
        ({"__name__": "up", "pod": "a"}, "1"),
        ({"__name__": "up", "pod": "b"}, "0"),
    ]
    (result,) = run(url, (check("up", "metrics", query="up", min=1),))
    assert result.status == "failed"
    assert result.reason == 'up{pod="b"} 0 is below min 1'
    text = result.failure_text()
    assert f"GET {url}/api/v1/query?query=up" in text
    assert 'up{pod="a"} 1\nup{pod="b"} 0' in text


def test_metrics_check_above_max_and_no_sample(server: tuple[str, dict[str, Any]]) -> None:
    url, state = server
    state["series"]["errors"] = [({}, "0.5")]
    empty, high = run(
        url,
        (
            check("absent", "metrics", query="nothing_here"),
            check("errors", "metrics", query="errors", max=0.1),
        ),
    )
    assert high.reason == "{} 0.5 is above max 0.1"
    assert (empty.status, empty.reason) == ("failed", "query returned no sample")
    assert empty.attempts > 1  # retried until the deadline


def test_metrics_check_reports_prometheus_errors(server: tuple[str, dict[str, Any]]) -> None:
    url, _ = server
    (result,) = run(url, (check("bad", "metrics", query="sum(rate(x[5m])"),))
    assert result.status == "failed"
    assert result.reason == "Prometheus bad_data: 1:5: parse error: unclosed left parenthesis"
    assert result.http_status == 400


# ----------------------------------------------------------------------------- trace


def test_trace_check_finds_the_request_trace_with_expected_spans(
    server: tuple[str, dict[str, Any]],
) -> None:
    url, state = server
    wanted = ({"service": "backend"}, {"operation": "^INSERT "})
    created, traced = run(url, (CREATE, check("trace", "trace", expect_spans=wanted)))
    assert traced.status == "passed", traced.failure_text()
    assert traced.trace_id == created.trace_id
    assert (f"/api/traces/{created.trace_id}", {}) in state["asked"]
    assert "backend: INSERT scheduledb.schedule" in traced.body


def test_trace_check_fails_when_the_app_exports_nothing(
    server: tuple[str, dict[str, Any]],
) -> None:
    url, state = server
    state["export"] = False
    created, traced = run(url, (CREATE, check("trace", "trace")))
    assert traced.status == "failed"
    assert traced.reason == f"trace {created.trace_id} is not in Jaeger (status 404)"
    assert traced.attempts > 1
    assert "trace not found" in traced.failure_text()
    assert f"trace id: {created.trace_id}" in traced.failure_text()


def test_trace_check_names_the_missing_span(server: tuple[str, dict[str, Any]]) -> None:
    url, _ = server
    wanted = ({"service": "backend"}, {"service": "backend", "operation": "rabbitmq|process"})
    _, traced = run(url, (CREATE, check("trace", "trace", expect_spans=wanted)))
    assert traced.status == "failed"
    assert traced.reason.endswith(
        "has 2 span(s), none from service backend with operation ~ /rabbitmq|process/"
    )
    assert "backend: http post /api/schedules" in traced.failure_text()


def test_a_bad_operation_pattern_is_a_failed_check(server: tuple[str, dict[str, Any]]) -> None:
    url, _ = server
    wanted = ({"operation": "([unclosed"},)
    _, traced = run(url, (CREATE, check("trace", "trace", expect_spans=wanted)))
    assert traced.reason.startswith("operation pattern '([unclosed': ")


def test_trace_check_needs_an_earlier_request(server: tuple[str, dict[str, Any]]) -> None:
    url, _ = server
    (alone,) = run(url, (check("trace", "trace"),))
    assert "no HTTP check ran before it" in alone.reason
    _, named = run(url, (CREATE, check("trace", "trace", request="nope")))
    assert named.reason == "no HTTP check named 'nope' ran before it"


# ----------------------------------------------------------------------------- logs


@pytest.mark.parametrize("kind", ["victorialogs", "loki"])
def test_logs_check_finds_the_line_with_the_trace_id(
    server: tuple[str, dict[str, Any]], kind: str
) -> None:
    url, state = server
    query = "trace_id:{trace_id}" if kind == "victorialogs" else '{app="backend"} |= "{trace_id}"'
    logs = check("log-line", "logs", query=query, expect_body="schedule created")
    created, found = run(url, (CREATE, logs), kind=kind)
    assert found.status == "passed", found.failure_text()
    path, params = state["asked"][-1]
    if kind == "victorialogs":
        assert path == "/select/logsql/query"
        assert params["query"] == f"_time:900s trace_id:{created.trace_id}"
    else:
        assert path == "/loki/api/v1/query_range"
        assert params["query"] == f'{{app="backend"}} |= "{created.trace_id}"'
        assert int(params["end"]) - int(params["start"]) == 900 * 10**9
    assert created.trace_id in found.body


@pytest.mark.parametrize("kind", ["victorialogs", "loki"])
def test_logs_check_fails_when_no_record_matches(
    server: tuple[str, dict[str, Any]], kind: str
) -> None:
    url, state = server
    state["export"] = False
    _, missing = run(
        url, (CREATE, check("log-line", "logs", query="trace_id:{trace_id}")), kind=kind
    )
    assert (missing.status, missing.reason) == ("failed", "query matched no log record")
    assert "(no record)" in missing.failure_text()


def test_logs_check_expect_body_must_be_in_a_record(server: tuple[str, dict[str, Any]]) -> None:
    url, _ = server
    logs = check("log-line", "logs", query="trace_id:{trace_id}", expect_body="ERROR")
    _, found = run(url, (CREATE, logs))
    assert found.reason == "no matched record contains 'ERROR'"
    assert "schedule created" in found.body


def test_unreachable_api_is_a_failed_check(server: tuple[str, dict[str, Any]]) -> None:
    url, _ = server
    cfg = configured("http://127.0.0.1:9", (check("up", "metrics", query="up"),))
    target = smoke.Target(cfg.environments["staging"], url)
    (result,) = smoke.Runner(cfg, target, deadline=0).run()
    assert result.status == "failed"
    assert result.reason.startswith("request failed:")
    assert result.url == "GET http://127.0.0.1:9/api/v1/query?query=up"


# ----------------------------------------------------------------------------- pure parts


def test_samples_of_scalar_and_matrix_answers() -> None:
    assert prometheus.samples({"resultType": "scalar", "result": [1.0, "2"]}) == [({}, 2.0)]
    matrix = {
        "resultType": "matrix",
        "result": [{"metric": {"a": "b"}, "values": [[1, "1"], [2, "3"]]}],
    }
    assert prometheus.samples(matrix) == [({"a": "b"}, 3.0)]


def test_service_proxy_through_the_api_server(
    server: tuple[str, dict[str, Any]], tmp_path: Path
) -> None:
    from tests.unit import fake_api

    url, state = server
    state["series"]["up"] = [({"__name__": "up"}, "1")]
    kubeconfig = fake_api.kubeconfig(tmp_path / "kubeconfig", url)
    endpoints = Observability()  # the defaults: the local cluster's Services
    cfg = configured(url, (check("up", "metrics", query="up"),), endpoints=endpoints)
    env = replace(cfg.environments["staging"], kubeconfig=kubeconfig, kubeconfig_env=None)
    (result,) = smoke.Runner(cfg, smoke.Target(env, url), deadline=0).run()
    assert result.status == "passed", result.failure_text()
    assert state["proxied"] == [("monitoring", "prometheus:9090", f"Bearer {fake_api.TOKEN}")]
    base = f"{url}/api/v1/namespaces/monitoring/services/prometheus:9090/proxy"
    assert result.url == f"GET {base}/api/v1/query?query=up"


def test_an_api_that_cannot_be_opened_is_a_failed_check(
    server: tuple[str, dict[str, Any]], tmp_path: Path
) -> None:
    url, _ = server
    cfg = configured(url, (check("up", "metrics", query="up"),), endpoints=Observability())
    env = replace(cfg.environments["staging"], kubeconfig=tmp_path / "missing", kubeconfig_env=None)
    (result,) = smoke.Runner(cfg, smoke.Target(env, url), deadline=0).run()
    assert result.status == "failed"
    assert result.reason.startswith("cannot reach the prometheus API: environment 'staging'")
    assert "not found" in result.reason


def test_service_endpoint_parts() -> None:
    from ci.observe.endpoints import parse_service

    assert parse_service("monitoring/prometheus:9090") == ("monitoring", "prometheus", "9090")
    with pytest.raises(ConfigError):
        parse_service("prometheus:9090")


def test_default_endpoints_are_the_local_cluster_services() -> None:
    env = config.load(ROOT / "ci.yaml").environments["staging"]
    assert env.observability.prometheus.service == "monitoring/prometheus:9090"
    assert env.observability.jaeger.service == "monitoring/jaeger:16686"
    assert (env.observability.logs.service, env.observability.logs.kind) == (
        "monitoring/victorialogs:9428",
        "victorialogs",
    )


# ----------------------------------------------------------------------------- rollback


def test_a_failed_trace_check_right_after_a_deploy_rolls_back(
    server: tuple[str, dict[str, Any]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from ci import deploy
    from ci.smoke import step

    url, state = server
    state["export"] = False
    cfg = configured(url, (CREATE, check("trace", "trace")))
    cfg = replace(cfg, environments={**cfg.environments})
    rolled: list[int] = []
    monkeypatch.setattr(step, "_live_revision", lambda env, helm_major: 6)
    monkeypatch.setattr(deploy, "rollback", lambda c, env, rev, helm_major: rolled.append(rev))
    record = release.ReleaseRecord(
        env="staging",
        namespace="ns",
        release="app",
        revision=6,
        previous_revision=5,
        git_sha="x",
        images=[],
        chart_name="c",
        chart_version="1",
        triggered_by="",
        time="",
        run_id=release.run_id(),
    )
    release.write_release(record, tmp_path)
    monkeypatch.setattr(smoke.Runner, "__init__", _short_runner(smoke.Runner.__init__))
    result = smoke.run(cfg, "staging", tmp_path, base_url=url)
    assert [c.status for c in result.checks] == ["passed", "failed"]
    assert rolled == [5]
    assert result.rollback == "rolled back to revision 5"
    saved = json.loads((tmp_path / "smoke.json").read_text())
    assert saved["checks"][1]["trace_id"] == result.checks[0].trace_id


def _short_runner(init: Any) -> Any:
    def short(self: Any, *args: Any, **kw: Any) -> None:
        init(self, *args, **{**kw, "deadline": 0.3, "interval": 0.05})

    return short
