"""The chart's metrics exporters as Helm 3 and Helm 4 render them.

PostgreSQL: postgres_exporter (postgresql.metrics) is off by default and on in staging and prod,
logs in as a pg_monitor role whose generated password is a mounted file (never an environment
value) of a Secret made before the migration Job that creates the role, and its metrics port is
open to the monitoring namespace only. RabbitMQ: the
rabbitmq_prometheus plugin comes from the chart's enabled_plugins, on the Service port
``metrics``. The images themselves run in test_chart_containers.py.
"""

from __future__ import annotations

import base64
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from ci import helm

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "schedule-app"
STAGING = CHART / "values-staging.yaml"
PROD = CHART / "values-prod.yaml"
LOCAL = CHART / "values-local.yaml"
EXPORTER = "-postgresql-metrics"
MONITORING = {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}
RELEASE_PODS = {"podSelector": {"matchLabels": {"app.kubernetes.io/instance": "schedule-app"}}}


def template(
    h: helm.Helm, *sets: str, values: tuple[Path, ...]
) -> subprocess.CompletedProcess[str]:
    argv = [str(h.path), "template", "schedule-app", str(CHART), "--namespace", "schedule-staging"]
    for file in values:
        argv += ["-f", str(file)]
    for s in sets:
        argv += ["--set", s]
    return subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False)


def render(h: helm.Helm, *sets: str, values: tuple[Path, ...] = (STAGING,)) -> list[dict[str, Any]]:
    proc = template(h, *sets, values=values)
    assert proc.returncode == 0, proc.stderr
    return [d for d in yaml.safe_load_all(proc.stdout) if d]


def named(docs: list[dict[str, Any]], kind: str, suffix: str) -> list[dict[str, Any]]:
    return [d for d in docs if d["kind"] == kind and d["metadata"]["name"].endswith(suffix)]


def one(docs: list[dict[str, Any]], kind: str, suffix: str) -> dict[str, Any]:
    found = named(docs, kind, suffix)
    assert len(found) == 1, f"expected one {kind} *{suffix}, got {len(found)}"
    return found[0]


def pod_spec(obj: dict[str, Any]) -> dict[str, Any]:
    return dict(obj["spec"]["template"]["spec"])


def exporter_container(docs: list[dict[str, Any]]) -> dict[str, Any]:
    (container,) = pod_spec(one(docs, "Deployment", EXPORTER))["containers"]
    return dict(container)


def env_of(container: dict[str, Any]) -> dict[str, Any]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container.get("env", [])}


