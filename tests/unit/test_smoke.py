"""Smoke checks: matching rules, variable substitution, retries against a real local HTTP server."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from dataclasses import replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

import pytest
import yaml
from click.testing import CliRunner

from ci import config, release, smoke
from ci.cli import main
from ci.config import SmokeCheck

ROOT = Path(__file__).resolve().parents[2]


def check(**over: Any) -> SmokeCheck:
    base: dict[str, Any] = {"name": "c", "type": "http", "method": "GET", "expect_status": 200}
    base.update(over)
    return SmokeCheck(**base)


# ----------------------------------------------------------------------------- pure logic


def test_substitute() -> None:
    assert smoke.substitute("/api/s/{id}/x", {"id": "42"}) == "/api/s/42/x"
    with pytest.raises(smoke.MissingVariable):
        smoke.substitute("/api/{nope}", {})
    body = smoke.substitute_json({"a": ["{id}", 1], "b": "{id}-x"}, {"id": "7"})
    assert body == {"a": ["7", 1], "b": "7-x"}


@pytest.mark.parametrize(
    ("expected", "actual", "problem"),
    [
        ({"status": "UP"}, {"status": "UP", "groups": ["x"]}, None),
        ({"a": {"b": 1}}, {"a": {"b": 1, "c": 2}}, None),
        ({"status": "UP"}, {"status": "DOWN"}, '$.status: expected "UP", got "DOWN"'),
        ({"status": "UP"}, {}, "$.status: missing"),
        ({"n": 1}, {"n": "1"}, '$.n: expected 1, got "1"'),
        ({"a": [{"id": 2}]}, {"a": [{"id": 1}, {"id": 2, "x": 0}]}, None),
        ({"a": [{"id": 3}]}, {"a": [{"id": 1}]}, '$.a[0]: no item matches {"id": 3}'),
        ({"a": {}}, {"a": []}, "$.a: expected an object, got []"),
    ],
)
def test_json_subset(expected: Any, actual: Any, problem: str | None) -> None:
    assert smoke.json_subset(expected, actual) == problem


def test_extract() -> None:
    data = {"id": 5, "items": [{"k": "v"}]}
    assert smoke.extract(data, "id") == 5
    assert smoke.extract(data, "items.0.k") == "v"
    with pytest.raises(KeyError):
        smoke.extract(data, "items.3.k")


def test_judge_rules() -> None:
    assert smoke.judge(check(), 200, "x").ok
    assert smoke.judge(check(), 503, "x").reason == "status 503, expected 200"
    body_check = check(expect_body='<div id="root">')
    assert smoke.judge(body_check, 200, '<html><div id="root"></div>').ok
    assert "does not contain" in smoke.judge(body_check, 200, "<html>").reason
    json_check = check(expect_json={"status": "UP"})
    assert smoke.judge(json_check, 200, "not json").reason == "response is not JSON"
    saved = smoke.judge(check(expect_status=201, save={"sid": "id"}), 201, '{"id": 9}')
    assert saved.ok
    assert saved.saved == {"sid": "9"}
    missing = smoke.judge(check(save={"sid": "id"}), 200, "{}")
    assert missing.reason == "cannot save sid: no 'id' in the response"


# ----------------------------------------------------------------------------- a real server


class App(BaseHTTPRequestHandler):
    """A tiny schedule API: healthy after ``warmup`` requests; POST creates, GET reads back
    (``confirmed`` only from the second read, like the message round trip)."""

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

    def do_GET(self) -> None:
        st = self.state
        st["hosts"].append(self.headers.get("Host"))
        if self.path == "/":
            self._send(200, '<html><div id="root"></div></html>', "text/html")
        elif self.path == "/api/healthz":
            st["health_calls"] += 1
            up = st["health_calls"] > st["warmup"]
            self._send(200 if up else 503, {"status": "UP" if up else "DOWN"})
        elif self.path.startswith("/api/schedules/"):
            sid = self.path.rsplit("/", 1)[1]
            item = st["items"].get(sid)
            if not item:
                self._send(404, {"error": f"no schedule {sid}"})
                return
            self._send(200, item)
            item["confirmed"] = True  # the message round trip completes a moment later
        else:
            self._send(404, {"error": "not found"})

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length", 0))
        body = json.loads(self.rfile.read(length) or b"{}")
        sid = str(len(self.state["items"]) + 100)
        self.state["items"][sid] = {"id": int(sid), **body, "confirmed": False}
        self._send(201, self.state["items"][sid])


@pytest.fixture
def server() -> Iterator[tuple[str, dict[str, Any]]]:
    App.state = {"health_calls": 0, "warmup": 2, "items": {}, "hosts": []}
    srv = ThreadingHTTPServer(("127.0.0.1", 0), App)
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{srv.server_address[1]}", App.state
    srv.shutdown()
    srv.server_close()


@pytest.fixture
def cfg() -> config.Config:
    """The project's configuration with only HTTP checks and a short deadline."""
    loaded = config.load(ROOT / "ci.yaml")
    checks = tuple(c for c in loaded.smoke.checks if c.type == "http")
    return replace(loaded, smoke=replace(loaded.smoke, checks=checks, deadline=5, interval=0))


