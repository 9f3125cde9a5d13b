"""The chart's production properties that only a running cluster shows.

A release of its own (namespace ``schedule-prod-e2e``, host ``schedule-prod-e2e.local``),
installed with Helm from the chart and the images the ``e2e`` fixtures push, with the staging
values, NetworkPolicies on: the actuator answers the monitoring namespace and nobody else, an
upgrade keeps every generated password, an uninstall and a reinstall keep the data, and the
application's database user may not create roles. The tests run in file order.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import yaml

from ci import helm, proc, release

if TYPE_CHECKING:
    from tests.e2e.conftest import E2E

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "schedule-app"
NAMESPACE = "schedule-prod-e2e"
RELEASE = "prod-e2e"
FULLNAME = f"{RELEASE}-schedule-app"
HOST = "schedule-prod-e2e.local"
MONITORING = "monitoring"
OUTSIDER = "schedule-prod-e2e-outsider"
GENERATED = {
    f"{FULLNAME}-db": ("password", "admin-password"),
    f"{FULLNAME}-rabbitmq": ("password",),
}


@pytest.fixture(scope="module")
def values_file(e2e: E2E, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The e2e values (the local cluster's size and images) with this release's own host."""
    from tests.e2e.conftest import E2E_VALUES

    values = json.loads(json.dumps(E2E_VALUES))
    values["ingress"]["hosts"] = [HOST]
    path = tmp_path_factory.mktemp("prod") / "values.yaml"
    path.write_text(yaml.safe_dump(values), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def install(e2e: E2E, images_json: Path, values_file: Path) -> Iterator[list[str]]:
    """``helm upgrade --install`` argv (without the verb's own flags) for this release."""
    refs, _ = release.load_images(images_json)
    h = helm.find(3)
    argv = [
        h.path, "--kubeconfig", str(e2e.info.kubeconfig), "-n", NAMESPACE,
        "upgrade", "--install", RELEASE, str(CHART), "--create-namespace",
        "-f", str(CHART / "values-staging.yaml"), "-f", str(values_file),
        "--wait", "--timeout", "8m",
    ]  # fmt: skip
    for ref in refs:
        argv += ["--set", f"{ref.values_key}.image.repository={ref.repository}"]
        argv += ["--set", f"{ref.values_key}.image.digest={ref.digest}"]
    for ns in (NAMESPACE, OUTSIDER):
        e2e.kubectl("delete", "namespace", ns, "--ignore-not-found", "--wait", timeout=300)
    created = [OUTSIDER]
    if e2e.kubectl("get", "namespace", MONITORING, check=False).returncode != 0:
        created.append(MONITORING)
    for ns in created:
        e2e.kubectl("create", "namespace", ns)
    helm_run(argv)
    yield argv
    for ns in (NAMESPACE, *created):
        e2e.kubectl("delete", "namespace", ns, "--ignore-not-found", "--wait=false", check=False)


def helm_run(argv: list[str]) -> proc.Result:
    res = proc.run(tuple(argv), timeout=900, check=False, what="helm")
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    return res


def get(e2e: E2E, path: str, body: Any = None) -> tuple[int, str]:
    """A request through the ingress with this release's host."""
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(
        f"{e2e.info.ingress_url}{path}", data=data, method="POST" if body else "GET"
    )
    req.add_header("Host", HOST)
    req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=15) as resp:
            return resp.status, resp.read().decode(errors="replace")
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode(errors="replace")
    except (urllib.error.URLError, TimeoutError, ConnectionError) as exc:
        return 0, str(exc)


def wait_for_api(e2e: E2E, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    status, body = 0, ""
    while time.monotonic() < deadline:
        status, body = get(e2e, "/api/healthz")
        if status == 200 and '"UP"' in body:
            return
        time.sleep(3)
    pytest.fail(f"/api/healthz through the ingress: {status} {body[:300]}")


def dbtools_image(images_json: Path) -> str:
    refs, _ = release.load_images(images_json)
    return next(r.ref for r in refs if r.name == "dbtools")


def fetch_from(e2e: E2E, namespace: str, image: str, *, host: str, port: int, path: str) -> str:
    """The body of GET http://HOST:PORT/PATH from a pod in NAMESPACE, or ``refused``."""
    script = (
        f"exec 3<>/dev/tcp/{host}/{port} || exit 0; "
        f"printf 'GET {path} HTTP/1.0\\r\\nHost: {host}\\r\\n\\r\\n' >&3; "
        "timeout 10 cat <&3"
    )
    wrapped = f"if ! timeout 8 bash -c 'exec 3<>/dev/tcp/{host}/{port}' 2>/dev/null; "
    wrapped += f"then echo refused; else {script}; fi"
    container = {
        "name": "probe",
        "image": image,
        "command": ["bash", "-c", wrapped],
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "capabilities": {"drop": ["ALL"]},
            "readOnlyRootFilesystem": True,
        },
    }
    pod = {
        "apiVersion": "v1",
        "spec": {
            "restartPolicy": "Never",
            "securityContext": {
                "runAsNonRoot": True,
                "runAsUser": 10001,
                "seccompProfile": {"type": "RuntimeDefault"},
            },
            "containers": [container],
        },
    }
    res = e2e.kubectl(
        "run", "probe", "-n", namespace, "--rm", "-i", "--quiet", "--restart=Never",
        f"--image={image}", f"--overrides={json.dumps(pod)}", timeout=180,
    )  # fmt: skip
    return res.stdout


