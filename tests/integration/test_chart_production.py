"""What a production team needs from the chart, rendered by the real Helm 3 and Helm 4.

Each group guards one property: the actuator is not public, credentials are files, generated
credentials survive a reinstall, the application is no database superuser, every name fits
its limit for any release name, wrong values stop the render with a message naming the key,
the default images are supported releases, and the small settings a reviewer looks for.
What only a cluster can show is in tests/e2e/test_chart_production.py.
"""

from __future__ import annotations

import hashlib
import re
import subprocess
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import yaml

from ci import helm

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "schedule-app"
STAGING = CHART / "values-staging.yaml"
LOCAL = CHART / "values-local.yaml"
#: Every optional object on, so that every name the chart can make is checked.
ALL_FEATURES = [
    "gateway.enabled=true",
    "gateway.parentRefs[0].name=public",
    "metrics.grafanaDashboard.enabled=true",
    "metrics.serviceMonitor.enabled=true",
    "backup.enabled=true",
    "backend.secretEnv.api\\.key=s3cret",
]
#: Longest release name Helm accepts.
LONG_RELEASE = ("schedule-prod-eu-west-" * 3)[:52] + "1"


def template(
    h: helm.Helm,
    *sets: str,
    release: str = "schedule-app",
    values: tuple[Path, ...] = (STAGING,),
    extra: tuple[str, ...] = (),
) -> subprocess.CompletedProcess[str]:
    argv = [h.path, "template", release, str(CHART), "--namespace", "schedule-staging"]
    for file in values:
        argv += ["-f", str(file)]
    for s in sets:
        argv += ["--set", s]
    return subprocess.run([*argv, *extra], capture_output=True, text=True, timeout=120, check=False)


def render(h: helm.Helm, *sets: str, **kwargs: Any) -> list[dict[str, Any]]:
    proc = template(h, *sets, **kwargs)
    assert proc.returncode == 0, proc.stderr
    return [d for d in yaml.safe_load_all(proc.stdout) if d]


def failure(h: helm.Helm, *sets: str, **kwargs: Any) -> str:
    """The error of a render that must fail."""
    proc = template(h, *sets, **kwargs)
    assert proc.returncode != 0, f"rendered although it should not: {sets}"
    return proc.stderr


def one(docs: list[dict[str, Any]], kind: str, suffix: str) -> dict[str, Any]:
    found = [d for d in docs if d["kind"] == kind and d["metadata"]["name"].endswith(suffix)]
    assert len(found) == 1, f"expected one {kind} *{suffix}, got {len(found)}"
    return found[0]


def pod_spec(obj: dict[str, Any]) -> dict[str, Any]:
    if obj["kind"] == "Pod":
        return dict(obj["spec"])
    if obj["kind"] == "CronJob":
        return dict(obj["spec"]["jobTemplate"]["spec"]["template"]["spec"])
    return dict(obj["spec"]["template"]["spec"])


def containers(obj: dict[str, Any]) -> list[dict[str, Any]]:
    spec = pod_spec(obj)
    return list(spec.get("initContainers", [])) + list(spec["containers"])


def env_of(container: dict[str, Any]) -> dict[str, Any]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container.get("env", [])}


WORKLOADS = {"Deployment", "StatefulSet", "Job", "CronJob", "Pod"}


# ------------------------------------------------------------------ 1. the actuator is private


