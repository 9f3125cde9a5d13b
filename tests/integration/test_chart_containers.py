"""The chart's pod settings work with the real images, run by Docker.

The rendered StatefulSets and Jobs are turned into `docker run` flags as close to what the
kubelet does as Docker allows: the user and groups of the securityContext, a read-only root
filesystem, all capabilities dropped, no privilege escalation, each volumeMount a fresh 0777
folder (an emptyDir or a new PersistentVolume) holding the files of its Secret (a test
password per key) or ConfigMap, and the container's command and args. PostgreSQL and RabbitMQ
must then pass their own readiness probes; the migration Job's init containers (pgpass file,
wait-for-db as the admin user, the application user's and the monitoring role's creation) and the
backup CronJob's containers must succeed against that PostgreSQL, as the application user, which
may not create roles; the backup lands in the /backups volume. The postgres_exporter Deployment
then logs in as the monitoring role with its mounted password file and reports pg_up 1, and
RabbitMQ's rabbitmq_prometheus plugin (from the chart's enabled_plugins) serves /metrics.
"""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import requests

from ci import chart, config, helm
from ci.errors import CiError

if TYPE_CHECKING:
    from tests.integration.conftest import Docker

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]

PASSWORD = "it-Secret-123"
#: The admin user's password differs, so that a container given the wrong file fails to log in.
ADMIN_PASSWORD = "it-Admin:456"
#: The monitoring role's own, so the exporter logs in only with the file of its own key.
METRICS_PASSWORD = "it-Metrics@789"


@pytest.fixture(scope="module")
def dbtools_image(docker: Docker, base_images: dict[str, str]) -> Iterator[str]:
    """dockerfiles/dbtools.Dockerfile on the local PostgreSQL client base image."""
    tag = f"chart-it/dbtools:{uuid.uuid4().hex[:8]}"
    docker.run(
        "build", "-q", "-t", tag, "-f", str(ROOT / "dockerfiles/dbtools.Dockerfile"),
        "--build-arg", f"RUNTIME_IMAGE={base_images['pgclient']}", str(ROOT / "dockerfiles"),
    )  # fmt: skip
    yield tag
    docker.run("image", "rm", "-f", tag, check=False)


@pytest.fixture(scope="module")
def rendered(dbtools_image: str, base_images: dict[str, str]) -> chart.Rendered:
    try:
        h = helm.find(3)
    except CiError as exc:
        pytest.fail(f"Helm 3 is needed: {exc} (run `make tools`)")
    cfg = config.load(ROOT / "ci.yaml")
    repo, tag = dbtools_image.split(":")
    # Tags as strings: a tag of digits only (a short SHA can be one) is otherwise a number.
    strings = {"dbtools.image.repository": repo, "dbtools.image.tag": tag}
    images = (
        ("postgresql", "postgres"),
        ("rabbitmq", "rabbitmq"),
        ("postgresql.metrics", "postgres-exporter"),
    )
    for key, base in images:
        image_repo, image_tag = base_images[base].split(":")
        strings |= {f"{key}.image.repository": image_repo, f"{key}.image.tag": image_tag}
    return chart.render(cfg, h, cfg.environment("staging"), ["backup.enabled=true"], strings)


def find(rendered: chart.Rendered, kind: str, suffix: str) -> dict[str, Any]:
    (obj,) = [m.obj for m in rendered.manifests if m.kind == kind and m.name.endswith(suffix)]
    return obj


def pod_of(obj: dict[str, Any]) -> dict[str, Any]:
    spec = obj["spec"]
    if obj["kind"] == "CronJob":
        spec = spec["jobTemplate"]["spec"]
    pod: dict[str, Any] = spec["template"]["spec"]
    return pod


def secret_value(key: str) -> str:
    if key.startswith("metrics"):
        return METRICS_PASSWORD
    return ADMIN_PASSWORD if key.startswith("admin") else PASSWORD


def volume_files(rendered: chart.Rendered, pod: dict[str, Any]) -> dict[str, dict[str, str]]:
    """The files the kubelet would put in each Secret, projected or ConfigMap volume."""
    files: dict[str, dict[str, str]] = {}
    for volume in pod.get("volumes") or []:
        sources = []
        if "secret" in volume:
            sources = [volume["secret"]]
        elif "projected" in volume:
            sources = [s["secret"] for s in volume["projected"]["sources"] if "secret" in s]
        if "configMap" in volume:
            (cm,) = [
                m.obj
                for m in rendered.manifests
                if m.kind == "ConfigMap" and m.name == volume["configMap"]["name"]
            ]
            files[volume["name"]] = dict(cm["data"])
        elif sources:
            files[volume["name"]] = {
                item["path"]: secret_value(item["key"])
                for source in sources
                for item in source.get("items", [])
            }
    return files