def secret_data(e2e: E2E) -> dict[str, dict[str, str]]:
    return {
        name: {k: e2e.kjson("get", "secret", name, "-n", NAMESPACE)["data"][k] for k in keys}
        for name, keys in GENERATED.items()
    }


def psql_local(e2e: E2E, user: str, sql: str) -> proc.Result:
    """psql inside the PostgreSQL pod over its local socket as USER (no password needed there)."""
    return e2e.kubectl(
        "exec", "-n", NAMESPACE, f"{FULLNAME}-postgresql-0", "--",
        "psql", "-X", "-At", "-U", user, "-d", "schedule", "-c", sql, check=False,
    )  # fmt: skip


# ---------------------------------------------------------------------- 1. private actuator


def test_actuator_is_not_found_through_the_ingress(e2e: E2E, install: list[str]) -> None:
    wait_for_api(e2e)
    for path in ("/api/actuator/prometheus", "/api/actuator/health", "/api/actuator/env"):
        status, body = get(e2e, path)
        assert status == 404, f"{path}: {status} {body[:200]}"
    status, body = get(e2e, "/api/healthz")
    assert (status, json.loads(body)) == (200, {"status": "UP"})


def test_metrics_answer_the_monitoring_namespace_only(
    e2e: E2E, install: list[str], images_json: Path
) -> None:
    image = dbtools_image(images_json)
    host = f"{FULLNAME}-backend.{NAMESPACE}.svc"
    scraped = fetch_from(e2e, MONITORING, image, host=host, port=8081, path="/actuator/prometheus")
    assert "jvm_memory_used_bytes" in scraped, scraped[:500]
    assert fetch_from(
        e2e, OUTSIDER, image, host=host, port=8081, path="/actuator/prometheus"
    ).strip() == ("refused")
    # The API port stays closed to other namespaces too (only the ingress controller).
    assert (
        fetch_from(e2e, OUTSIDER, image, host=host, port=8080, path="/api/healthz").strip()
        == "refused"
    )


# --------------------------------------------------------------------- 4. app is no superuser


def test_application_user_may_not_create_roles(e2e: E2E, install: list[str]) -> None:
    superuser = psql_local(
        e2e, "schedule", "select rolsuper from pg_roles where rolname = 'schedule'"
    )
    assert superuser.stdout.strip() == "f"
    denied = psql_local(e2e, "schedule", "CREATE ROLE intruder")
    assert denied.returncode != 0
    assert "permission denied to create role" in denied.stderr
    users = psql_local(
        e2e, "postgres", "select distinct usename from pg_stat_activity where datname = 'schedule' "
        "and application_name like 'PostgreSQL JDBC%'",
    ).stdout.split()  # fmt: skip
    assert users == ["schedule"], users
    owner = psql_local(
        e2e, "postgres", "select tableowner from pg_tables where tablename = 'schedules'"
    ).stdout.strip()
    assert owner == "postgres"


# ------------------------------------------------------------ 3. passwords across the lifecycle


def test_upgrade_keeps_every_generated_password(e2e: E2E, install: list[str]) -> None:
    before = secret_data(e2e)
    helm_run([*install, "--set-string", "backend.env.UPGRADE_MARK=1"])
    assert secret_data(e2e) == before
    wait_for_api(e2e)


def test_reinstall_with_the_kept_volumes_finds_the_data(e2e: E2E, install: list[str]) -> None:
    # the upgrade test before it may leave the ingress on a backend pod still being replaced
    wait_for_api(e2e)
    status, body = get(e2e, "/api/schedules", {"title": "kept", "startsAt": "2032-01-01T09:00:00Z"})
    assert status == 201, body
    created = json.loads(body)["id"]
    before = secret_data(e2e)
    h, kubeconfig = install[0], install[2]
    helm_run([h, "--kubeconfig", kubeconfig, "-n", NAMESPACE, "uninstall", RELEASE, "--wait"])
    assert secret_data(e2e) == before, "helm uninstall deleted a generated Secret"
    claims = e2e.kjson("get", "pvc", "-n", NAMESPACE)["items"]
    assert {c["metadata"]["name"] for c in claims} >= {f"data-{FULLNAME}-postgresql-0"}

    helm_run(install)
    assert secret_data(e2e) == before
    wait_for_api(e2e)
    status, body = get(e2e, f"/api/schedules/{created}")
    assert status == 200, body
    assert json.loads(body)["title"] == "kept"