def test_actuator_has_its_own_port_that_nothing_routes_to(helm_bin: helm.Helm) -> None:
    docs = render(helm_bin, *ALL_FEATURES)
    backend = one(docs, "Deployment", "-backend")
    (container,) = pod_spec(backend)["containers"]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"http": 8080, "management": 8081}
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        assert container[probe]["httpGet"]["port"] == "management", probe
        assert container[probe]["httpGet"]["path"].startswith("/actuator/health/")
    config = one(docs, "ConfigMap", "-backend")["data"]
    assert config["MANAGEMENT_SERVER_PORT"] == "8081"
    assert config["SERVER_PORT"] == "8080"

    annotations = backend["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/port"] == "8081"
    assert annotations["prometheus.io/path"] == "/actuator/prometheus"
    (endpoint,) = one(docs, "ServiceMonitor", "-backend")["spec"]["endpoints"]
    assert (endpoint["port"], endpoint["path"]) == ("management", "/actuator/prometheus")

    service = one(docs, "Service", "-backend")
    by_name = {p["name"]: p for p in service["spec"]["ports"]}
    assert by_name["http"]["targetPort"] == "http"
    assert by_name["management"]["targetPort"] == "management"
    # The Ingress, the HTTPRoute and the frontend's proxy reach the API port only.
    ingress = one(docs, "Ingress", "schedule-app")
    for rule in ingress["spec"]["rules"]:
        for path in rule["http"]["paths"]:
            assert path["backend"]["service"]["port"] == {"name": "http"}
    route = one(docs, "HTTPRoute", "schedule-app")
    assert {r["port"] for rule in route["spec"]["rules"] for r in rule["backendRefs"]} == {8080}
    frontend = one(docs, "Deployment", "-frontend")
    assert env_of(pod_spec(frontend)["containers"][0])["BACKEND_URL"].endswith(":8080")


def test_network_policy_admits_only_monitoring_to_the_management_port(
    helm_bin: helm.Helm,
) -> None:
    policy = one(render(helm_bin), "NetworkPolicy", "-backend")
    rules = policy["spec"]["ingress"]
    by_port: dict[str, list[dict[str, Any]]] = {}
    for rule in rules:
        for port in rule["ports"]:
            by_port.setdefault(port["port"], []).extend(rule["from"])
    assert set(by_port) == {"http", "management"}
    monitoring = {
        "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}
    }
    assert by_port["management"] == [monitoring]
    assert monitoring not in by_port["http"]


def test_helm_test_asks_the_api_port(helm_bin: helm.Helm) -> None:
    pod = one(render(helm_bin), "Pod", "-test")
    script = pod["spec"]["containers"][0]["command"][-1]
    assert "/dev/tcp/schedule-app-backend/8080" in script
    assert "GET /api/healthz " in script


# ------------------------------------------------------------------ 2. credentials are files


def test_no_credential_reaches_a_container_through_its_environment(helm_bin: helm.Helm) -> None:
    docs = render(helm_bin, *ALL_FEATURES, "backend.existingSecret=more-properties")
    for obj in (d for d in docs if d["kind"] in WORKLOADS):
        for c in containers(obj):
            where = f"{obj['kind']} {obj['metadata']['name']} container {c['name']}"
            assert not [e for e in c.get("envFrom", []) if "secretRef" in e], where
            refs = [e["name"] for e in c.get("env", []) if "secretKeyRef" in e.get("valueFrom", {})]
            assert refs == [], where
            assert not {"PGPASSWORD", "POSTGRES_PASSWORD", "RABBITMQ_DEFAULT_PASS"} & set(
                env_of(c)
            ), where


def test_credentials_are_mounted_where_each_image_reads_them(helm_bin: helm.Helm) -> None:
    docs = render(helm_bin, *ALL_FEATURES, "backend.existingSecret=more-properties")
    backend = one(docs, "Deployment", "-backend")
    config = one(docs, "ConfigMap", "-backend")["data"]
    assert config["SPRING_CONFIG_IMPORT"] == "optional:configtree:/run/secrets/schedule/"
    mounts = {m["name"]: m for m in pod_spec(backend)["containers"][0]["volumeMounts"]}
    assert mounts["secrets"]["mountPath"] == "/run/secrets/schedule"
    (volume,) = [v for v in pod_spec(backend)["volumes"] if v["name"] == "secrets"]
    sources = [s["secret"] for s in volume["projected"]["sources"]]
    paths = {i["path"] for s in sources for i in s.get("items", [])}
    assert paths == {"spring.datasource.password", "spring.rabbitmq.password"}
    assert {s["name"] for s in sources} >= {"schedule-app-backend", "more-properties"}

    pg = one(docs, "StatefulSet", "-postgresql")
    pg_env = env_of(pod_spec(pg)["containers"][0])
    assert pg_env["POSTGRES_PASSWORD_FILE"] == "/run/secrets/postgresql/admin-password"
    mq = one(docs, "StatefulSet", "-rabbitmq")
    assert env_of(pod_spec(mq)["containers"][0])["RABBITMQ_DEFAULT_PASS_FILE"] == (
        "/run/secrets/rabbitmq/password"
    )
    for kind, suffix in (("Job", "-migration"), ("CronJob", "-backup")):
        obj = one(docs, kind, suffix)
        libpq = [c for c in containers(obj) if "PGHOST" in env_of(c)]
        assert libpq, f"{kind} {suffix} has no database client"
        for c in libpq:
            assert env_of(c)["PGPASSFILE"] == "/tmp/pgpass", c["name"]
        (writer,) = [c for c in containers(obj) if c["name"] == "pgpass"]
        assert "umask 077" in writer["command"][-1]