def docker_flags(
    pod: dict[str, Any],
    container: dict[str, Any],
    volumes: Path,
    files: dict[str, dict[str, str]] | None = None,
) -> list[str]:
    """`docker run` flags for the container's securityContext and volume mounts."""
    psc = pod.get("securityContext") or {}
    sc = {**psc, **(container.get("securityContext") or {})}
    flags = ["--user", f"{sc['runAsUser']}:{sc.get('runAsGroup', sc['runAsUser'])}"]
    if "fsGroup" in psc:
        flags += ["--group-add", str(psc["fsGroup"])]
    if sc.get("readOnlyRootFilesystem"):
        flags.append("--read-only")
    if "ALL" in (sc.get("capabilities") or {}).get("drop", []):
        flags += ["--cap-drop", "ALL"]
    if sc.get("allowPrivilegeEscalation") is False:
        flags += ["--security-opt", "no-new-privileges"]
    for mount in container.get("volumeMounts") or []:
        folder = volumes / mount["name"]
        folder.mkdir(parents=True, exist_ok=True)
        folder.chmod(0o777)  # what an emptyDir or a fresh volume with fsGroup allows
        for path, content in (files or {}).get(mount["name"], {}).items():
            (folder / path).write_text(content)
            (folder / path).chmod(0o555)
        flags += ["-v", f"{folder}:{mount['mountPath']}"]
    if container.get("command"):
        flags += ["--entrypoint", container["command"][0]]
    return flags


def container_env(container: dict[str, Any], **override: str) -> dict[str, str]:
    env = {}
    for item in container.get("env") or []:
        assert "value" in item, f"{container['name']}: {item['name']} is not a plain value"
        env[item["name"]] = item["value"]
    return {**env, **override}


def container_args(container: dict[str, Any]) -> list[str]:
    return [*container.get("command", [])[1:], *container.get("args", [])]


