"""The chart and `ci chart ...` with the real Helm 3 and Helm 4 binaries.

The chart passes every check for every environment; copies of it broken on purpose (in
tmp_path) make the right check fail with the right rule id, message and file.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from ci import chart, config, helm, validate
from ci.chart import Rendered
from ci.config import Config, Environment
from ci.manifests import Finding, parse_manifests

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
CHART = "schedule-app"


@pytest.fixture(scope="module")
def cfg() -> Config:
    return config.load(ROOT / "ci.yaml")


@dataclasses.dataclass
class ChartCopy:
    """A copy of the chart in tmp_path and a configuration pointing at it."""

    path: Path
    cfg: Config

    def template(self, name: str) -> Path:
        return self.path / "templates" / name

    def edit(self, name: str, old: str, new: str) -> None:
        """Replace text in a template; the text must be there, so a test cannot go stale."""
        file = self.template(name)
        text = file.read_text()
        assert old in text, f"{old!r} not in {file}"
        file.write_text(text.replace(old, new, 1))

    def env(self, name: str = "staging") -> Environment:
        return self.cfg.environment(name)


@pytest.fixture
def copy(cfg: Config, tmp_path: Path) -> ChartCopy:
    target = tmp_path / CHART
    shutil.copytree(cfg.chart.path, target)
    envs = {
        name: dataclasses.replace(env, values=tuple(target / p.name for p in env.values))
        for name, env in cfg.environments.items()
    }
    chart_cfg = dataclasses.replace(cfg.chart, path=target)
    return ChartCopy(
        target, dataclasses.replace(cfg, root=tmp_path, chart=chart_cfg, environments=envs)
    )


def objects(rendered: Rendered, kind: str) -> list[dict[str, Any]]:
    return [m.obj for m in rendered.manifests if m.kind == kind]


def one(rendered: Rendered, kind: str, suffix: str) -> dict[str, Any]:
    found = [o for o in objects(rendered, kind) if o["metadata"]["name"].endswith(suffix)]
    assert len(found) == 1, f"expected one {kind} *{suffix}, got {len(found)}"
    return found[0]


def rules(findings: list[Finding]) -> list[str]:
    return sorted({f.rule for f in findings})


def only(findings: list[Finding], rule: str) -> list[Finding]:
    return [f for f in findings if f.rule == rule]


# ----------------------------------------------------------------------------- the real chart


def test_check_passes_for_every_environment(
    helm_bin: helm.Helm, cfg: Config, tmp_path: Path
) -> None:
    findings_file = tmp_path / "findings.json"
    report = chart.check(
        cfg,
        helm_bin,
        chart.select_envs(cfg, []),
        findings_path=findings_file,
        rendered_dir=tmp_path / "rendered",
    )
    assert report.findings == [], "\n".join(
        f"{f.location}: {f.rule} {f.message}" for f in report.findings
    )
    assert set(report.checked) == {"staging", "prod"}
    assert all(count > 15 for count in report.checked.values())
    data = json.loads(findings_file.read_text())
    assert data == {"ok": True, "errors": 0, "findings": []}
    for env in ("staging", "prod"):
        assert (
            tmp_path / "rendered" / env / CHART / "templates" / "backend-deployment.yaml"
        ).is_file()


def test_every_kind_rendered_has_a_schema(helm_bin: helm.Helm, cfg: Config) -> None:
    """ServiceMonitor (staging/prod) is checked against the upstream CRD, not skipped."""
    rendered = chart.render(cfg, helm_bin, cfg.environment("prod"))
    kinds = {m.kind for m in rendered.manifests}
    assert {"ServiceMonitor", "StatefulSet", "CronJob", "HorizontalPodAutoscaler", "Job"} <= kinds
    assert only(chart.validate_env(cfg, rendered).findings, "K8S002") == []
    schemas = validate.SchemaSet.load(cfg.chart.kubernetes_version, cfg.chart.crds)
    monitor = schemas.validator("monitoring.coreos.com/v1", "ServiceMonitor")
    assert monitor is not None
    assert "scrapeClass" in monitor.schema["properties"]["spec"]["properties"]  # not a subset


def test_backup_cronjob_only_when_enabled(helm_bin: helm.Helm, cfg: Config) -> None:
    defaults = dataclasses.replace(cfg.environment("staging"), values=())
    assert objects(chart.render(cfg, helm_bin, defaults), "CronJob") == []
    rendered = chart.render(cfg, helm_bin, defaults, ["backup.enabled=true", "backup.keep=5"])
    cron = one(rendered, "CronJob", "-backup")
    pod = cron["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["command"] == ["/backup-db.sh"]
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    assert "/backups" in mounts
    volume = next(v for v in pod["volumes"] if v["name"] == mounts["/backups"])
    claim = volume["persistentVolumeClaim"]["claimName"]
    pvc = one(rendered, "PersistentVolumeClaim", "-backup")
    assert pvc["metadata"]["name"] == claim
    # A hook, so `helm --wait` does not wait for a claim that binds on first use, and kept.
    assert pvc["metadata"]["annotations"]["helm.sh/hook"] == "pre-install,pre-upgrade"
    assert pvc["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["BACKUP_DIR"] == "/backups"
    assert env["BACKUP_KEEP"] == "5"
    assert cron["spec"]["successfulJobsHistoryLimit"] == 3
    assert chart.policy_env(cfg, rendered).findings == []


def test_migration_hook_waits_for_the_database(helm_bin: helm.Helm, cfg: Config) -> None:
    rendered = chart.render(cfg, helm_bin, cfg.environment("prod"))
    job = one(rendered, "Job", "-migration")
    notes = job["metadata"]["annotations"]
    assert notes["helm.sh/hook"] == "post-install,pre-upgrade"
    assert notes["helm.sh/hook-delete-policy"] == "before-hook-creation,hook-succeeded"
    pod = job["spec"]["template"]["spec"]
    (init,) = (c for c in pod["initContainers"] if c["name"] == "wait-for-db")
    assert init["command"] == ["/wait-for-db.sh"]
    init_env = {e["name"] for e in init["env"]}
    # the password is a mounted file (PGPASSFILE), never an environment variable
    assert {"PGHOST", "PGPORT", "PGUSER", "PGDATABASE", "PGPASSFILE", "WAIT_TIMEOUT"} <= init_env
    assert pod["containers"][0]["args"] == ["--migrate"]


def test_external_database_migrates_before_install(helm_bin: helm.Helm, cfg: Config) -> None:
    sets = [
        "postgresql.enabled=false",
        "externalDatabase.host=db.example",
        "externalDatabase.password=s3cret",
    ]
    rendered = chart.render(cfg, helm_bin, cfg.environment("staging"), sets)
    assert objects(rendered, "StatefulSet") != []  # RabbitMQ only
    assert all(
        not o["metadata"]["name"].endswith("-postgresql") for o in objects(rendered, "StatefulSet")
    )
    job = one(rendered, "Job", "-migration")
    assert job["metadata"]["annotations"]["helm.sh/hook"] == "pre-install,pre-upgrade"
    secret = one(rendered, "Secret", "-db")
    assert secret["metadata"]["annotations"]["helm.sh/hook"] == "pre-install,pre-upgrade"
    config_map = one(rendered, "ConfigMap", "-backend")
    assert (
        config_map["data"]["SPRING_DATASOURCE_URL"] == "jdbc:postgresql://db.example:5432/schedule"
    )


@pytest.mark.parametrize("tag", ["1234567", "0123456", "5e12345"])
def test_a_tag_of_digits_renders_as_a_string(helm_bin: helm.Helm, cfg: Config, tag: str) -> None:
    """A short SHA can be all digits; passed with ``--set`` Helm makes it a number, which
    the values schema refuses (``got number, want string``)."""
    strings = {"backend.image.tag": tag, "deployInfo.gitSha": tag}
    rendered = chart.render(cfg, helm_bin, cfg.environment("staging"), set_strings=strings)
    (container,) = [
        c
        for c in one(rendered, "Deployment", "-backend")["spec"]["template"]["spec"]["containers"]
        if c["name"] == "backend"
    ]
    assert container["image"].endswith(f":{tag}")


def test_app_release_does_not_restart_the_databases(helm_bin: helm.Helm, cfg: Config) -> None:
    env = cfg.environment("prod")
    before = chart.render(cfg, helm_bin, env)
    after = chart.render(cfg, helm_bin, env, ["backend.image.tag=9.9.9", "deployInfo.gitSha=f00"])
    for suffix in ("-postgresql", "-rabbitmq"):
        old = one(before, "StatefulSet", suffix)["spec"]["template"]
        assert one(after, "StatefulSet", suffix)["spec"]["template"] == old
        assert "app.kubernetes.io/version" not in old["metadata"]["labels"]
    old_backend = one(before, "Deployment", "-backend")["spec"]["template"]
    assert one(after, "Deployment", "-backend")["spec"]["template"] != old_backend


def test_hpa_owns_the_replica_count(helm_bin: helm.Helm, cfg: Config) -> None:
    env = cfg.environment("staging")
    scaled = chart.render(cfg, helm_bin, env)
    assert "replicas" not in one(scaled, "Deployment", "-backend")["spec"]
    assert one(scaled, "HorizontalPodAutoscaler", "-backend")["spec"]["maxReplicas"] == 3
    fixed = chart.render(cfg, helm_bin, env, ["backend.autoscaling.enabled=false"])
    assert one(fixed, "Deployment", "-backend")["spec"]["replicas"] == 2
    assert objects(fixed, "HorizontalPodAutoscaler") == []


def test_digest_wins_over_tag_and_release_records(helm_bin: helm.Helm, cfg: Config) -> None:
    digest = "sha256:" + "ab" * 32
    sets = [
        f"backend.image.digest={digest}",
        "deployInfo.gitSha=0123abc",
        "deployInfo.triggeredBy=push",
    ]
    rendered = chart.render(cfg, helm_bin, cfg.environment("staging"), sets)
    deploy = one(rendered, "Deployment", "-backend")
    image = deploy["spec"]["template"]["spec"]["containers"][0]["image"]
    assert image == f"ghcr.io/schedule-tracker/backend@{digest}"
    for notes in (
        deploy["metadata"]["annotations"],
        deploy["spec"]["template"]["metadata"]["annotations"],
    ):
        assert notes["deploy.gitSha"] == "0123abc"
        assert notes["deploy.triggeredBy"] == "push"
    frontend = one(rendered, "Deployment", "-frontend")
    assert frontend["spec"]["template"]["spec"]["containers"][0]["image"].endswith(":0.1.0")


def test_gateway_route_instead_of_ingress(helm_bin: helm.Helm, cfg: Config) -> None:
    sets = ["ingress.enabled=false", "gateway.enabled=true", "gateway.parentRefs[0].name=public"]
    rendered = chart.render(cfg, helm_bin, cfg.environment("staging"), sets)
    assert objects(rendered, "Ingress") == []
    route = one(rendered, "HTTPRoute", "schedule-app")
    paths = [r["matches"][0]["path"]["value"] for r in route["spec"]["rules"]]
    assert paths == ["/api", "/"]
    assert chart.validate_env(cfg, rendered).findings == []


ALL_FEATURES = [
    "gateway.enabled=true",
    "gateway.parentRefs[0].name=public",
    "ingress.tls.enabled=true",
    "ingress.tls.secretName=tls",
    "backup.enabled=true",
    "backup.persistence.existingClaim=backups",
    "metrics.serviceMonitor.enabled=true",
    "metrics.grafanaDashboard.enabled=true",
    "networkPolicy.enabled=true",
    "rabbitmq.enabled=false",
    "externalRabbitmq.host=mq.example",
    "externalRabbitmq.existingSecret=mq",
    "backend.secretEnv.API_TOKEN=t0ken",
    "backend.existingSecret=more-env",
    "backend.autoscaling.enabled=false",
    "imagePullSecrets[0].name=regcred",
]


@pytest.mark.parametrize("env_name", ["defaults", "staging"])
def test_every_optional_feature_passes_the_checks(
    helm_bin: helm.Helm, cfg: Config, env_name: str
) -> None:
    env = cfg.environment("staging")
    if env_name == "defaults":
        env = dataclasses.replace(env, values=())
    rendered = chart.render(cfg, helm_bin, env, ALL_FEATURES)
    kinds = {m.kind for m in rendered.manifests}
    assert {"HTTPRoute", "NetworkPolicy", "ServiceMonitor", "CronJob", "Ingress"} <= kinds
    found = chart.validate_env(cfg, rendered).findings + chart.policy_env(cfg, rendered).findings
    assert found == []
    dashboard = one(rendered, "ConfigMap", "-dashboard")
    assert json.loads(dashboard["data"]["schedule-app.json"])["uid"] == "schedule-app"
    deploy = one(rendered, "Deployment", "-backend")
    # the backend's own Secret and the existing one are mounted files, after the credentials
    volumes = {v["name"]: v for v in deploy["spec"]["template"]["spec"]["volumes"]}
    sources = volumes["secrets"]["projected"]["sources"]
    assert [src["secret"]["name"] for src in sources][-2:] == [
        "schedule-app-backend",
        "more-env",
    ]


def test_render_writes_one_file_per_template_or_one_file(
    helm_bin: helm.Helm, cfg: Config, tmp_path: Path
) -> None:
    rendered = chart.render(cfg, helm_bin, cfg.environment("staging"))
    files = chart.write_rendered(rendered, tmp_path / "dir")
    names = {p.name for p in files}
    assert {"backend-deployment.yaml", "postgresql.yaml", "migration-job.yaml"} <= names
    assert all(p.parent.name in {"templates", "tests"} for p in files)
    again = [m for p in files for m in parse_manifests(p.read_text())]
    assert sorted(m.ref for m in again) == sorted(m.ref for m in rendered.manifests)
    (single,) = chart.write_rendered(rendered, tmp_path / "all.yaml")
    assert single.read_text() == rendered.text


# ----------------------------------------------------------------------------- broken copies


def test_container_without_resources_fails_policy(helm_bin: helm.Helm, copy: ChartCopy) -> None:
    copy.edit(
        "frontend-deployment.yaml",
        "          resources:\n            {{- toYaml .Values.frontend.resources | nindent 12 }}\n",
        "",
    )
    rendered = chart.render(copy.cfg, helm_bin, copy.env())
    findings = chart.policy_env(copy.cfg, rendered).findings
    assert rules(findings) == ["RES001"]
    (finding,) = findings
    assert finding.file == f"{CHART}/templates/frontend-deployment.yaml"
    assert "container frontend has no resources requests.cpu" in finding.message
    assert finding.message.startswith("Deployment/schedule-app-frontend:")
    lines = copy.template("frontend-deployment.yaml").read_text().splitlines()
    assert finding.line is not None
    assert "name: frontend" in lines[finding.line - 1]


def test_root_container_fails_policy(helm_bin: helm.Helm, copy: ChartCopy) -> None:
    copy.edit(
        "frontend-deployment.yaml",
        '(dict "uid" .Values.frontend.uid "readOnly" true)',
        '(dict "uid" 0 "readOnly" true)',
    )
    rendered = chart.render(copy.cfg, helm_bin, copy.env())
    findings = chart.policy_env(copy.cfg, rendered).findings
    assert rules(findings) == ["SEC001"]
    assert "container frontend runs as root (runAsUser: 0)" in findings[0].message


def test_wrong_value_type_fails_lint_with_the_key(helm_bin: helm.Helm, copy: ChartCopy) -> None:
    values = copy.path / "values-staging.yaml"
    data = yaml.safe_load(values.read_text())
    data["backend"]["replicaCount"] = "two"
    values.write_text(yaml.safe_dump(data, sort_keys=False))
    report = chart.lint(copy.cfg, helm_bin, [copy.env()])
    lint = only(report.findings, "LINT001")
    assert lint, report.findings
    assert any("replicaCount" in f.message for f in lint), [f.message for f in lint]
    assert all(f.env == "staging" for f in lint)
    # reported at the file and line that set the value, not at the chart's values.yaml
    at_key = [f for f in lint if f.file == f"{CHART}/values-staging.yaml"]
    assert at_key, [f.file for f in lint]
    assert at_key[0].line is not None
    line = values.read_text().splitlines()[at_key[0].line - 1]
    assert line.strip() == "replicaCount: two"
    checked = chart.check(copy.cfg, helm_bin, [copy.env()])
    assert not checked.ok
    (render_failure,) = only(checked.findings, "RENDER001")
    assert "replicaCount" in render_failure.message


def test_external_database_without_host_fails_lint(helm_bin: helm.Helm, copy: ChartCopy) -> None:
    values = copy.path / "values-prod.yaml"
    values.write_text(
        values.read_text().replace("postgresql:\n", "postgresql:\n  enabled: false\n")
    )
    (finding,) = only(chart.lint(copy.cfg, helm_bin, [copy.env("prod")]).findings, "LINT001")
    assert "at '/externalDatabase/host': minLength" in finding.message
    assert finding.file == f"{CHART}/values.yaml"  # where the empty default is
    lines = (copy.path / "values.yaml").read_text().splitlines()
    assert finding.line is not None
    assert lines[finding.line - 1].strip() == 'host: ""'


def test_missing_hook_annotation_fails_policy(helm_bin: helm.Helm, copy: ChartCopy) -> None:
    copy.edit(
        "migration-job.yaml",
        "    helm.sh/hook-delete-policy: before-hook-creation,hook-succeeded\n",
        "",
    )
    findings = chart.policy_env(copy.cfg, chart.render(copy.cfg, helm_bin, copy.env())).findings
    assert rules(findings) == ["HOOK002", "HOOK003"]
    assert all(f.file == f"{CHART}/templates/migration-job.yaml" for f in findings)
    assert any("before-hook-creation" in f.message for f in findings)
    copy.edit("migration-job.yaml", "    helm.sh/hook: {{", "    example.com/hook: {{")
    findings = chart.policy_env(copy.cfg, chart.render(copy.cfg, helm_bin, copy.env())).findings
    assert rules(findings) == ["HOOK001"]
    assert "Job is not a Helm hook" in findings[0].message


def test_unknown_field_fails_schema_validation(helm_bin: helm.Helm, copy: ChartCopy) -> None:
    copy.edit(
        "backend-deployment.yaml",
        "          imagePullPolicy: {{ .Values.backend.image.pullPolicy }}\n",
        "          imagePullPolicy: {{ .Values.backend.image.pullPolicy }}\n"
        "          imagePullPolicyy: Always\n",
    )
    rendered = chart.render(copy.cfg, helm_bin, copy.env())
    findings = chart.validate_env(copy.cfg, rendered).findings
    assert rules(findings) == ["K8S001"]
    (finding,) = findings
    assert "spec.template.spec.containers[0]: unknown field 'imagePullPolicyy'" in finding.message
    assert finding.file == f"{CHART}/templates/backend-deployment.yaml"


def test_wrong_field_type_and_crd_fields_fail_schema_validation(
    helm_bin: helm.Helm, copy: ChartCopy
) -> None:
    copy.edit("backend-hpa.yaml", "  minReplicas: {{", "  minReplicas: {{ quote ")
    # the backend's and RabbitMQ's ServiceMonitors share the endpoint template
    copy.edit(
        "servicemonitor.yaml",
        "    - port: {{ $m.port }}\n",
        "    - port: {{ $m.port }}\n      scrapeEvery: 5s\n",
    )
    rendered = chart.render(copy.cfg, helm_bin, copy.env())
    messages = sorted(f.message for f in chart.validate_env(copy.cfg, rendered).findings)
    assert len(messages) == 3, messages
    assert messages[0].startswith("HorizontalPodAutoscaler/schedule-app-backend: spec.minReplicas")
    assert "expected" in messages[0]
    assert messages[1:] == [
        f"ServiceMonitor/schedule-app-{name}: spec.endpoints[0]: unknown field 'scrapeEvery'"
        for name in ("backend", "rabbitmq")
    ]


def test_kind_without_schema_is_an_error(helm_bin: helm.Helm, copy: ChartCopy) -> None:
    copy.template("widget.yaml").write_text(
        "apiVersion: example.com/v1\nkind: Widget\nmetadata:\n  name: w\nspec: {}\n"
    )
    rendered = chart.render(copy.cfg, helm_bin, copy.env())
    findings = chart.validate_env(copy.cfg, rendered).findings
    assert rules(findings) == ["K8S002"]
    assert findings[0].file == f"{CHART}/templates/widget.yaml"
    assert findings[0].severity == "error"


# ----------------------------------------------------------------------------- the CLI


def run_ci(
    *args: str, major: int, cwd: Path = ROOT, **env: str
) -> subprocess.CompletedProcess[str]:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("GITHUB_")}
    full_env.update({"CI_HELM_MAJOR": str(major), **env})
    return subprocess.run(
        [sys.executable, "-m", "ci", *args],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=cwd,
        env=full_env,
        check=False,
    )


def test_cli_check_passes_and_writes_findings(helm_bin: helm.Helm, tmp_path: Path) -> None:
    out = tmp_path / "out"
    proc = run_ci("--out-dir", str(out), "chart", "check", major=helm_bin.major)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert re.search(r"chart check: ok, 0 finding\(s\) \(staging: \d+, prod: \d+\)", proc.stdout)
    assert json.loads((out / "findings.json").read_text())["ok"] is True
    assert (out / "rendered" / "prod" / CHART / "templates" / "postgresql.yaml").is_file()


def test_cli_annotates_findings_at_the_template(helm_bin: helm.Helm, copy: ChartCopy) -> None:
    copy.edit(
        "frontend-deployment.yaml",
        "          resources:\n            {{- toYaml .Values.frontend.resources | nindent 12 }}\n",
        "",
    )
    data = yaml.safe_load((ROOT / "ci.yaml").read_text())
    data["chart"] = {
        "path": str(copy.path),
        "kubernetes_version": "1.30.0",
        "crds": [str(p) for p in copy.cfg.chart.crds],
    }
    for image in data["images"]:
        image["dockerfile"] = str(ROOT / image["dockerfile"])
        image["context"] = str(ROOT / image["context"])
    for env in data["environments"].values():
        env["values"] = [str(copy.path / Path(v).name) for v in env["values"]]
    config_file = copy.path.parent / "ci.yaml"
    config_file.write_text(yaml.safe_dump(data))
    proc = run_ci(
        "--config",
        str(config_file),
        "chart",
        "policy",
        "--env",
        "staging",
        major=helm_bin.major,
        GITHUB_ACTIONS="true",
    )
    assert proc.returncode == 1, proc.stdout + proc.stderr
    line = chart.locate(copy.template("frontend-deployment.yaml"), "name: frontend")
    expected = (
        f"::error file={CHART}/templates/frontend-deployment.yaml,line={line},"
        "title=RES001::[staging] Deployment/schedule-app-frontend: container frontend "
        "has no resources"
    )
    assert expected in proc.stdout, proc.stdout