def test_a_changed_secret_value_rolls_the_backend(helm_bin: helm.Helm) -> None:
    def pod_annotations(*sets: str) -> dict[str, str]:
        backend = one(render(helm_bin, *sets), "Deployment", "-backend")
        return dict(backend["spec"]["template"]["metadata"]["annotations"])

    fixed = ("postgresql.password=a1", "postgresql.adminPassword=a2", "rabbitmq.password=a3")
    base = pod_annotations(*fixed, "backend.secretEnv.api\\.key=one")
    assert base == pod_annotations(*fixed, "backend.secretEnv.api\\.key=one")
    assert (
        base["checksum/secret"]
        != pod_annotations(*fixed, "backend.secretEnv.api\\.key=two")["checksum/secret"]
    )
    changed = ("postgresql.password=b1", *fixed[1:], "backend.secretEnv.api\\.key=one")
    assert base["checksum/secret"] != pod_annotations(*changed)["checksum/secret"]


def test_checksum_is_of_the_passwords_the_secrets_hold(helm_bin: helm.Helm) -> None:
    """Generated passwords are drawn once per render: the checksum hashes the very values the
    Secrets get, so the first upgrade (which reads them back) does not roll the pods again."""
    docs = render(helm_bin)
    db = one(docs, "Secret", "-db")["data"]
    mq = one(docs, "Secret", "-rabbitmq")["data"]
    parts = [
        f"password: {db['password']}\nadmin-password: {db['admin-password']}",
        f"password: {mq['password']}",
        "{}",
        ",,,,",
    ]
    expected = hashlib.sha256("\n".join(parts).encode()).hexdigest()
    backend = one(docs, "Deployment", "-backend")
    assert backend["spec"]["template"]["metadata"]["annotations"]["checksum/secret"] == expected


# ------------------------------------------------------------- 3. credentials survive reinstall


def test_generated_credential_secrets_are_kept_on_uninstall(helm_bin: helm.Helm) -> None:
    docs = render(helm_bin)
    secrets = [d for d in docs if d["kind"] == "Secret"]
    assert {s["metadata"]["name"] for s in secrets} >= {"schedule-app-db", "schedule-app-rabbitmq"}
    for secret in secrets:
        if secret["metadata"]["name"] in {"schedule-app-db", "schedule-app-rabbitmq"}:
            annotations = secret["metadata"].get("annotations", {})
            assert annotations.get("helm.sh/resource-policy") == "keep", secret["metadata"]
    notes = (CHART / "templates" / "NOTES.txt").read_text()
    assert "helm.sh/resource-policy: keep" in notes


def test_generated_passwords_are_random_and_one_per_render(helm_bin: helm.Helm) -> None:
    """Without a cluster every render draws new passwords, the same one wherever it is used."""
    first, second = render(helm_bin), render(helm_bin)
    db1, db2 = (one(d, "Secret", "-db")["data"] for d in (first, second))
    assert db1["password"] != db2["password"]
    assert db1["password"] != db1["admin-password"]
    assert len(db1["password"]) == 44  # 32 random characters, base64-encoded


# --------------------------------------------------------------- 4. the app is no superuser