def wait_for(check: Any, what: str, logs: Any, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(1)
    pytest.fail(f"{what} did not pass within {timeout:.0f}s; container log:\n{logs()[-1500:]}")


def probe_passes(docker: Docker, name: str, probe: dict[str, Any], ports: dict[str, int]) -> bool:
    """Run a readiness/liveness probe the way the kubelet would, inside the container."""
    if "exec" in probe:
        argv = probe["exec"]["command"]
    else:
        port = probe["tcpSocket"]["port"]
        number = ports.get(port, port)
        argv = ["bash", "-c", f"exec 3<>/dev/tcp/127.0.0.1/{number}"]
    return docker.run("exec", name, *argv, check=False, timeout=60).returncode == 0


def start(
    docker: Docker, rendered: chart.Rendered, obj: dict[str, Any], network: str, volumes: Path
) -> tuple[str, dict[str, Any]]:
    pod = pod_of(obj)
    (container,) = pod["containers"]
    name = docker.start(
        container["image"],
        *container_args(container),
        network=network,
        alias=obj["metadata"]["name"],
        env=container_env(container),
        extra=docker_flags(
            pod, container, volumes / obj["metadata"]["name"], volume_files(rendered, pod)
        ),
    )
    return name, container


def run_pod(
    docker: Docker,
    rendered: chart.Rendered,
    pod: dict[str, Any],
    network: str,
    volumes: Path,
    **env: str,
) -> list[str]:
    """Runs the init containers, then the containers, one after the other as the kubelet would
    (sharing the pod's volumes); returns each one's output, failing on the first that fails."""
    files = volume_files(rendered, pod)
    outputs = []
    for container in [*pod.get("initContainers", []), *pod["containers"]]:
        done = docker.run(
            "run", "--rm", "--network", network,
            *docker_flags(pod, container, volumes, files),
            *[f"--env={k}={v}" for k, v in container_env(container, **env).items()],
            container["image"], *container_args(container), timeout=180, check=False,
        )  # fmt: skip
        assert done.returncode == 0, f"{container['name']}:\n{done.stdout}\n{done.stderr}"
        outputs.append(done.stdout)
    return outputs


def test_databases_jobs_and_backup_run_with_the_chart_settings(
    docker: Docker, rendered: chart.Rendered, tmp_path: Path
) -> None:
    network = docker.network()
    services = {}
    for suffix in ("-postgresql", "-rabbitmq"):
        obj = find(rendered, "StatefulSet", suffix)
        services[suffix] = start(docker, rendered, obj, network, tmp_path)
    for suffix, (name, container) in services.items():
        ports = {p["name"]: p["containerPort"] for p in container.get("ports", [])}

        def ready(
            name: str = name, container: dict[str, Any] = container, ports: dict[str, int] = ports
        ) -> bool:
            return probe_passes(docker, name, container["readinessProbe"], ports)

        wait_for(ready, f"{suffix} readiness probe", lambda name=name: docker.logs(name))
        assert probe_passes(docker, name, container["livenessProbe"], ports), suffix

    # The migration's init containers (the migration itself needs the backend image).
    job_pod = dict(pod_of(find(rendered, "Job", "-migration")))
    job_pod["containers"] = []
    outputs = run_pod(docker, rendered, job_pod, network, tmp_path / "migration", WAIT_TIMEOUT="60")
    by_name = dict(zip([c["name"] for c in job_pod["initContainers"]], outputs, strict=True))
    assert "is ready" in by_name["wait-for-db"]
    assert "database user schedule: login, no superuser" in by_name["app-user"]
    assert "monitoring user metrics: login, member of pg_monitor only" in by_name["metrics-user"]

    exporter, _ = start(
        docker, rendered, find(rendered, "Deployment", "-postgresql-metrics"), network, tmp_path
    )
    metrics = f"http://{docker.ip(exporter, network)}:9187/metrics"
    wait_for(lambda: "\npg_up 1" in scrape(metrics), "pg_up 1", lambda: docker.logs(exporter))
    mq_metrics = f"http://{docker.ip(services['-rabbitmq'][0], network)}:15692/metrics"
    wait_for(
        lambda: "rabbitmq_build_info" in scrape(mq_metrics),
        "RabbitMQ /metrics",
        lambda: docker.logs(services["-rabbitmq"][0]),
    )

    cron_pod = pod_of(find(rendered, "CronJob", "-backup"))
    (backup,) = cron_pod["containers"]
    volumes = tmp_path / "backup"
    backed_up = run_pod(docker, rendered, cron_pod, network, volumes)[-1]
    assert "backup-db: wrote /backups/" in backed_up
    # The backup's user is the application's: it logs in, and may not create roles.
    denied = docker.run(
        "run", "--rm", "--network", network, *docker_flags(cron_pod, backup, volumes),
        *[f"--env={k}={v}" for k, v in container_env(backup).items()],
        "--entrypoint", "psql", backup["image"], "-X", "-c", "CREATE ROLE intruder",
        check=False, timeout=120,
    )  # fmt: skip
    assert denied.returncode != 0
    assert "permission denied to create role" in denied.stderr
    mount = next(m for m in backup["volumeMounts"] if m["mountPath"] == "/backups")
    dumps = list((volumes / mount["name"]).glob("schedule-*.sql.gz"))
    assert len(dumps) == 1
    assert dumps[0].stat().st_size > 0


def scrape(url: str) -> str:
    """The body of a metrics endpoint, empty while it does not answer."""
    try:
        return requests.get(url, timeout=5).text
    except requests.RequestException:
        return ""


@pytest.mark.parametrize("status", ["UP", "DOWN"])
def test_helm_test_pod_checks_the_backend_health(
    docker: Docker,
    rendered: chart.Rendered,
    base_images: dict[str, str],
    tmp_path: Path,
    status: str,
) -> None:
    """The `helm test` pod against a stand-in backend (NGINX serving the health document)."""
    test_pod = find(rendered, "Pod", "-test")
    assert test_pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
    pod = test_pod["spec"]
    (container,) = pod["containers"]
    backend = find(rendered, "Service", "-backend")["metadata"]["name"]
    health = tmp_path / "html" / "api"
    health.mkdir(parents=True)
    (health / "healthz").write_text(f'{{"status":"{status}"}}')
    network = docker.network()
    docker.start(
        base_images["nginx"], network=network, alias=backend,
        extra=["-v", f"{tmp_path / 'html'}:/usr/share/nginx/html:ro"],
    )  # fmt: skip
    # a DOWN backend fails after 6 s instead of the chart's timeout
    script = re.sub(r"\b60\b", "6", container["command"][-1])
    assert "SECONDS + 6" in script
    result = docker.run(
        "run", "--rm", "--network", network,
        *docker_flags(pod, container, tmp_path / "volumes"),
        container["image"], *container["command"][1:-1], script,
        check=False, timeout=120,
    )  # fmt: skip
    if status == "UP":
        assert result.returncode == 0, result.stdout + result.stderr
        assert "backend health: UP" in result.stdout
    else:
        assert result.returncode == 1
        assert "backend health endpoint /api/healthz did not report UP" in result.stderr
        assert result.stderr.rstrip().endswith('{"status":"DOWN"}')
        assert "HTTP/1.1" not in result.stderr  # the body only, not the headers
