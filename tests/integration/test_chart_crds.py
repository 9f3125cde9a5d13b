"""HTTPRoute, ServiceMonitor, PodMonitor and PrometheusRule against the upstream CRDs.

The schemas come from the pinned Gateway API and prometheus-operator modules (``make tools``
converts them); objects the API server would refuse fail ``chart.validate_env`` naming the
object, and the chart's own objects pass, with the real Helm 4. The cached schemas also work
with the real ``kubeconform -strict``.
"""

from __future__ import annotations

import dataclasses
import shutil
import subprocess
from pathlib import Path

import pytest

from ci import chart, config, helm, tools, validate
from ci.config import Config
from ci.errors import CiError, ToolError
from ci.manifests import Finding
from ci.tools import crds

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
CHART = "schedule-app"
GATEWAY = ["gateway.enabled=true", "gateway.parentRefs[0].name=public"]


@pytest.fixture(scope="module")
def helm4() -> helm.Helm:
    try:
        return helm.find(4)
    except CiError as exc:
        pytest.fail(f"Helm 4 is needed: {exc} (run `make tools`)")


@pytest.fixture(scope="module")
def crd_sets() -> dict[str, Path]:
    """The converted upstream CRD sets; missing ones fail with the fix, never a skip."""
    found = {}
    for spec in tools.CRDS.values():
        try:
            found[spec.name] = crds.require(spec)
        except ToolError as exc:
            pytest.fail(str(exc))
    return found


@pytest.fixture(scope="module")
def cfg(crd_sets: dict[str, Path]) -> Config:
    return config.load(ROOT / "ci.yaml")


@pytest.fixture
def chart_copy(cfg: Config, tmp_path: Path) -> Config:
    """A configuration pointing at a copy of the chart, to add templates to."""
    target = tmp_path / CHART
    shutil.copytree(cfg.chart.path, target)
    envs = {
        name: dataclasses.replace(env, values=tuple(target / p.name for p in env.values))
        for name, env in cfg.environments.items()
    }
    chart_cfg = dataclasses.replace(cfg.chart, path=target)
    return dataclasses.replace(cfg, root=tmp_path, chart=chart_cfg, environments=envs)


def findings_with(
    cfg: Config, helm4: helm.Helm, text: str, sets: list[str] | None = None
) -> list[Finding]:
    """Validation findings of staging with one more template, ``extra.yaml``, holding ``text``."""
    (cfg.chart.path / "templates" / "extra.yaml").write_text(text)
    rendered = chart.render(cfg, helm4, cfg.environment("staging"), sets or [])
    return chart.validate_env(cfg, rendered).findings


def messages(findings: list[Finding]) -> list[str]:
    return sorted(f.message for f in findings)


# ----------------------------------------------------------------------------- HTTPRoute


def test_route_parent_ref_of_the_wrong_type_fails(cfg: Config, helm4: helm.Helm) -> None:
    sets = [*GATEWAY, "gateway.parentRefs[0].port=https"]
    rendered = chart.render(cfg, helm4, cfg.environment("staging"), sets)
    findings = chart.validate_env(cfg, rendered).findings
    assert messages(findings) == [
        'HTTPRoute/schedule-app: spec.parentRefs[0].port: expected integer, got str: "https"'
    ]
    assert findings[0].rule == "K8S001"
    assert findings[0].file == f"charts/{CHART}/templates/httproute.yaml"


def test_route_unknown_field_fails_under_strict(cfg: Config, helm4: helm.Helm) -> None:
    sets = [*GATEWAY, "gateway.parentRefs[0].gatewayName=public"]
    rendered = chart.render(cfg, helm4, cfg.environment("staging"), sets)
    assert messages(chart.validate_env(cfg, rendered).findings) == [
        "HTTPRoute/schedule-app: spec.parentRefs[0]: unknown field 'gatewayName'"
    ]


ROUTE = """apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata:
  name: extra-route
spec:
  parentRefs:
    - {name: public, namespace: gateway-system, sectionName: https, port: 443}
  rules:
    - matches:
        - path: {type: PathPrefix, value: /api}
      filters:
        - type: RequestHeaderModifier
          requestHeaderModifier:
            set: [{name: X-Env, value: staging}]
      timeouts: {request: 10s}
      backendRefs:
        - {name: schedule-app-backend, port: 8080}
"""


def test_route_with_fields_of_the_full_api_passes(chart_copy: Config, helm4: helm.Helm) -> None:
    """filters and timeouts are in Gateway API v1.4 (and were not in the old subset)."""
    assert findings_with(chart_copy, helm4, ROUTE, GATEWAY) == []


def test_route_rule_with_a_wrong_enum_fails(chart_copy: Config, helm4: helm.Helm) -> None:
    text = ROUTE.replace("type: PathPrefix", "type: Prefix")
    found = messages(findings_with(chart_copy, helm4, text))
    assert len(found) == 1, found
    assert found[0].startswith("HTTPRoute/extra-route: spec.rules[0].matches[0].path.type: ")
    assert "'Prefix' is not one of ['Exact', 'PathPrefix', 'RegularExpression']" in found[0]


# ----------------------------------------------------------------------------- monitoring

MONITOR = """apiVersion: monitoring.coreos.com/v1
kind: ServiceMonitor
metadata:
  name: extra-monitor
spec:
  selector:
    matchLabels: {app: extra}
  endpoints:
    - port: metrics
      enableHttp2: false
      honorLabels: true
      scrapeTimeout: 5s
"""