def test_runner_retries_until_healthy_and_round_trips(
    cfg: config.Config, server: tuple[str, dict[str, Any]]
) -> None:
    url, state = server
    target = smoke.Target(cfg.environments["staging"], url, host_header="staging.example")
    results = smoke.Runner(cfg, target, interval=0.05).run()
    assert [(r.name, r.status) for r in results] == [
        ("frontend", "passed"),
        ("backend-health", "passed"),
        ("create-schedule", "passed"),
        ("read-schedule", "passed"),
    ]
    health = results[1]
    assert health.attempts == state["warmup"] + 1
    assert results[3].attempts == 2  # not confirmed on the first read
    assert results[3].url == f"GET {url}/api/schedules/100"
    assert set(state["hosts"]) == {"staging.example"}


def test_runner_reports_the_failing_response_after_the_deadline(
    cfg: config.Config, server: tuple[str, dict[str, Any]]
) -> None:
    url, state = server
    state["warmup"] = 10**6
    target = smoke.Target(cfg.environments["staging"], url)
    lines: list[str] = []
    # only the failing check, so that a slow machine spends the deadline on its retries
    checks = tuple(c for c in cfg.smoke.checks if c.name == "backend-health")
    runner = smoke.Runner(cfg, target, deadline=1.0, interval=0.05, on_line=lines.append)
    (health,) = runner.run(checks)
    assert health.status == "failed"
    assert health.attempts > 1
    assert health.http_status == 503
    text = health.failure_text()
    assert "status 503, expected 200" in text
    assert '"status": "DOWN"' in text
    assert any("retrying" in line for line in lines)