def test_application_user_is_not_the_admin_user(helm_bin: helm.Helm) -> None:
    docs = render(helm_bin)
    pg = one(docs, "StatefulSet", "-postgresql")
    pg_env = env_of(pod_spec(pg)["containers"][0])
    app_user = one(docs, "ConfigMap", "-backend")["data"]["SPRING_DATASOURCE_USERNAME"]
    assert pg_env["POSTGRES_USER"] == "postgres"
    assert app_user == pg_env["APP_USER"] == "schedule"
    init = one(docs, "ConfigMap", "-postgresql-init")["data"]["10-app-user.sh"]
    assert "NOSUPERUSER NOCREATEDB NOCREATEROLE" in init
    assert "GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES" in init
    mounts = {m["mountPath"] for m in pod_spec(pg)["containers"][0]["volumeMounts"]}
    assert "/docker-entrypoint-initdb.d" in mounts

    job = one(docs, "Job", "-migration")
    by_name = {c["name"]: c for c in containers(job)}
    assert env_of(by_name["migrate"])["SPRING_DATASOURCE_USERNAME"] == "postgres"
    assert env_of(by_name["app-user"])["APP_USER"] == "schedule"
    assert env_of(by_name["app-user"])["PGUSER"] == "postgres"
    volumes = {v["name"]: v for v in pod_spec(job)["volumes"]}
    assert volumes["db-password"]["secret"]["items"] == [
        {"key": "admin-password", "path": "password"}
    ]
    backup = one(render(helm_bin, "backup.enabled=true"), "CronJob", "-backup")
    assert env_of(pod_spec(backup)["containers"][0])["PGUSER"] == "schedule"


def test_app_user_equal_to_admin_user_fails(helm_bin: helm.Helm) -> None:
    err = failure(helm_bin, "postgresql.adminUsername=schedule")
    assert "postgresql.username" in err
    assert "postgresql.adminUsername" in err


# ------------------------------------------------------------------------ 5. names that fit

#: Longest name per kind: Services and the label values derived from a name are DNS labels
#: (63); a StatefulSet's pods get controller-revision-hash "<name>-<10 chars>" and a CronJob's
#: Jobs "<name>-<8 digits>" plus a pod suffix, hence 52.
NAME_LIMITS = {"Service": 63, "StatefulSet": 52, "CronJob": 52, "Job": 63, "Pod": 63}
DNS_LABEL = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")


def check_names(docs: list[dict[str, Any]]) -> None:
    for doc in docs:
        name = doc["metadata"]["name"]
        limit = NAME_LIMITS.get(doc["kind"], 253)
        assert len(name) <= limit, f"{doc['kind']} {name}: {len(name)} > {limit}"
        assert DNS_LABEL.match(name) or doc["kind"] not in NAME_LIMITS, name
        for key, value in doc["metadata"].get("labels", {}).items():
            assert len(str(value)) <= 63, f"{doc['kind']} {name} label {key}={value}"
    per_kind = Counter((d["kind"], d["metadata"]["name"]) for d in docs)
    assert [k for k, n in per_kind.items() if n > 1] == []


def test_every_name_fits_for_a_53_character_release_name(helm_bin: helm.Helm) -> None:
    assert len(LONG_RELEASE) == 53
    docs = render(helm_bin, *ALL_FEATURES, release=LONG_RELEASE)
    check_names(docs)
    names = {d["metadata"]["name"] for d in docs if d["kind"] == "StatefulSet"}
    assert len(names) == 2


def test_long_release_names_with_one_prefix_do_not_share_objects(helm_bin: helm.Helm) -> None:
    other = LONG_RELEASE[:-1] + "z"
    first = {(d["kind"], d["metadata"]["name"]) for d in render(helm_bin, release=LONG_RELEASE)}
    second = {(d["kind"], d["metadata"]["name"]) for d in render(helm_bin, release=other)}
    assert first & second == set()


def test_short_release_names_keep_their_names(helm_bin: helm.Helm) -> None:
    docs = render(helm_bin, release="shop")
    check_names(docs)
    assert one(docs, "StatefulSet", "-postgresql")["metadata"]["name"] == (
        "shop-schedule-app-postgresql"
    )


