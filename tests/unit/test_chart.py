"""The chart step's own logic without Helm: lint output, values lines, findings, files written."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ci import chart, config
from ci.config import Config
from ci.errors import ConfigError
from ci.manifests import ERROR, WARNING, Finding, Issue, Manifest, parse_manifests

CONFIG = """\
version: 1
registry: {host: 127.0.0.1:5000}
images:
  - {name: web, dockerfile: web.Dockerfile, context: .}
chart:
  path: charts/app
environments:
  staging: {namespace: app-staging, values: [charts/app/values-staging.yaml]}
  prod: {namespace: app-prod, values: [charts/app/values-staging.yaml, values-prod.yaml]}
"""

VALUES = """\
web:
  replicas: 1
  image:
    tag: "1.0"
"""

TEMPLATE = """\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: {{ .Release.Name }}-web
spec:
  replicas: {{ .Values.web.replicas }}
  template:
    spec:
      containers:
        - name: web
          image: web
"""


@pytest.fixture
def cfg(tmp_path: Path) -> Config:
    chart_dir = tmp_path / "charts" / "app"
    (chart_dir / "templates").mkdir(parents=True)
    (chart_dir / "Chart.yaml").write_text("apiVersion: v2\nname: app\nversion: 0.1.0\n")
    (chart_dir / "values.yaml").write_text(VALUES)
    (chart_dir / "values-staging.yaml").write_text("web:\n  replicas: 2\n")
    (chart_dir / "templates" / "web.yaml").write_text(TEMPLATE)
    (tmp_path / "values-prod.yaml").write_text("web:\n  image:\n    tag: x\n")
    (tmp_path / "web.Dockerfile").write_text("FROM scratch\n")
    (tmp_path / "ci.yaml").write_text(CONFIG)
    return config.load(tmp_path / "ci.yaml")


def manifest(kind: str = "Deployment", name: str = "app-web") -> Manifest:
    obj = {"apiVersion": "apps/v1", "kind": kind, "metadata": {"name": name}}
    return Manifest("app/templates/web.yaml", obj)


# ----------------------------------------------------------------------------- environments


def test_select_envs_all_or_the_named_ones(cfg: Config) -> None:
    assert [e.name for e in chart.select_envs(cfg, [])] == ["staging", "prod"]
    assert [e.name for e in chart.select_envs(cfg, ["prod"])] == ["prod"]
    with pytest.raises(ConfigError, match="unknown environment 'qa'"):
        chart.select_envs(cfg, ["qa"])


def test_paths_are_shown_relative_to_the_project(cfg: Config, tmp_path: Path) -> None:
    assert chart.relpath(cfg, cfg.chart.path / "values.yaml") == "charts/app/values.yaml"
    assert chart.relpath(cfg, "/elsewhere/x.yaml") == "/elsewhere/x.yaml"
    assert chart.template_path(cfg, "app/templates/web.yaml") == (
        cfg.chart.path / "templates" / "web.yaml"
    )


def test_values_files_in_order_without_repeats(cfg: Config) -> None:
    files = chart.values_files(cfg, chart.select_envs(cfg, []))
    assert [chart.relpath(cfg, p) for p in files] == [
        "charts/app/values.yaml",
        "charts/app/values-staging.yaml",
        "values-prod.yaml",
    ]


# ----------------------------------------------------------------------------- helm output


LINT = """\
==> Linting charts/app
[INFO] Chart.yaml: icon is recommended
[ERROR] templates/web.yaml: unable to parse YAML
  line two of the message
