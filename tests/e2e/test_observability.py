"""The release `make ci-local` leaves is observable, end to end on the local cluster.

`make ci-local` deploys the `staging` environment of ci.local.yaml (release `schedule-app` in
`schedule-local`) with its ServiceMonitors, its PrometheusRule and every trace sent to the
cluster's collector. These tests take that release as it is, and fail, asking for
`make ci-local`, when it is not there; `make test-e2e` runs them after test_ci_local.py, which
leaves it. What the toolkit checks is run through `ci` itself (smoke, observe check, deploy);
what a test must see for itself it asks Prometheus, Jaeger and VictoriaLogs directly, through
the API server's service proxy as `ci` reaches them.

The broken release is deployed with the images `make ci-local` pushed: the images.json in
E2E_CI_LOCAL_OUT (default .ci-out, where `make ci-local` writes it), verified with
ci.local.yaml's key (CI_VERIFY_KEY when the images were signed elsewhere).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

import pytest

from ci import config, proc, retry
from ci.cluster.base import ClusterInfo
from ci.errors import CiError
from ci.observe.endpoints import Api, Reply, open_api
from ci.observe.live import find_group, loaded_groups
from ci.observe.objects import dashboard_panels, expand
from tests.e2e.conftest import E2E

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
CONFIG = ROOT / "ci.local.yaml"
ENV = "staging"
NAMESPACE = "schedule-local"
RELEASE = "schedule-app"
BACKEND = f"{RELEASE}-backend"
OUT = ROOT / ".ci-out" / "e2e-observability"
CI_LOCAL_OUT = Path(os.environ.get("E2E_CI_LOCAL_OUT") or ROOT / ".ci-out")
DASHBOARDS = ROOT / "charts/schedule-app/dashboards"
#: The chart's ServiceMonitor of each scraped component.
MONITORS = {
    "backend": BACKEND,
    "RabbitMQ": f"{RELEASE}-rabbitmq",
    "PostgreSQL exporter": f"{RELEASE}-postgresql-metrics",
}
#: An OTLP endpoint that never answers: the app still serves HTTP but exports no span.
NOWHERE = "http://nowhere.invalid:4318"
POLL = 2.0
#: From the last backend pod gone to BackendDown pending: service discovery drops the target,
#: its series go stale, the next evaluation sees it (tens of seconds on a busy 2-core node).
ONSET = 90.0

T = TypeVar("T")


# ----------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def local(cluster_info: ClusterInfo) -> E2E:
    """`ci -c ci.local.yaml` on the release `make ci-local` deployed; fails when it is missing."""
    shutil.rmtree(OUT, ignore_errors=True)
    env = {"CI_KUBECONFIG": str(cluster_info.kubeconfig)}
    ctx = E2E(cluster_info, CONFIG, OUT, env, namespace=NAMESPACE, release=RELEASE)
    try:
        last = latest(ctx)
    except CiError as exc:
        pytest.fail(
            f"no release {RELEASE} in {NAMESPACE} ({exc.message}): run `make ci-local` first",
            pytrace=False,
        )
    if last["status"] != "deployed":
        pytest.fail(
            f"release {RELEASE} in {NAMESPACE} is {last['status']} at revision "
            f"{last['revision']}, not deployed: run `make ci-local` first",
            pytrace=False,
        )
    return ctx


@pytest.fixture(scope="module")
def apis(local: E2E) -> dict[str, Api]:
    """Prometheus, Jaeger and the log store as ci.local.yaml's staging reaches them."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("CI_KUBECONFIG", str(local.info.kubeconfig))
        env = config.load(CONFIG).environment(ENV)
    names = ("prometheus", "jaeger", "logs")
    return {name: open_api(name, getattr(env.observability, name), env) for name in names}