def test_helm_test_runs_beside_the_other_checks_and_is_reported_in_its_place(
    cfg: config.Config, server: tuple[str, dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The helm test only finishes once the HTTP check after it has run: side by side."""
    url, _ = server
    http = tuple(c for c in cfg.smoke.checks if c.name in {"frontend", "backend-health"})
    checks = (http[0], check(name="helm-test", type="helm-test"), http[1])
    later_ran = threading.Event()
    target = smoke.Target(cfg.environments["staging"], url)
    runner = smoke.Runner(cfg, target, interval=0.05)
    http_attempt = runner._http

    def helm_test(_result: smoke.CheckResult) -> smoke.Verdict:
        return smoke.Verdict(later_ran.wait(timeout=10), "waited for the HTTP check")

    def http_then_signal(c: SmokeCheck, result: smoke.CheckResult) -> smoke.Verdict:
        verdict = http_attempt(c, result)
        if c.name == "backend-health" and verdict.ok:
            later_ran.set()
        return verdict

    monkeypatch.setattr(runner, "_helm_test", helm_test)
    monkeypatch.setattr(runner, "_http", http_then_signal)
    results = runner.run(checks)
    assert [(r.name, r.status) for r in results] == [
        ("frontend", "passed"),
        ("helm-test", "passed"),
        ("backend-health", "passed"),
    ]


def test_unsaved_variable_fails_the_check(
    cfg: config.Config, server: tuple[str, dict[str, Any]]
) -> None:
    url, _ = server
    target = smoke.Target(cfg.environments["staging"], url)
    only_read = tuple(c for c in cfg.smoke.checks if c.name == "read-schedule")
    (result,) = smoke.Runner(cfg, target).run(only_read)
    assert (result.status, result.reason) == ("failed", "no saved value for {schedule_id}")


def test_unreachable_server_is_a_failed_check(cfg: config.Config) -> None:
    target = smoke.Target(cfg.environments["staging"], "http://127.0.0.1:9")
    (result,) = smoke.Runner(cfg, target, deadline=0).run(cfg.smoke.checks[:1])
    assert result.status == "failed"
    assert result.reason.startswith("request failed:")


# ----------------------------------------------------------------------------- rollback rule


def rec(**over: Any) -> release.ReleaseRecord:
    base: dict[str, Any] = {
        "env": "staging",
        "namespace": "ns",
        "release": "app",
        "revision": 6,
        "previous_revision": 5,
        "git_sha": "x",
        "images": [],
        "chart_name": "c",
        "chart_version": "1",
        "triggered_by": "",
        "time": "",
        "run_id": "local",
    }
    base.update(over)
    return release.ReleaseRecord(**base)


def test_rollback_decision(cfg: config.Config) -> None:
    env = cfg.environments["staging"]
    assert env.rollback_on_smoke_failure
    assert smoke.rollback_decision(rec(), env, current_run="local", live_revision=6) == (5, "")
    cases = {
        "not this run": (rec(run_id="9.1"), 6),
        "already smoke-tested": (rec(smoke={"result": "passed"}), 6),
        "first install": (rec(previous_revision=None), 6),
        "the deploy made no revision (skipped: unchanged": (
            rec(deploy={"action": "skipped", "reason": "unchanged"}),
            6,
        ),
        "live revision is 7": (rec(), 7),
        "no release.json": (rec(env="prod"), 6),
    }
    for why, (record, live) in cases.items():
        revision, reason = smoke.rollback_decision(
            record, env, current_run="local", live_revision=live
        )
        assert revision is None
        assert why in reason
    off = replace(env, rollback_on_smoke_failure=False)
    assert smoke.rollback_decision(rec(), off, current_run="local", live_revision=6)[0] is None


# ----------------------------------------------------------------------------- the command


def write_config(tmp_path: Path, url: str) -> Path:
    """ci.yaml with its HTTP checks only (no helm test, no Prometheus or Jaeger here)."""
    data = yaml.safe_load((ROOT / "ci.yaml").read_text())
    checks = data["smoke"]["checks"]
    data["smoke"] |= {"deadline": "1s", "interval": "1s"}
    data["smoke"]["checks"] = [c for c in checks if c.get("type", "http") == "http"]
    path = ROOT / f".ci-test-{tmp_path.name}.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def test_cli_writes_smoke_json_and_records_release(
    tmp_path: Path, server: tuple[str, dict[str, Any]]
) -> None:
    url, state = server
    state["warmup"] = 0
    cfg_path = write_config(tmp_path, url)
    out = tmp_path / "out"
    release.write_release(rec(previous_revision=None), out)
    try:
        res = CliRunner().invoke(
            main,
            ["-c", str(cfg_path), "-o", str(out), "smoke", "--env", "staging", "--base-url", url],
        )
    finally:
        cfg_path.unlink()
    assert res.exit_code == 0, res.output
    assert "read-schedule" in res.output
    data = json.loads((out / "smoke.json").read_text())
    assert data["result"] == "passed"
    assert [c["status"] for c in data["checks"]] == ["passed"] * 4
    assert release.read_release(out / "release.json").smoke_result == "passed"


def test_cli_failure_exits_1_with_the_response(
    tmp_path: Path, server: tuple[str, dict[str, Any]]
) -> None:
    url, state = server
    state["warmup"] = 10**6
    cfg_path = write_config(tmp_path, url)
    out = tmp_path / "out"
    release.write_release(rec(previous_revision=None), out)
    try:
        res = CliRunner().invoke(
            main,
            ["-c", str(cfg_path), "-o", str(out), "smoke", "--env", "staging", "--base-url", url],
        )
    finally:
        cfg_path.unlink()
    assert res.exit_code == 1
    assert "smoke checks failed in staging: backend-health" in res.output
    assert "first install; nothing to roll back to" in res.output
    assert "response status: 503" in res.output
    assert json.loads((out / "smoke.json").read_text())["result"] == "failed"
    assert release.read_release(out / "release.json").smoke_result == "failed"


HELM_TEST_OK = """NAME: schedule-app
TEST SUITE:     schedule-app-test
Last Started:   Thu Nov 26 18:55:01 2026
Last Completed: Thu Nov 26 18:55:04 2026
Phase:          Succeeded
"""


def test_judge_helm_test() -> None:
    assert smoke.judge_helm_test(0, HELM_TEST_OK).ok
    gone = HELM_TEST_OK + (
        'Error: unable to get pod logs for schedule-app-test: pods "schedule-app-test" not found\n'
    )
    assert smoke.judge_helm_test(1, gone).ok
    failed = HELM_TEST_OK.replace("Succeeded", "Failed") + "Error: 1 error occurred\n"
    verdict = smoke.judge_helm_test(1, failed)
    assert (verdict.ok, verdict.reason) == (False, "helm test exited 1 (test phase Failed)")
    assert not smoke.judge_helm_test(1, "Error: release not found\n").ok


def test_a_check_limited_to_other_environments_does_not_run(
    cfg: config.Config, server: tuple[str, dict[str, Any]]
) -> None:
    url, _ = server
    frontend = next(c for c in cfg.smoke.checks if c.name == "frontend")
    only_prod = replace(frontend, name="prod-only", environments=("prod",))
    target = smoke.Target(cfg.environments["staging"], url)
    results = smoke.Runner(cfg, target).run((frontend, only_prod))
    assert [r.name for r in results] == ["frontend"]
    target = smoke.Target(cfg.environments["prod"], url)
    assert [r.name for r in smoke.Runner(cfg, target).run((only_prod,))] == ["prod-only"]