def test_service_monitor_of_the_full_api_passes(chart_copy: Config, helm4: helm.Helm) -> None:
    assert findings_with(chart_copy, helm4, MONITOR) == []


def test_service_monitor_wrong_type_and_unknown_field_fail(
    chart_copy: Config, helm4: helm.Helm
) -> None:
    text = MONITOR.replace("honorLabels: true", 'honorLabels: "yes"\n      scrapeEvery: 5s')
    assert messages(findings_with(chart_copy, helm4, text)) == [
        "ServiceMonitor/extra-monitor: spec.endpoints[0].honorLabels: "
        'expected boolean, got str: "yes"',
        "ServiceMonitor/extra-monitor: spec.endpoints[0]: unknown field 'scrapeEvery'",
    ]


def test_pod_monitor_is_checked_too(chart_copy: Config, helm4: helm.Helm) -> None:
    text = (
        "apiVersion: monitoring.coreos.com/v1\nkind: PodMonitor\nmetadata:\n  name: extra-pods\n"
        "spec:\n  selector: {matchLabels: {app: x}}\n  podMetricsEndpoints:\n"
        "    - {port: metrics, intervall: 30s}\n"
    )
    assert messages(findings_with(chart_copy, helm4, text)) == [
        "PodMonitor/extra-pods: spec.podMetricsEndpoints[0]: unknown field 'intervall'"
    ]


RULES = """apiVersion: monitoring.coreos.com/v1
kind: PrometheusRule
metadata:
  name: extra-rules
spec:
  groups:
    - name: extra
      rules:
        - alert: Broken
          for: 5m
          labels: {severity: warning}
"""


def test_prometheus_rule_without_expr_fails(chart_copy: Config, helm4: helm.Helm) -> None:
    findings = findings_with(chart_copy, helm4, RULES)
    assert messages(findings) == [
        "PrometheusRule/extra-rules: spec.groups[0].rules[0]: 'expr' is a required property"
    ]
    assert findings[0].file == f"{CHART}/templates/extra.yaml"


def test_prometheus_rule_with_expr_passes(chart_copy: Config, helm4: helm.Helm) -> None:
    text = RULES.replace("for: 5m", "expr: up == 0\n          for: 5m")
    assert findings_with(chart_copy, helm4, text) == []


# ----------------------------------------------------------------------------- the chart


def test_check_is_clean_with_gateway_and_monitoring(
    cfg: Config, helm4: helm.Helm, tmp_path: Path
) -> None:
    """staging and prod with their ServiceMonitors and PrometheusRule, plus an HTTPRoute."""
    extra = tmp_path / "values-gateway.yaml"
    extra.write_text(
        "---\ngateway:\n  enabled: true\n  parentRefs:\n"
        "    - name: public\n      namespace: gateway-system\n"
        "metrics:\n  serviceMonitor:\n    enabled: true\n  prometheusRule:\n    enabled: true\n"
    )
    envs = [
        dataclasses.replace(cfg.environment(name), values=(*cfg.environment(name).values, extra))
        for name in ("staging", "prod")
    ]
    report = chart.check(cfg, helm4, envs)
    assert report.findings == []
    for env in envs:
        kinds = {m.kind for m in chart.render(cfg, helm4, env).manifests}
        assert {"HTTPRoute", "ServiceMonitor", "PrometheusRule"} <= kinds, env.name


def test_missing_crd_set_stops_validation_in_one_line(
    cfg: Config, helm4: helm.Helm, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rendered = chart.render(cfg, helm4, cfg.environment("staging"))
    monkeypatch.setenv("CI_TOOLS_CACHE", str(tmp_path / "empty-cache"))
    monkeypatch.setenv("GOMODCACHE", str(tmp_path / "empty-gomod"))
    validate._load_cached.cache_clear()  # validators made by earlier tests hold their schemas
    try:
        with pytest.raises(ToolError) as err:
            chart.validate_env(cfg, rendered)
    finally:
        validate._load_cached.cache_clear()
    assert err.value.message == (
        "schemas of github.com/prometheus-operator/prometheus-operator v0.85.0 "
        "(monitoring.coreos.com CRDs) not found in "
        f"{tmp_path}/empty-cache/monitoring-crds-v0.85.0; "
        "run `make tools` (or `ci tools install monitoring-crds`)"
    )


# ----------------------------------------------------------------------------- kubeconform


def test_cached_schemas_work_with_kubeconform_strict(
    crd_sets: dict[str, Path], tmp_path: Path
) -> None:
    try:
        kubeconform = tools.require("kubeconform").path
    except ToolError as exc:
        pytest.fail(str(exc))
    route = tmp_path / "route.yaml"
    route.write_text(ROUTE)
    bad = tmp_path / "bad.yaml"
    bad.write_text(ROUTE.replace("sectionName: https", "section: https"))
    location = (
        str(crd_sets["gateway-api-crds"])
        + "/{{.Group}}/{{.ResourceKind}}_{{.ResourceAPIVersion}}.json"
    )

    def run(path: Path) -> subprocess.CompletedProcess[str]:
        argv = [str(kubeconform), "-strict", "-summary", "-schema-location", location, str(path)]
        return subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)

    good = run(route)
    assert good.returncode == 0, good.stdout + good.stderr
    assert "Valid: 1" in good.stdout
    failed = run(bad)
    assert failed.returncode == 1, failed.stdout + failed.stderr
    assert "HTTPRoute extra-route is invalid" in failed.stdout
    assert "section" in failed.stdout