def ports_by_source(policy: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    """Each port a NetworkPolicy admits, with the peers admitted to it."""
    by_port: dict[str, list[dict[str, Any]]] = {}
    for rule in policy["spec"].get("ingress", []):
        for port in rule["ports"]:
            by_port.setdefault(port["port"], []).extend(rule["from"])
    return by_port


def test_exporter_is_off_by_default(helm_bin: helm.Helm) -> None:
    docs = render(helm_bin, values=())
    assert [d for d in docs if d["metadata"]["name"].endswith(EXPORTER)] == []
    assert "metrics-password" not in one(docs, "Secret", "-db")["data"]
    migration = one(docs, "Job", "-migration")
    assert "metrics-user" not in [c["name"] for c in pod_spec(migration)["initContainers"]]


@pytest.mark.parametrize("env_values", [STAGING, PROD], ids=["staging", "prod"])
def test_exporter_and_its_service_monitor_are_on_in_staging_and_prod(
    helm_bin: helm.Helm, env_values: Path
) -> None:
    docs = render(helm_bin, values=(env_values,))
    service = one(docs, "Service", EXPORTER)
    assert [(p["name"], p["port"]) for p in service["spec"]["ports"]] == [("metrics", 9187)]
    container = exporter_container(docs)
    assert [(p["name"], p["containerPort"]) for p in container["ports"]] == [("metrics", 9187)]
    assert container["image"] == "quay.io/prometheuscommunity/postgres-exporter:v0.17.1"
    monitor = one(docs, "ServiceMonitor", EXPORTER)
    assert monitor["spec"]["selector"]["matchLabels"] == service["spec"]["selector"]
    (endpoint,) = monitor["spec"]["endpoints"]
    assert (endpoint["port"], endpoint["path"]) == ("metrics", "/metrics")
    # pg_up carries the database Service's name as its job, which PostgreSQLDown selects on
    assert {
        "action": "replace",
        "targetLabel": "job",
        "replacement": "schedule-app-postgresql",
    } in (endpoint["relabelings"])


def test_local_values_use_the_local_exporter_image(helm_bin: helm.Helm) -> None:
    docs = render(helm_bin, values=(STAGING, LOCAL))
    container = exporter_container(docs)
    assert container["image"] == "127.0.0.1:5000/base/postgres-exporter:bookworm"
    assert container["imagePullPolicy"] == "Always"


def test_exporter_reads_its_password_from_a_mounted_file_not_the_environment(
    helm_bin: helm.Helm,
) -> None:
    docs = render(helm_bin)
    container = exporter_container(docs)
    env = env_of(container)
    assert env == {
        "DATA_SOURCE_URI": "schedule-app-postgresql:5432/schedule?sslmode=disable",
        "DATA_SOURCE_USER": "metrics",
        "DATA_SOURCE_PASS_FILE": "/run/secrets/metrics/password",
    }
    assert "envFrom" not in container
    (mount,) = container["volumeMounts"]
    assert (mount["mountPath"], mount["readOnly"]) == ("/run/secrets/metrics", True)
    (volume,) = pod_spec(one(docs, "Deployment", EXPORTER))["volumes"]
    assert volume["name"] == mount["name"]
    assert volume["secret"] == {
        "secretName": "schedule-app-postgresql-metrics",
        "defaultMode": 0o440,
        "items": [{"key": "metrics-password", "path": "password"}],
    }
    (creator,) = [
        c for c in pod_spec(one(docs, "Job", "-migration"))["initContainers"]
        if c["name"] == "metrics-user"
    ]  # fmt: skip
    assert env_of(creator)["METRICS_PASSWORD_FILE"] == "/run/secrets/metrics/password"
    assert "GRANT pg_monitor TO" in creator["command"][-1]
    assert "SUPERUSER" not in creator["command"][-1].replace("NOSUPERUSER", "")


def test_monitoring_password_is_generated_before_the_migration_and_rolls_the_exporter(
    helm_bin: helm.Helm,
) -> None:
    docs = render(helm_bin)
    secret = one(docs, "Secret", EXPORTER)
    notes = secret["metadata"]["annotations"]
    migration = one(docs, "Job", "-migration")["metadata"]["annotations"]
    # a hook before the migration Job's, on upgrades too: the Job mounts it to create the role
    assert notes["helm.sh/hook"] == "pre-install,pre-upgrade"
    assert int(notes["helm.sh/hook-weight"]) < int(migration["helm.sh/hook-weight"])
    assert notes["helm.sh/hook-delete-policy"] == "before-hook-creation"
    generated = base64.b64decode(secret["data"]["metrics-password"]).decode()
    assert len(generated) == 32
    db = one(docs, "Secret", "-db")["data"]
    assert generated != base64.b64decode(db["password"]).decode()
    assert "metrics-password" not in db

    given = render(helm_bin, "postgresql.metrics.password=m0nitor")
    assert base64.b64decode(one(given, "Secret", EXPORTER)["data"]["metrics-password"]) == (
        b"m0nitor"
    )

    def checksum(*sets: str) -> str:
        pod = one(render(helm_bin, *sets), "Deployment", EXPORTER)["spec"]["template"]
        return str(pod["metadata"]["annotations"]["checksum/secret"])

    assert checksum("postgresql.metrics.password=a") == checksum("postgresql.metrics.password=a")
    assert checksum("postgresql.metrics.password=a") != checksum("postgresql.metrics.password=b")


def test_an_existing_secret_holds_the_monitoring_password_too(helm_bin: helm.Helm) -> None:
    docs = render(helm_bin, "postgresql.existingSecret=db-credentials")
    assert named(docs, "Secret", EXPORTER) == []
    exporter = pod_spec(one(docs, "Deployment", EXPORTER))
    migration = pod_spec(one(docs, "Job", "-migration"))
    for volumes in (exporter["volumes"], migration["volumes"]):
        (volume,) = [v for v in volumes if v["name"] == "metrics-password"]
        assert volume["secret"]["secretName"] == "db-credentials"
        assert volume["secret"]["items"] == [{"key": "metrics-password", "path": "password"}]


def test_backend_checksum_does_not_change_with_metrics(helm_bin: helm.Helm) -> None:
    """The backend never reads the monitoring password: turning metrics on does not roll it."""

    def backend_checksum(enabled: str) -> str:
        docs = render(
            helm_bin,
            "postgresql.password=p",
            "postgresql.adminPassword=a",
            "rabbitmq.password=r",
            f"postgresql.metrics.enabled={enabled}",
        )
        pod = one(docs, "Deployment", "-backend")["spec"]["template"]
        return str(pod["metadata"]["annotations"]["checksum/secret"])

    assert backend_checksum("true") == backend_checksum("false")


def test_exporter_container_is_locked_down(helm_bin: helm.Helm) -> None:
    docs = render(helm_bin)
    pod = pod_spec(one(docs, "Deployment", EXPORTER))
    sc = exporter_container(docs)["securityContext"]
    assert (sc["runAsNonRoot"], sc["runAsUser"], sc["readOnlyRootFilesystem"]) == (
        True,
        65534,
        True,
    )
    assert (sc["allowPrivilegeEscalation"], sc["capabilities"]) == (False, {"drop": ["ALL"]})
    assert pod["automountServiceAccountToken"] is False
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    probes = exporter_container(docs)
    for probe in ("readinessProbe", "livenessProbe"):
        assert probes[probe]["httpGet"] == {"path": "/", "port": "metrics"}


def test_network_policies_admit_only_monitoring_to_the_metrics_ports(helm_bin: helm.Helm) -> None:
    docs = render(helm_bin)
    exporter = ports_by_source(one(docs, "NetworkPolicy", EXPORTER))
    assert exporter == {"metrics": [MONITORING]}
    rabbitmq = ports_by_source(one(docs, "NetworkPolicy", "-rabbitmq"))
    assert rabbitmq == {
        "amqp": [RELEASE_PODS],
        "management": [RELEASE_PODS],
        "metrics": [MONITORING],
    }
    # the exporter is one of the release's pods: it reaches the database port like the backend
    assert ports_by_source(one(docs, "NetworkPolicy", "-postgresql")) == {
        "postgresql": [RELEASE_PODS]
    }


def test_without_a_monitoring_selector_nothing_reaches_the_metrics_ports(
    helm_bin: helm.Helm,
) -> None:
    docs = render(helm_bin, "networkPolicy.monitoringNamespaceSelector=null")
    assert one(docs, "NetworkPolicy", EXPORTER)["spec"]["ingress"] == []
    assert "metrics" not in ports_by_source(one(docs, "NetworkPolicy", "-rabbitmq"))


def test_rabbitmq_starts_the_prometheus_plugin_on_the_metrics_port(helm_bin: helm.Helm) -> None:
    docs = render(helm_bin)
    plugins = one(docs, "ConfigMap", "-rabbitmq-plugins")["data"]["enabled_plugins"]
    assert plugins.strip() == "[rabbitmq_management,rabbitmq_prometheus]."
    service = one(docs, "Service", "-rabbitmq")
    assert ("metrics", 15692, "metrics") in [
        (p["name"], p["port"], p["targetPort"]) for p in service["spec"]["ports"]
    ]
    (container,) = pod_spec(one(docs, "StatefulSet", "-rabbitmq"))["containers"]
    assert ("metrics", 15692) in [(p["name"], p["containerPort"]) for p in container["ports"]]
    assert env_of(container)["RABBITMQ_ENABLED_PLUGINS_FILE"] == (
        "/etc/rabbitmq-plugins/enabled_plugins"
    )
    mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
    assert mounts["/etc/rabbitmq-plugins"]["readOnly"] is True

    off = render(helm_bin, "rabbitmq.metrics.enabled=false")
    assert one(off, "ConfigMap", "-rabbitmq-plugins")["data"]["enabled_plugins"].strip() == (
        "[rabbitmq_management]."
    )
    ports = [p["name"] for p in one(off, "Service", "-rabbitmq")["spec"]["ports"]]
    assert ports == ["amqp", "management"]


def test_metrics_without_the_migration_job_fails_naming_both_keys(helm_bin: helm.Helm) -> None:
    proc = template(helm_bin, "migration.enabled=false", values=(STAGING,))
    assert proc.returncode != 0
    assert "postgresql.metrics.enabled needs migration.enabled" in proc.stderr


def test_an_external_database_gets_no_exporter(helm_bin: helm.Helm) -> None:
    docs = render(
        helm_bin,
        "postgresql.enabled=false",
        "externalDatabase.host=db.example.com",
        "externalDatabase.password=x",
    )
    assert [d for d in docs if d["metadata"]["name"].endswith(EXPORTER)] == []
