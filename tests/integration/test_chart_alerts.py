"""What the chart ships for monitoring, rendered by the real Helm 3 and Helm 4, checked by the
pinned promtool: the ServiceMonitors, the PrometheusRule and its unit tests, the dashboard.

The PrometheusRule's annotations are Prometheus templates inside a Helm template; the tests
read them from Helm's output, so an escaping mistake shows as a missing ``{{ $labels.``.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import tempfile
from pathlib import Path
from typing import Any

import pytest
import yaml

from ci import chart, config, helm, proc, tools
from ci.config import Config
from ci.errors import CiError
from ci.manifests import Finding
from ci.observe import objects, offline

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
ALERTS = [
    "BackendDown",
    "BackendHighErrorRatio",
    "BackendHighLatency",
    "PostgreSQLDown",
    "RabbitMQQueueBacklog",
    "BackupJobFailed",
    "BackupTooOld",
]


@pytest.fixture(scope="module")
def promtool() -> Path:
    try:
        return tools.require("promtool").path
    except CiError as exc:
        pytest.fail(f"promtool is needed: {exc} (run `ci tools install promtool`)")


@pytest.fixture(scope="module")
def cfg() -> Config:
    return config.load(ROOT / "ci.yaml")


def render(cfg: Config, helm_bin: helm.Helm, env: str, *sets: str) -> list[dict[str, Any]]:
    return [m.obj for m in chart.render(cfg, helm_bin, cfg.environment(env), sets).manifests]


def named(objs: list[dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    return {o["metadata"]["name"]: o for o in objs if o["kind"] == kind}


def the_rule(objs: list[dict[str, Any]]) -> dict[str, Any]:
    (rule,) = named(objs, "PrometheusRule").values()
    return rule


def alerts(rule: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {r["alert"]: r for g in rule["spec"]["groups"] for r in g["rules"] if "alert" in r}


# ----------------------------------------------------------------------------- ServiceMonitors


@pytest.mark.parametrize("env", ["staging", "prod"])
def test_service_monitors_scrape_named_ports_of_the_services(
    helm_bin: helm.Helm, cfg: Config, env: str
) -> None:
    objs = render(cfg, helm_bin, env)
    monitors = named(objs, "ServiceMonitor")
    services = named(objs, "Service")
    expected = {
        "schedule-app-backend": ("management", "/actuator/prometheus"),
        "schedule-app-rabbitmq": ("metrics", "/metrics"),
    }
    for name, (port, path) in expected.items():
        monitor = monitors[name]
        # kube-prometheus-stack's serviceMonitorSelector
        assert monitor["metadata"]["labels"]["release"] == "prometheus"
        (endpoint,) = monitor["spec"]["endpoints"]
        assert (endpoint["port"], endpoint["path"], endpoint["interval"]) == (port, path, "30s")
        # the selector picks exactly the component's Service, which has the named port
        selector = monitor["spec"]["selector"]["matchLabels"]
        picked = [
            s for s in services.values() if selector.items() <= s["metadata"]["labels"].items()
        ]
        assert [s["metadata"]["name"] for s in picked] == [name]
        assert port in [p["name"] for p in picked[0]["spec"]["ports"]]


def test_service_monitors_follow_their_switches(helm_bin: helm.Helm, cfg: Config) -> None:
    no_plugin = render(cfg, helm_bin, "prod", "rabbitmq.metrics.enabled=false")
    assert "schedule-app-rabbitmq" not in named(no_plugin, "ServiceMonitor")
    assert "schedule-app-backend" in named(no_plugin, "ServiceMonitor")
    off = render(cfg, helm_bin, "prod", "metrics.serviceMonitor.enabled=false")
    assert [n for n in named(off, "ServiceMonitor") if n != "schedule-app-postgresql"] == []
    timeout = render(cfg, helm_bin, "prod", "metrics.serviceMonitor.scrapeTimeout=5s")
    (endpoint,) = named(timeout, "ServiceMonitor")["schedule-app-backend"]["spec"]["endpoints"]
    assert endpoint["scrapeTimeout"] == "5s"


# ----------------------------------------------------------------------------- PrometheusRule


def test_prometheus_rule_keeps_the_prometheus_templates(helm_bin: helm.Helm, cfg: Config) -> None:
    rule = the_rule(render(cfg, helm_bin, "staging"))
    assert rule["metadata"]["labels"]["release"] == "prometheus"
    found = alerts(rule)
    assert list(found) == ALERTS
    for name, alert in found.items():
        assert alert["labels"]["severity"] in ("critical", "warning"), name
        notes = alert["annotations"]
        assert set(notes) == {"summary", "description", "runbook_url"}, name
        assert notes["runbook_url"].endswith(f"RUNBOOKS.md#{name.lower()}"), name
        assert "{{ $labels." in notes["summary"] + notes["description"], name
    # Prometheus' templates printed as they are, Helm's filled in
    errors = found["BackendHighErrorRatio"]["annotations"]["description"]
    assert errors.startswith(
        "{{ $value | humanizePercentage }} of the requests to {{ $labels.job }}"
    )
    assert errors.endswith("(threshold 0.05).")
    assert found["BackupJobFailed"]["annotations"]["summary"] == (
        "The newest backup Job of schedule-app-backup failed in {{ $labels.namespace }}"
    )
    runbooks = (ROOT / "charts/schedule-app/RUNBOOKS.md").read_text()
    for name in ALERTS:
        assert f"\n## {name}\n" in runbooks


def test_thresholds_and_severities_are_values(helm_bin: helm.Helm, cfg: Config) -> None:
    sets = (
        "metrics.prometheusRule.alerts.backendLatency.p95Seconds=3",
        "metrics.prometheusRule.alerts.backendLatency.for=20m",
        "metrics.prometheusRule.alerts.rabbitmqBacklog.severity=critical",
        "metrics.prometheusRule.alerts.backupTooOld.maxAgeHours=50",
        "metrics.prometheusRule.labels.team=schedules",
    )
    rule = the_rule(render(cfg, helm_bin, "prod", *sets))
    found = alerts(rule)
    assert found["BackendHighLatency"]["expr"].rstrip().endswith("> 3")
    assert found["BackendHighLatency"]["for"] == "20m"
    assert found["RabbitMQQueueBacklog"]["labels"]["severity"] == "critical"
    assert "> 50 * 3600" in found["BackupTooOld"]["expr"]
    assert rule["metadata"]["labels"]["team"] == "schedules"


def test_alerts_follow_the_components(helm_bin: helm.Helm, cfg: Config) -> None:
    sets = ("backup.enabled=false", "postgresql.metrics.enabled=false")
    assert list(alerts(the_rule(render(cfg, helm_bin, "prod", *sets)))) == [
        "BackendDown",
        "BackendHighErrorRatio",
        "BackendHighLatency",
        "RabbitMQQueueBacklog",
    ]
    off = render(cfg, helm_bin, "prod", "metrics.prometheusRule.enabled=false")
    assert named(off, "PrometheusRule") == {}


@pytest.mark.parametrize("env", ["staging", "prod"])
def test_rendered_rules_pass_promtool_and_the_alert_tests(
    helm_bin: helm.Helm, cfg: Config, promtool: Path, env: str
) -> None:
    rendered = chart.render(cfg, helm_bin, cfg.environment(env))
    rules = objects.rule_sets(rendered.manifests)
    tests = offline.test_files(cfg.chart.path)
    assert [rs.alerts() for rs in rules] == [ALERTS]
    names = {"backend.yaml", "datastores.yaml", "backup.yaml", "backup-age.yaml"}
    assert {p.name for p in tests} == names
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        assert offline.check_rules(promtool, rules, work) == {}
        assert offline.untested(rules, tests) == []
        assert offline.one_sided(rules, tests) == []
        files = [work / f"{rs.name}.yaml" for rs in rules]
        assert offline.run_tests(promtool, files, tests, work) == {}


# ----------------------------------------------------------------------------- ci chart check


def prod_copy(tmp_path: Path, cfg: Config) -> Config:
    target = tmp_path / "schedule-app"
    shutil.copytree(cfg.chart.path, target)
    prod = dataclasses.replace(cfg.environments["prod"], values=(target / "values-prod.yaml",))
    chart_cfg = dataclasses.replace(cfg.chart, path=target)
    return dataclasses.replace(cfg, chart=chart_cfg, root=tmp_path, environments={"prod": prod})


def obs_errors(cfg: Config, helm_bin: helm.Helm) -> list[Finding]:
    report = chart.check(cfg, helm_bin, list(cfg.environments.values()))
    return [f for f in report.errors if f.rule.startswith("OBS")]


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, f"{old!r} not in {path}"
    path.write_text(text.replace(old, new))


def test_chart_check_fails_a_broken_alert_test(
    helm_bin: helm.Helm, cfg: Config, promtool: Path, tmp_path: Path
) -> None:
    good = prod_copy(tmp_path / "good", cfg)
    assert obs_errors(good, helm_bin) == []

    broken = prod_copy(tmp_path / "broken", cfg)
    tests = broken.chart.path / offline.ALERT_TESTS
    # a wrong expectation, and the quiet case of another alert removed
    edit(tests / "backend.yaml", "16.67% of the backend's", "50% of the backend's")
    text = (tests / "datastores.yaml").read_text()
    text = text[: text.index("  - name: RabbitMQQueueBacklog stays quiet")]
    pending = (
        "      - eval_time: 10m\n        alertname: RabbitMQQueueBacklog\n        exp_alerts: []\n"
    )
    assert pending in text
    (tests / "datastores.yaml").write_text(text.replace(pending, ""))
    found = {f.rule: f for f in obs_errors(broken, helm_bin)}
    assert set(found) == {"OBS003", "OBS006"}
    assert found["OBS003"].file == "schedule-app/alert-tests/backend.yaml"
    assert "alertname: BackendHighErrorRatio, time: 20m" in found["OBS003"].message
    assert found["OBS006"].message == (
        "PrometheusRule/schedule-app: alert RabbitMQQueueBacklog has no unit test where it"
        " stays quiet (exp_alerts: [])"
    )
    assert found["OBS006"].file == "schedule-app/templates/prometheusrule.yaml"
    assert found["OBS006"].env == "prod"


def test_chart_check_fails_a_changed_threshold_until_the_tests_follow(
    helm_bin: helm.Helm, cfg: Config, promtool: Path, tmp_path: Path
) -> None:
    changed = prod_copy(tmp_path, cfg)
    edit(changed.chart.path / "values.yaml", "messages: 1000\n", "messages: 10000\n")
    (found,) = obs_errors(changed, helm_bin)
    assert found.rule == "OBS003"
    assert found.file == "schedule-app/alert-tests/datastores.yaml"
    assert "alertname: RabbitMQQueueBacklog" in found.message


# ----------------------------------------------------------------------------- the dashboard


def test_dashboard_panels_read_what_the_components_publish(
    helm_bin: helm.Helm, cfg: Config
) -> None:
    maps = named(render(cfg, helm_bin, "prod"), "ConfigMap")
    board = json.loads(maps["schedule-app-dashboard"]["data"]["schedule-app.json"])
    source = ROOT / "charts/schedule-app/dashboards/schedule-app.json"
    assert board == json.loads(source.read_text())
    queries = objects.dashboard_panels(board, "grafana-dashboard.yaml")
    by_title: dict[str, list[str]] = {}
    for panel in queries:
        by_title.setdefault(panel.title, []).append(panel.expr)
    # p95 from the histogram, CPU as the gauge it is, no rate() of any gauge
    (p95,) = [e for e in by_title["Latency p50 / p95 / p99"] if "0.95" in e]
    assert p95.startswith("histogram_quantile(0.95, sum by (le) (rate(")
    assert "http_server_requests_seconds_bucket{" in p95
    assert by_title["CPU usage"] == [
        'max by (pod) (process_cpu_usage{namespace="$namespace", container="backend"})'
    ]
    assert [
        (p.title, offline.gauge_rates(p.expr)) for p in queries if offline.gauge_rates(p.expr)
    ] == []
    text = "\n".join(p.expr for p in queries)
    for metric in (
        "jvm_memory_used_bytes",
        "jvm_gc_pause_seconds_sum",
        "jvm_threads_live_threads",
        "pg_up",
        "pg_stat_database_numbackends",
        "pg_settings_max_connections",
        "pg_database_size_bytes",
        "rabbitmq_queue_messages_ready",
        "rabbitmq_global_messages_received_total",
        "rabbitmq_global_messages_delivered_total",
        "kube_cronjob_status_last_successful_time",
        "kube_job_status_failed",
    ):
        assert f"{metric}{{" in text, metric
    rows = [p["title"] for p in board["panels"] if p["type"] == "row"]
    assert rows == ["HTTP", "JVM", "PostgreSQL", "RabbitMQ", "Backups"]


def test_staging_ships_the_dashboard_production_ships(helm_bin: helm.Helm, cfg: Config) -> None:
    """So `ci observe check --env staging` asks about the panels production will show."""

    def queries(env: str) -> list[tuple[str, str, str]]:
        rendered = chart.render(cfg, helm_bin, cfg.environment(env), ()).manifests
        return [(p.dashboard, p.title, p.expr) for p in objects.panels(rendered)]

    assert queries("prod"), "production ships no dashboard"
    assert queries("staging") == queries("prod")


def test_the_error_ratio_panel_reads_zero_when_no_request_fails(
    promtool: Path, tmp_path: Path
) -> None:
    """A healthy backend answers no 5xx, so there is no 5xx series: the ratio must read 0
    then, not leave the panel empty, and still give the share of errors when there are some."""
    board = json.loads((ROOT / "charts/schedule-app/dashboards/schedule-app.json").read_text())
    panels = objects.dashboard_panels(board, "grafana-dashboard.yaml")
    (panel,) = [p for p in panels if p.title == "5xx error ratio"]
    expr = objects.expand(panel.expr, panel.variables, {"namespace": "ns"})
    series = (
        'http_server_requests_seconds_count{namespace="ns", container="backend", '
        'uri="/api/schedules", status="%s"}'
    )

    def case(counts: dict[str, str], ratio: float) -> dict[str, Any]:
        return {
            "interval": "1m",
            "input_series": [{"series": series % s, "values": v} for s, v in counts.items()],
            "promql_expr_test": [
                {
                    "expr": expr,
                    "eval_time": "10m",
                    "exp_samples": [{"labels": "{}", "value": ratio}],
                }
            ],
        }

    tests = {
        "rule_files": [],
        "tests": [case({"201": "0+60x10"}, 0), case({"201": "0+54x10", "500": "0+6x10"}, 0.1)],
    }
    path = tmp_path / "error-ratio.yaml"
    path.write_text(yaml.safe_dump(tests), encoding="utf-8")
    done = proc.run((str(promtool), "test", "rules", str(path)), timeout=60, check=False)
    assert done.ok, done.stdout + done.stderr


def test_the_backend_publishes_the_request_histogram(helm_bin: helm.Helm, cfg: Config) -> None:
    env = named(render(cfg, helm_bin, "staging"), "ConfigMap")["schedule-app-backend"]["data"]
    assert (
        env["MANAGEMENT_METRICS_DISTRIBUTION_PERCENTILESHISTOGRAM_HTTP_SERVER_REQUESTS"] == "true"
    )


def test_local_values_turn_monitoring_on(helm_bin: helm.Helm) -> None:
    local = config.load(ROOT / "ci.local.yaml")
    objs = render(local, helm_bin, "staging")
    assert set(named(objs, "ServiceMonitor")) >= {"schedule-app-backend", "schedule-app-rabbitmq"}
    assert list(alerts(the_rule(objs))) == ALERTS
    # the image placeholders (@NAME@) are filled by addons.sh; YAML reserves @
    manifest = (ROOT / "hack/cluster/manifests/prometheus.yaml").read_text().replace("@", "")
    (spec,) = [d["spec"] for d in yaml.safe_load_all(manifest) if d and d["kind"] == "Prometheus"]
    # the local Prometheus selects them whatever their labels
    assert spec["serviceMonitorSelector"] == {}
    assert spec["ruleSelector"] == {}