def test_too_long_fullname_override_fails_naming_the_limit(helm_bin: helm.Helm) -> None:
    err = failure(helm_bin, "fullnameOverride=" + "x" * 42)
    assert "fullnameOverride" in err
    assert "at most 41" in err
    assert "52 characters" in err
    check_names(render(helm_bin, "fullnameOverride=" + "x" * 41))


# ------------------------------------------------------------------ 6. values that slip through

BAD_VALUES = {
    "requests above limits": (
        ["backend.resources.requests.memory=2Gi"],
        ["backend.resources.requests.memory", "backend.resources.limits.memory"],
    ),
    "cpu request above limit": (
        ["frontend.resources.requests.cpu=1500m", "frontend.resources.limits.cpu=1"],
        ["frontend.resources.requests.cpu"],
    ),
    "minReplicas above maxReplicas": (
        ["backend.autoscaling.minReplicas=5", "backend.autoscaling.maxReplicas=3"],
        ["backend.autoscaling.minReplicas", "backend.autoscaling.maxReplicas"],
    ),
    "invalid host name": (["ingress.hosts[0]=Not_A_Host!"], ["ingress", "hosts"]),
    "latest tag": (["backend.image.tag=latest"], ["backend.image.tag", "latest"]),
    "latest tag of a database": (["postgresql.image.tag=latest"], ["postgresql.image.tag"]),
    "resources without memory": (["backend.resources.limits.memory=null"], ["memory"]),
    "resources without cpu": (["rabbitmq.resources.requests.cpu=null"], ["cpu"]),
    "empty database user": (["postgresql.username="], ["postgresql", "username"]),
    "empty external database user": (
        ["postgresql.enabled=false", "externalDatabase.host=db", "externalDatabase.username="],
        ["externalDatabase", "username"],
    ),
    "existingSecret with password": (
        ["postgresql.existingSecret=db-creds", "postgresql.password=ignored"],
        ["postgresql.password", "postgresql.existingSecret"],
    ),
    "existingSecret with password (broker)": (
        ["rabbitmq.existingSecret=mq-creds", "rabbitmq.password=ignored"],
        ["rabbitmq.password", "rabbitmq.existingSecret"],
    ),
}


@pytest.mark.parametrize("case", list(BAD_VALUES))
def test_values_that_do_not_fit_stop_the_render_naming_the_key(
    helm_bin: helm.Helm, case: str
) -> None:
    sets, words = BAD_VALUES[case]
    err = failure(helm_bin, *sets)
    missing = [w for w in words if w not in err]
    assert missing == [], err


def test_good_neighbours_of_the_bad_values_render(helm_bin: helm.Helm) -> None:
    render(
        helm_bin,
        "backend.resources.requests.memory=768Mi",
        "backend.autoscaling.minReplicas=3",
        "backend.autoscaling.maxReplicas=3",
        "ingress.hosts[0]=*.schedule.example.com",
        "backend.image.tag=1.2.3",
        "postgresql.existingSecret=db-creds",
    )


# ---------------------------------------------------------------------- 7. default images

# The default images' support windows are pure file checks: tests/unit/test_chart_images.py.


# ------------------------------------------------------------------------ 8. small things


def test_helm_test_pod_uses_the_image_pull_secrets(helm_bin: helm.Helm) -> None:
    pod = one(render(helm_bin, "imagePullSecrets[0].name=regcred"), "Pod", "-test")
    assert pod["spec"]["imagePullSecrets"] == [{"name": "regcred"}]


def test_kubernetes_before_1_30_is_refused(helm_bin: helm.Helm) -> None:
    err = failure(helm_bin, extra=("--kube-version", "1.29.0"))
    assert "kubeVersion" in err or "incompatible" in err
    render(helm_bin, extra=("--kube-version", "1.30.0"))