[WARNING] values.yaml: - at '/web/replicas': got string, want integer
[ERROR] templates/: template: app/templates/x.yaml:3: function "nope" not defined
Error: 1 chart(s) linted, 1 chart(s) failed
"""


def test_parse_lint_makes_one_finding_per_problem(cfg: Config) -> None:
    found = chart.parse_lint(LINT, cfg, "staging")
    assert [(f.rule, f.file, f.env) for f in found] == [
        ("LINT001", "charts/app/templates/web.yaml", "staging"),
        ("LINT001", "charts/app/values.yaml", "staging"),
        ("LINT001", "charts/app/templates/", "staging"),
    ]
    assert found[0].message == "unable to parse YAML line two of the message"
    assert found[1].message == "at '/web/replicas': got string, want integer"
    assert found[2].message.endswith('function "nope" not defined')
    assert chart.parse_lint("==> Linting charts/app\n1 chart(s) linted, 0 failed\n", cfg, "x") == []


def test_a_schema_finding_moves_to_the_last_values_file_setting_the_key(cfg: Config) -> None:
    lint = "[ERROR] values.yaml: - at '/web': allOf failed\n  - at '/web/image/tag': got 1\n"
    (finding,) = chart.parse_lint(lint, cfg, "prod")
    prod = cfg.environment("prod")
    moved = chart._point_at_value(cfg, prod, finding)
    assert (moved.file, moved.line) == ("values-prod.yaml", 3)
    staging = chart._point_at_value(cfg, cfg.environment("staging"), finding)
    assert (staging.file, staging.line) == ("charts/app/values.yaml", 4)
    replicas = Finding("LINT001", "at '/web/replicas': got string", "charts/app")
    assert chart._point_at_value(cfg, prod, replicas).file == "charts/app/values-staging.yaml"
    unknown = Finding("LINT001", "at '/nothing/here': bad", "charts/app")
    assert chart._point_at_value(cfg, prod, unknown) == unknown
    assert chart._point_at_value(cfg, prod, Finding("LINT001", "at '/': bad", "c")).line is None


def test_one_finding_per_values_line() -> None:
    a = Finding("LINT001", "from values.yaml", "v.yaml", 3)
    b = Finding("LINT001", "from templates/", "v.yaml", 3)
    c = Finding("LINT001", "no line", "v.yaml")
    assert chart._dedupe([a, b, c, c, Finding("LINT001", "m", "v.yaml", 4)]) == [
        a,
        c,
        c,
        Finding("LINT001", "m", "v.yaml", 4),
    ]


# ----------------------------------------------------------------------------- yamllint


def test_yamllint_uses_the_chart_settings(cfg: Config) -> None:
    values = cfg.chart.path / "values-staging.yaml"
    values.write_text("web:\n  replicas: 2   \n  replicas: 3\nyes_no: yes\n")
    (cfg.chart.path / ".yamllint.yaml").write_text(
        "extends: default\nrules:\n  document-start: disable\n  truthy: {level: warning}\n"
    )
    found = chart.yamllint(cfg, [values])
    assert [(f.rule, f.line, f.severity) for f in found] == [
        ("LINT002", 2, ERROR),
        ("LINT002", 3, ERROR),
        ("LINT002", 4, WARNING),
    ]
    assert found[0].file == "charts/app/values-staging.yaml"
    assert "(trailing-spaces)" in found[0].message
    assert "(key-duplicates)" in found[1].message


def test_yamllint_defaults_without_chart_settings(cfg: Config) -> None:
    found = chart.yamllint(cfg, [cfg.chart.path / "values.yaml"])
    assert [f.message for f in found] == ['missing document start "---" (document-start)']
    assert found[0].severity == WARNING


def test_yamllint_problems_with_its_inputs_are_config_errors(cfg: Config) -> None:
    with pytest.raises(ConfigError, match="cannot read values file"):
        chart.yamllint(cfg, [cfg.root / "missing.yaml"])
    (cfg.chart.path / ".yamllint.yaml").write_text("rules: {no-such-rule: enable}\n")
    with pytest.raises(ConfigError, match="invalid yamllint configuration"):
        chart.yamllint(cfg, [cfg.chart.path / "values.yaml"])


# ----------------------------------------------------------------------------- findings


def test_locate_finds_the_needle_else_the_kind(cfg: Config) -> None:
    template = cfg.chart.path / "templates" / "web.yaml"
    assert chart.locate(template, "name: web") == 10
    assert chart.locate(template, "nowhere:", "Deployment") == 2
    assert chart.locate(template, None, None) is None
    assert chart.locate(cfg.root / "missing.yaml", "name: web") is None


def test_issues_become_findings_at_the_template_line(cfg: Config) -> None:
    issues = [
        Issue(manifest(), "SEC001", "runs as root", needle="name: web"),
        Issue(manifest("Service", "app"), "K8S002", "no schema", WARNING),
    ]
    assert chart.to_findings(cfg, "staging", issues) == [
        Finding(
            "SEC001",
            "Deployment/app-web: runs as root",
            "charts/app/templates/web.yaml",
            10,
            "staging",
        ),
        Finding(
            "K8S002",
            "Service/app: no schema",
            "charts/app/templates/web.yaml",
            None,
            "staging",
            WARNING,
        ),
    ]


def test_policy_and_validation_of_a_rendering(cfg: Config) -> None:
    text = "---\n# Source: app/templates/web.yaml\n" + TEMPLATE.replace(
        "{{ .Release.Name }}", "app"
    ).replace("{{ .Values.web.replicas }}", '"two"')
    rendered = chart.Rendered("staging", text, parse_manifests(text))
    validated = chart.validate_env(cfg, rendered)
    assert validated.checked == {"staging": 1}
    assert {(f.rule, f.line) for f in validated.findings} >= {("K8S001", 6)}
    assert all(f.file == "charts/app/templates/web.yaml" for f in validated.findings)
    policy = chart.policy_env(cfg, rendered)
    assert {"IMG001", "RES001", "SEC001"} <= {f.rule for f in policy.findings}
    assert policy.checked == {"staging": 1}


def test_report_merges_and_fails_only_on_errors() -> None:
    report = chart.Report([Finding("R", "warn", "f", severity=WARNING)], {"staging": 2}, 1.0)
    assert report.ok
    report.extend(chart.Report([Finding("R", "err", "f")], {"staging": 3, "prod": 1}, 0.5))
    assert not report.ok
    assert [f.message for f in report.errors] == ["err"]
    assert report.checked == {"staging": 5, "prod": 1}
    assert report.seconds == 1.5


def test_findings_are_ordered_by_environment_file_and_line() -> None:
    found = [
        Finding("B", "m", "b.yaml", 1, "staging"),
        Finding("A", "m", "a.yaml", None, "staging"),
        Finding("A", "m", "b.yaml", 2, "prod"),
        Finding("A", "m", "a.yaml", 9, None),
    ]
    ordered = sorted(found, key=chart._order)
    assert [(f.env, f.file, f.line) for f in ordered] == [
        (None, "a.yaml", 9),
        ("prod", "b.yaml", 2),
        ("staging", "a.yaml", None),
        ("staging", "b.yaml", 1),
    ]


def test_findings_json(tmp_path: Path) -> None:
    report = chart.Report(
        [
            Finding("K8S001", "bad", "t.yaml", 3, "prod"),
            Finding("W", "w", "v.yaml", None, None, WARNING),
        ]
    )
    path = tmp_path / "out" / "findings.json"
    chart.write_findings(report, path)
    assert json.loads(path.read_text()) == {
        "ok": False,
        "errors": 1,
        "findings": [
            {
                "rule": "K8S001",
                "message": "bad",
                "file": "t.yaml",
                "line": 3,
                "env": "prod",
                "severity": "error",
            },
            {
                "rule": "W",
                "message": "w",
                "file": "v.yaml",
                "line": None,
                "env": None,
                "severity": "warning",
            },
        ],
    }


# ----------------------------------------------------------------------------- written files


RENDERED = """---
# Source: app/templates/web.yaml
kind: Deployment
metadata: {name: web}
---
# Source: app/templates/svc.yaml
kind: Service
metadata: {name: web}
---
# Source: app/templates/web.yaml
kind: ConfigMap
metadata: {name: web}
"""


def test_write_rendered_as_one_file(tmp_path: Path) -> None:
    rendered = chart.Rendered("staging", RENDERED, parse_manifests(RENDERED))
    target = tmp_path / "out" / "all.yaml"
    assert chart.write_rendered(rendered, target) == [target]
    assert target.read_text() == RENDERED


def test_write_rendered_as_one_file_per_template(tmp_path: Path) -> None:
    rendered = chart.Rendered("staging", RENDERED, parse_manifests(RENDERED))
    written = chart.write_rendered(rendered, tmp_path / "staging")
    assert [p.relative_to(tmp_path) for p in written] == [
        Path("staging/app/templates/web.yaml"),
        Path("staging/app/templates/svc.yaml"),
    ]
    again = parse_manifests(written[0].read_text())
    assert [(m.source, m.ref) for m in again] == [
        ("app/templates/web.yaml", "Deployment/web"),
        ("app/templates/web.yaml", "ConfigMap/web"),
    ]
    bare = chart.Rendered("x", "", (Manifest("app/templates/z.yaml", {"kind": "Secret"}),))
    (z,) = chart.write_rendered(bare, tmp_path / "bare")
    assert parse_manifests(z.read_text())[0].obj == {"kind": "Secret"}