@pytest.fixture(scope="module")
def smoke(local: E2E) -> dict[str, Any]:
    """One `ci smoke` run: fresh traffic for the dashboard, and each request's trace id."""
    res = local.ci("smoke", "--env", ENV, "--no-rollback", timeout=600)
    if res.returncode != 0:
        pytest.fail(exited(f"ci smoke --env {ENV}", res))
    return read_json(local.out / "smoke.json")


# ----------------------------------------------------------------------------- helpers


def read_json(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return data


def exited(what: str, res: proc.Result) -> str:
    """A command's exit code and the end of its output, for an assertion message."""
    return f"{what} exited {res.returncode}:\n{proc.tail(res.stdout + res.stderr, 40)}"


def latest(ctx: E2E) -> dict[str, Any]:
    """The newest revision in the release's Helm history."""
    return max(ctx.helm_history(), key=lambda h: int(h["revision"]))


def asked(reply: Reply) -> str:
    """What was asked and what came back, for an assertion message."""
    came = reply.error or f"status {reply.status}"
    return f"{reply.asked} -> {came}\n{reply.text[:500]}"


def answer(api: Api, path: str, params: dict[str, str] | None = None) -> Any:
    """The parsed body of a 200 answer; anything else fails with the request and the reply."""
    reply = api.get(path, params)
    assert reply.status == 200, asked(reply)
    return reply.json()


def within(seconds: float, attempt: Callable[[], T], ok: Callable[[T], bool]) -> T:
    """``attempt`` until ``ok`` or ``seconds`` are over; the last outcome either way."""
    return retry.poll(attempt, ok=ok, until=time.monotonic() + seconds, interval=POLL)


def trace_id_of(smoke: dict[str, Any], check: str) -> str:
    """The trace id `ci smoke` sent with the request of ``check`` (smoke.json)."""
    ids = [c.get("trace_id") for c in smoke["checks"] if c["name"] == check]
    assert ids, f"smoke.json has no check {check!r}"
    assert ids[0], f"smoke.json records no trace id for the check {check!r}"
    return str(ids[0])


def span_table(doc: Any) -> list[dict[str, str]]:
    """Every span of a Jaeger trace answer as its service, operation and tags."""
    rows = []
    for trace in (doc or {}).get("data") or []:
        services = {k: p.get("serviceName", "?") for k, p in (trace.get("processes") or {}).items()}
        for span in trace.get("spans") or []:
            row = {str(t["key"]): str(t["value"]) for t in span.get("tags") or []}
            row["service"] = services.get(span.get("processID"), "?")
            row["operation"] = str(span.get("operationName", ""))
            rows.append(row)
    return rows


def backend_alerts(prom: Api, name: str) -> list[dict[str, Any]]:
    """The alerts ``name`` of this release's backend job (pending or firing).

    The absent_over_time() half of BackendDown (a job never scraped) carries only the job
    label, so an alert of the job with no namespace label is taken for this release's too.
    """
    alerts = answer(prom, "/api/v1/alerts")["data"]["alerts"]
    return [
        a
        for a in alerts
        if a["labels"].get("alertname") == name
        and a["labels"].get("job") == BACKEND
        and a["labels"].get("namespace", NAMESPACE) == NAMESPACE
    ]


def prometheus_time(text: str) -> float:
    """A Prometheus RFC 3339 time (nanoseconds, Z) as a Unix time."""
    trimmed = re.sub(r"(\.\d{6})\d+", r"\1", text).replace("Z", "+00:00")
    return datetime.fromisoformat(trimmed).timestamp()


def shipped_rule(local: E2E, alert: str) -> tuple[str, dict[str, Any]]:
    """The group name and the rule ``alert`` of the release's PrometheusRule, as rendered."""
    obj = local.kjson("get", "prometheusrule", RELEASE, "-n", NAMESPACE)
    for group in obj["spec"]["groups"]:
        for rule in group["rules"]:
            if rule.get("alert") == alert:
                return str(group["name"]), rule
    raise AssertionError(f"PrometheusRule {NAMESPACE}/{RELEASE} has no alert {alert}")


def backend_endpoint(local: E2E) -> str:
    """The OTLP endpoint the live backend ConfigMap gives the backend."""
    cm = local.kjson("get", "configmap", BACKEND, "-n", NAMESPACE)
    return str(cm["data"].get("OTEL_EXPORTER_OTLP_ENDPOINT", ""))


# ----------------------------------------------------------------------------- the tests


def test_prometheus_scrapes_the_release_and_loads_its_rules(
    local: E2E, apis: dict[str, Api]
) -> None:
    prom = apis["prometheus"]

    def targets() -> dict[str, list[dict[str, Any]]]:
        active = answer(prom, "/api/v1/targets", {"state": "active"})["data"]["activeTargets"]
        return {
            what: [
                t for t in active if t["scrapePool"].startswith(f"serviceMonitor/{NAMESPACE}/{sm}/")
            ]
            for what, sm in MONITORS.items()
        }

    def all_up(found: dict[str, list[dict[str, Any]]]) -> bool:
        return all(ts and all(t["health"] == "up" for t in ts) for ts in found.values())

    found = within(90, targets, all_up)
    for what, ts in found.items():
        assert ts, f"Prometheus has no target of the ServiceMonitor {NAMESPACE}/{MONITORS[what]}"
        down = [(t["scrapeUrl"], t["health"], t["lastError"]) for t in ts if t["health"] != "up"]
        assert not down, f"{what} target(s) not up after 90s: {down}"
        assert {t["labels"].get("namespace") for t in ts} == {NAMESPACE}, ts

    shipped = local.kjson("get", "prometheusrule", RELEASE, "-n", NAMESPACE)["spec"]["groups"]
    loaded = loaded_groups(answer(prom, "/api/v1/rules")["data"])
    assert shipped, f"PrometheusRule {NAMESPACE}/{RELEASE} has no group"
    for group in shipped:
        got = find_group(loaded, group["name"], NAMESPACE, RELEASE)
        assert got is not None, f"group {group['name']} is not loaded: {[g.name for g in loaded]}"
        assert f"{NAMESPACE}-{RELEASE}-" in Path(got.file).name, f"{got.name} from {got.file}"
        for rule in group["rules"]:
            name = rule.get("alert") or rule.get("record")
            seen = got.rules.get(name)
            assert seen is not None, f"{name} is not in the loaded group {got.name} ({got.file})"
            assert seen.get("health") in ("ok", "unknown"), f"{name}: {seen}"
            assert not seen.get("lastError"), f"{name}: {seen['lastError']}"


def test_the_smoke_request_trace_is_in_jaeger(smoke: dict[str, Any], apis: dict[str, Api]) -> None:
    """HTTP server, JDBC and RabbitMQ consumer spans of the backend, in the one trace."""
    trace_id = trace_id_of(smoke, "create-schedule")
    jaeger = apis["jaeger"]
    wanted: dict[str, Callable[[dict[str, str]], bool]] = {
        "the backend's HTTP server span of POST /api/schedules": lambda s: (
            s.get("span.kind") == "server"
            and s.get("method") == "POST"
            and s.get("http.url") == "/api/schedules"
        ),
        "a JDBC span inserting the schedule": lambda s: (
            s.get("span.kind") == "client"
            and s.get("jdbc.query[0]", "").startswith("INSERT INTO schedules")
        ),
        "the RabbitMQ consumer span": lambda s: (
            s.get("span.kind") == "consumer" and s.get("peer.service") == "RabbitMQ"
        ),
    }

    def missing(reply: Reply) -> list[str]:
        spans = [s for s in span_table(reply.json()) if s["service"] == BACKEND]
        return [what for what, match in wanted.items() if not any(match(s) for s in spans)]

    reply = within(60, lambda: jaeger.get(f"/api/traces/{trace_id}"), lambda r: not missing(r))
    assert reply.status == 200, asked(reply)
    spans = "\n".join(f"{s['service']}: {s['operation']}" for s in span_table(reply.json()))
    assert not missing(reply), f"trace {trace_id} lacks {missing(reply)}; its spans:\n{spans}"


def test_the_backend_log_line_of_that_trace_is_in_the_log_store(
    smoke: dict[str, Any], apis: dict[str, Api]
) -> None:
    trace_id = trace_id_of(smoke, "create-schedule")
    logs = apis["logs"]
    query = f'_time:30m k8s.namespace.name:"{NAMESPACE}" k8s.container.name:backend "{trace_id}"'
    params = {"query": query, "limit": "50"}

    def lines(reply: Reply) -> list[dict[str, Any]]:
        records = [json.loads(line) for line in reply.text.splitlines() if line.strip()]
        out = []
        for record in records:
            try:
                out.append(json.loads(record.get("_msg", "")))
            except ValueError:
                continue
        return [m for m in out if isinstance(m, dict) and m.get("traceId") == trace_id]

    reply = within(60, lambda: logs.get("/select/logsql/query", params), lambda r: bool(lines(r)))
    assert reply.status == 200, asked(reply)
    found = lines(reply)
    assert found, f"no backend log record carries traceId {trace_id}: {asked(reply)}"
    assert {m["service"]["name"] for m in found} == {BACKEND}, found
    messages = [str(m.get("message")) for m in found]
    assert any("created" in m for m in messages), messages


def backup_ran(local: E2E, prom: Api) -> None:
    """One backup Job of the release's CronJob, run now and complete, and kube-state-metrics
    reporting it: the backup panels read the CronJob's last success and its Jobs' counts.

    Named like the CronJob's own Jobs (``<cronjob>-<number>``), so the backup alerts, which
    select them by that name, see it too; owned by the CronJob (``--from``), so its controller
    records the success in ``status.lastSuccessfulTime``.
    """
    cron = f"{RELEASE}-backup"
    job = f"{cron}-{int(time.time())}"
    local.kubectl("create", "job", job, f"--from=cronjob/{cron}", "-n", NAMESPACE)
    done = local.kubectl(
        "wait", f"job/{job}", "-n", NAMESPACE, "--for=condition=Complete", "--timeout=300s",
        timeout=330, check=False,
    )  # fmt: skip
    assert done.returncode == 0, (
        exited(f"kubectl wait job/{job} complete", done)
        + "\n"
        + (local.kubectl("logs", f"job/{job}", "-n", NAMESPACE, check=False).stdout[-2000:])
    )
    query = f'kube_cronjob_status_last_successful_time{{namespace="{NAMESPACE}", cronjob="{cron}"}}'

    def last_success() -> list[Any]:
        return list(answer(prom, "/api/v1/query", {"query": query})["data"]["result"])

    seen = within(180, last_success, bool)
    assert seen, f"Prometheus has no {query} 180s after {job} completed" + (
        kube_state_metrics_note(prom, [{"query": query}])
    )


def kube_state_metrics_note(prom: Api, failed: list[dict[str, Any]]) -> str:
    """Why panels on kube-state-metrics series have no data, when this Prometheus has none."""
    if not any("kube_" in p["query"] for p in failed):
        return ""
    result = answer(prom, "/api/v1/query", {"query": 'count({__name__=~"kube_.+"})'})
    if result["data"]["result"]:
        return ""
    return "\n(this Prometheus has no kube_* series: kube-state-metrics is not installed)"


def test_every_dashboard_panel_returns_data(
    local: E2E, apis: dict[str, Api], smoke: dict[str, Any]
) -> None:
    """`ci observe check` asks about every panel of the shipped dashboard, and each has data.

    Smoke traffic first, twice more: a request counter's series starts at its first request,
    which rate() cannot count, so one run on a fresh pod leaves the latency panels at NaN. And
    one backup, for the backup panels.
    """
    backup_ran(local, apis["prometheus"])
    for _ in range(2):
        again = local.ci("smoke", "--env", ENV, "--no-rollback", timeout=600)
        assert again.returncode == 0, exited(f"ci smoke --env {ENV}", again)
    res = local.ci("observe", "check", "--env", ENV, timeout=600)
    report = read_json(local.out / "observe.json")
    probed = [(p["name"], p["query"]) for p in report["probes"] if p["kind"] == "panel"]
    shipped = [
        (p.ref, expand(p.expr, p.variables, {"namespace": NAMESPACE}))
        for path in sorted(DASHBOARDS.glob("*.json"))
        for p in dashboard_panels(read_json(path), str(path))
    ]
    assert shipped, f"no panel query in {DASHBOARDS}"
    unasked = [name for name, query in shipped if (name, query) not in probed]
    assert not unasked, (
        f"ci observe check --env {ENV} exited {res.returncode} having asked about "
        f"{len(shipped) - len(unasked)} of the {len(shipped)} panel queries of {DASHBOARDS} "
        f"(is the dashboard ConfigMap rendered for {ENV}?); not asked: {sorted(set(unasked))}"
    )
    failed = [p for p in report["probes"] if p["status"] != "passed"]
    lines = [f"{p['name']}: {p['reason']}\n  {p['query']}" for p in failed]
    assert res.returncode == 0, (
        f"ci observe check --env {ENV} exited {res.returncode}, {len(failed)} of "
        f"{len(report['probes'])} probes failed:\n"
        + "\n".join(lines)
        + kube_state_metrics_note(apis["prometheus"], failed)
    )


def backend_down_timing(local: E2E, prom: Api) -> tuple[int, float]:
    """BackendDown's ``for:`` as rendered (and as Prometheus loaded it) and its group's
    evaluation interval, in seconds."""
    group_name, rule = shipped_rule(local, "BackendDown")
    for_s = config.seconds(str(rule["for"]))
    rules = answer(prom, "/api/v1/rules")["data"]
    group = find_group(loaded_groups(rules), group_name, NAMESPACE, RELEASE)
    assert group is not None, f"group {group_name} is not loaded by Prometheus"
    loaded = group.rules["BackendDown"]
    assert loaded.get("duration") == for_s, f"rendered for: {rule['for']}, loaded: {loaded}"
    same = [g for g in rules["groups"] if (g["name"], g["file"]) == (group.name, group.file)]
    return for_s, float(same[0]["interval"])


@contextmanager
def backend_scaled_to_zero(local: E2E) -> Iterator[float]:
    """The backend Deployment at zero replicas until the block ends, then back and ready.

    Yields when its last pod is gone. With zero replicas the HPA stops scaling it.
    """
    deployment = local.kjson("get", "deployment", BACKEND, "-n", NAMESPACE)
    spec = deployment["spec"]
    replicas = int(spec.get("replicas", 1))
    grace = int(spec["template"]["spec"].get("terminationGracePeriodSeconds", 30))
    selector = ",".join(f"{k}={v}" for k, v in spec["selector"]["matchLabels"].items())

    def pods() -> list[Any]:
        items: list[Any] = local.kjson("get", "pods", "-n", NAMESPACE, "-l", selector)["items"]
        return items

    try:
        local.kubectl("scale", f"deployment/{BACKEND}", "-n", NAMESPACE, "--replicas=0")
        left = within(grace + 30, pods, lambda p: not p)
        assert not left, f"backend pods still there {grace + 30}s after the scale to 0"
        yield time.time()
    finally:
        local.kubectl("scale", f"deployment/{BACKEND}", "-n", NAMESPACE, f"--replicas={replicas}")
        local.kubectl(
            "rollout", "status", f"deployment/{BACKEND}", "-n", NAMESPACE, "--timeout=300s",
            timeout=330,
        )  # fmt: skip


def test_backend_down_fires_within_its_window_and_resolves(
    local: E2E, apis: dict[str, Api]
) -> None:
    """Scaled to zero, the backend raises BackendDown within `for:` plus one evaluation of
    the moment its condition holds (Prometheus' activeAt), and it resolves once back."""
    prom = apis["prometheus"]
    for_s, interval = backend_down_timing(local, prom)
    quiet = within(90, lambda: backend_alerts(prom, "BackendDown"), lambda a: not a)
    assert not quiet, f"BackendDown is already active before the scale: {quiet}"

    with backend_scaled_to_zero(local) as gone:
        pending = within(ONSET, lambda: backend_alerts(prom, "BackendDown"), bool)
        assert pending, f"BackendDown not even pending {ONSET:g}s after the last backend pod went"
        labels = pending[0]["labels"]
        assert labels.get("namespace") == NAMESPACE, (
            f"BackendDown of a job scraped until now lost its namespace label: {labels}"
        )
        active = prometheus_time(pending[0]["activeAt"])
        assert active >= gone - ONSET, f"BackendDown was active before the scale: {pending[0]}"

        def firing() -> list[dict[str, Any]]:
            alerts = backend_alerts(prom, "BackendDown")
            return [a for a in alerts if a["labels"] == labels and a["state"] == "firing"]

        window = for_s + interval
        fired = within(active + window + POLL + 1 - time.time(), firing, bool)
        seen = time.time()
        assert fired, (
            f"BackendDown {labels} (for {for_s}s, evaluated every {interval:g}s), pending since "
            f"{pending[0]['activeAt']}, not firing {seen - active:.0f}s later: "
            f"{backend_alerts(prom, 'BackendDown')}"
        )

    still = within(interval + 60, lambda: backend_alerts(prom, "BackendDown"), lambda a: not a)
    assert not still, f"BackendDown still active 60s after the backend was ready again: {still}"


def test_a_release_exporting_no_traces_fails_the_trace_check_and_is_rolled_back(
    local: E2E,
) -> None:
    """ci deploy then ci smoke, as the pipeline runs them: the smoke failure right after
    this run's deploy rolls the release back to the revision it replaced."""
    images = CI_LOCAL_OUT / "images.json"
    if not images.is_file():
        pytest.fail(
            f"no {images}: run `make ci-local` first (it writes the images it pushed there)"
        )
    before = latest(local)
    previous = int(before["revision"])
    endpoint = backend_endpoint(local)
    broken = replace(local, out=OUT / "broken")

    res = broken.ci(
        "deploy", "--env", ENV, "--images", str(images), "--set", f"tracing.endpoint={NOWHERE}"
    )
    assert res.returncode == 0, exited(
        f"ci deploy --env {ENV} with tracing.endpoint {NOWHERE}", res
    )
    record = read_json(broken.out / "release.json")
    assert (record["revision"], record["previous_revision"]) == (previous + 1, previous), record
    assert backend_endpoint(local) == NOWHERE

    res = broken.ci("smoke", "--env", ENV)
    assert res.returncode == 1, exited(f"ci smoke --env {ENV} of the broken release", res)
    report = read_json(broken.out / "smoke.json")
    failed = {c["name"]: c for c in report["checks"] if c["status"] != "passed"}
    assert list(failed) == ["create-schedule-traced"], {n: c["reason"] for n, c in failed.items()}
    assert failed["create-schedule-traced"]["type"] == "trace"
    assert report["rollback"] == f"rolled back to revision {previous}", report["rollback"]

    history = sorted(local.helm_history(), key=lambda h: int(h["revision"]))
    by_revision = {int(h["revision"]): h for h in history}
    assert by_revision[previous + 1]["status"] == "superseded", history[-3:]
    last = history[-1]
    assert int(last["revision"]) == previous + 2, history[-3:]
    assert last["status"] == "deployed", last
    assert str(last["description"]).startswith(f"Rollback to {previous}"), last
    assert backend_endpoint(local) == endpoint

    after = replace(local, out=OUT / "after")
    res = after.ci("smoke", "--env", ENV, "--no-rollback", timeout=600)
    assert res.returncode == 0, exited(f"ci smoke --env {ENV} after the rollback", res)