def test_nginx_workers_follow_the_cpu_limit(helm_bin: helm.Helm) -> None:
    frontend = one(render(helm_bin), "Deployment", "-frontend")
    workers = env_of(pod_spec(frontend)["containers"][0])["NGINX_WORKER_PROCESSES"]
    assert workers == {
        "resourceFieldRef": {"containerName": "frontend", "resource": "limits.cpu", "divisor": "1"}
    }
    conf = (ROOT / "examples/schedule-tracker/frontend/nginx/nginx.conf").read_text()
    assert "worker_processes auto" not in conf
    template = ROOT / "examples/schedule-tracker/frontend/nginx/workers.conf.template"
    assert "worker_processes ${NGINX_WORKER_PROCESSES};" in template.read_text()


def test_frontend_probes_use_healthz(helm_bin: helm.Helm) -> None:
    frontend = one(render(helm_bin), "Deployment", "-frontend")
    container = pod_spec(frontend)["containers"][0]
    for probe in ("livenessProbe", "readinessProbe"):
        assert container[probe]["httpGet"]["path"] == "/healthz"


def test_local_values_make_no_budget_that_blocks_drains(helm_bin: helm.Helm) -> None:
    docs = render(helm_bin, values=(STAGING, LOCAL))
    assert [d for d in docs if d["kind"] == "PodDisruptionBudget"] == []
    err = failure(helm_bin, "frontend.pdb.enabled=true", values=(STAGING, LOCAL))
    assert "frontend.pdb.minAvailable" in err
    assert "frontend.replicaCount" in err
    err = failure(helm_bin, "backend.pdb.enabled=true", values=(STAGING, LOCAL))
    assert "backend.autoscaling.minReplicas" in err


ESCAPE_HATCHES = [
    "{c}.podLabels.team=payments",
    "{c}.podAnnotations.example\\.com/owner=payments",
    "{c}.priorityClassName=business-critical",
    "{c}.topologySpreadConstraints[0].maxSkew=1",
    "{c}.topologySpreadConstraints[0].topologyKey=topology.kubernetes.io/zone",
    "{c}.topologySpreadConstraints[0].whenUnsatisfiable=ScheduleAnyway",
    "{c}.extraEnv[0].name=EXTRA",
    "{c}.extraEnv[0].value=yes",
    "{c}.extraVolumes[0].name=extra",
    "{c}.extraVolumes[0].emptyDir.sizeLimit=1Mi",
    "{c}.extraVolumeMounts[0].name=extra",
    "{c}.extraVolumeMounts[0].mountPath=/extra",
]


@pytest.mark.parametrize("component", ["backend", "frontend"])
def test_escape_hatches_are_accepted_and_rendered(helm_bin: helm.Helm, component: str) -> None:
    docs = render(helm_bin, *(s.format(c=component) for s in ESCAPE_HATCHES))
    deployment = one(docs, "Deployment", f"-{component}")
    meta = deployment["spec"]["template"]["metadata"]
    spec = pod_spec(deployment)
    container = spec["containers"][0]
    assert meta["labels"]["team"] == "payments"
    assert meta["annotations"]["example.com/owner"] == "payments"
    assert spec["priorityClassName"] == "business-critical"
    assert spec["topologySpreadConstraints"][0]["topologyKey"] == "topology.kubernetes.io/zone"
    assert env_of(container)["EXTRA"] == "yes"
    assert {"name": "extra", "emptyDir": {"sizeLimit": "1Mi"}} in spec["volumes"]
    assert {"name": "extra", "mountPath": "/extra"} in container["volumeMounts"]


def test_escape_hatch_of_the_wrong_shape_is_refused(helm_bin: helm.Helm) -> None:
    err = failure(helm_bin, "backend.extraEnv[0].value=no-name")
    assert "extraEnv" in err


@pytest.mark.parametrize("component", ["postgresql", "rabbitmq"])
def test_stateful_services_take_a_priority_class(helm_bin: helm.Helm, component: str) -> None:
    docs = render(helm_bin, f"{component}.priorityClassName=data-critical")
    assert pod_spec(one(docs, "StatefulSet", f"-{component}"))["priorityClassName"] == (
        "data-critical"
    )
