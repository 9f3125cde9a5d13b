"""The reference app's images for real: built from dockerfiles/ on the local base images, pushed to
the local registry, and run against PostgreSQL and RabbitMQ containers on a docker network."""

from __future__ import annotations

import gzip
import os
import re
import subprocess
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import pytest
import requests

if TYPE_CHECKING:
    from tests.integration.conftest import Docker

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.integration

T = TypeVar("T")
DB = {"POSTGRES_USER": "schedules", "POSTGRES_PASSWORD": "s3cret-pw", "POSTGRES_DB": "schedules"}
MQ = {"RABBITMQ_DEFAULT_USER": "tracker", "RABBITMQ_DEFAULT_PASS": "mq-pw"}
BACKEND_ENV = {
    "DB_HOST": "postgres",
    "DB_NAME": DB["POSTGRES_DB"],
    "DB_USER": DB["POSTGRES_USER"],
    "DB_PASSWORD": DB["POSTGRES_PASSWORD"],
    "RABBITMQ_HOST": "rabbitmq",
    "RABBITMQ_USER": MQ["RABBITMQ_DEFAULT_USER"],
    "RABBITMQ_PASSWORD": MQ["RABBITMQ_DEFAULT_PASS"],
}
PG_ENV = {
    "PGHOST": "postgres",
    "PGUSER": DB["POSTGRES_USER"],
    "PGPASSWORD": DB["POSTGRES_PASSWORD"],
    "PGDATABASE": DB["POSTGRES_DB"],
}
# (image name, Dockerfile, context, build args naming the local base images)
IMAGES = {
    "backend": (
        "dockerfiles/backend.Dockerfile",
        "examples/schedule-tracker/backend",
        {"BUILD_IMAGE": "maven", "RUNTIME_IMAGE": "jre"},
    ),
    "frontend": (
        "dockerfiles/frontend.Dockerfile",
        "examples/schedule-tracker/frontend",
        {"BUILD_IMAGE": "node", "RUNTIME_IMAGE": "nginx"},
    ),
    "dbtools": ("dockerfiles/dbtools.Dockerfile", "dockerfiles", {"RUNTIME_IMAGE": "pgclient"}),
}


def wait_for(what: str, probe: Callable[[], T | None], timeout: float, interval: float = 1) -> T:
    """Calls PROBE until it returns a truthy value; fails the test naming WHAT after TIMEOUT."""
    deadline = time.monotonic() + timeout
    last: object = None
    while time.monotonic() < deadline:
        try:
            result = probe()
        except (requests.RequestException, ValueError) as exc:
            last = exc
        else:
            if result:
                return result
            last = result
        time.sleep(interval)
    pytest.fail(f"timed out after {timeout:.0f}s waiting for {what} (last: {last!r})")


@pytest.fixture(scope="module")
def images(docker: Docker, base_images: dict[str, str], local_registry: str) -> dict[str, str]:
    """Builds the three images with the classic builder and pushes them: name -> reference."""
    tag = "it"
    refs = {}
    for name, (dockerfile, context, args) in IMAGES.items():
        ref = f"{local_registry}/schedule-tracker/{name}:{tag}"
        build_args = [f"--build-arg={key}={base_images[base]}" for key, base in args.items()]
        build_args += ["--build-arg=VCS_REF=0123abc", "--build-arg=VERSION=0.0.0-it"]
        argv = ["build", "-q", "-f", str(ROOT / dockerfile), "-t", ref, *build_args]
        docker.run(*argv, str(ROOT / context), timeout=1800)
        docker.run("push", "-q", ref, timeout=600)
        refs[name] = ref
    return refs


@dataclass
class Stack:
    network: str
    postgres: str
    rabbitmq: str


@pytest.fixture(scope="module")
def stack(docker: Docker, base_images: dict[str, str], images: dict[str, str]) -> Stack:
    """PostgreSQL and RabbitMQ (the local images) on a fresh network, the database waited for."""
    network = docker.network()
    postgres = docker.start(base_images["postgres"], network=network, alias="postgres", env=DB)
    rabbitmq = docker.start(base_images["rabbitmq"], network=network, alias="rabbitmq", env=MQ)
    wait = dbtools(docker, images, network, "/wait-for-db.sh", env={"WAIT_TIMEOUT": "90"})
    assert wait.returncode == 0, f"{wait.stderr}\n{docker.logs(postgres)}"
    return Stack(network, postgres, rabbitmq)


def dbtools(
    docker: Docker,
    images: dict[str, str],
    network: str,
    *cmd: str,
    env: dict[str, str] | None = None,
    extra: tuple[str, ...] = (),
    stdin: str | None = None,
) -> subprocess.CompletedProcess[str]:
    """Runs a one-off dbtools container on NETWORK with the database's libpq variables."""
    args = ["run", "--rm", "-i", "--network", network]
    for key, value in {**PG_ENV, **(env or {})}.items():
        args += ["-e", f"{key}={value}"]
    return docker.run(*args, *extra, images["dbtools"], *cmd, check=False, stdin=stdin)


def psql(docker: Docker, images: dict[str, str], network: str, sql: str, db: str = "") -> str:
    """Runs SQL through psql in a dbtools container; returns the unaligned, tuples-only output."""
    env = {"PGDATABASE": db} if db else {}
    proc = dbtools(
        docker,
        images,
        network,
        "psql",
        "-X",
        "-q",
        "-t",
        "-A",
        "-v",
        "ON_ERROR_STOP=1",
        "-c",
        sql,
        env=env,
    )
    assert proc.returncode == 0, f"psql {sql!r} failed: {proc.stderr}"
    return proc.stdout.strip()


@dataclass
class Backend:
    container: str
    url: str


@pytest.fixture(scope="module")
def backend(docker: Docker, images: dict[str, str], stack: Stack) -> Backend:
    """The migration command, then the API server, answering UP on its health endpoint."""
    migrate = docker.run(
        "run",
        "--rm",
        "--network",
        stack.network,
        *[f"--env={k}={v}" for k, v in BACKEND_ENV.items()],
        images["backend"],
        "--migrate",
        check=False,
        timeout=600,
    )
    assert migrate.returncode == 0, f"--migrate: {migrate.stdout[-2000:]}"
    container = docker.start(
        images["backend"],
        network=stack.network,
        alias="backend",
        env=BACKEND_ENV,
        extra=("--read-only", "--tmpfs", "/tmp:rw,exec,size=64m"),
    )
    url = f"http://{docker.ip(container, stack.network)}:8080"

    def up() -> bool:
        response = requests.get(f"{url}/api/actuator/health", timeout=5)
        return response.status_code == 200 and response.json().get("status") == "UP"

    try:
        wait_for("the backend's /api/actuator/health to be UP", up, timeout=300, interval=2)
    except BaseException:
        print(docker.logs(container))
        raise
    return Backend(container, url)


@pytest.fixture(scope="module")
def frontend(docker: Docker, images: dict[str, str], stack: Stack, backend: Backend) -> str:
    """The SPA container (read-only root filesystem, tmpfs on /tmp) proxying to the backend."""
    container = docker.start(
        images["frontend"],
        network=stack.network,
        alias="frontend",
        env={"BACKEND_URL": "http://backend:8080"},
        extra=("--read-only", "--tmpfs", "/tmp:rw,size=16m"),
    )
    url = f"http://{docker.ip(container, stack.network)}:8080"
    try:
        wait_for("frontend /healthz", lambda: requests.get(f"{url}/healthz", timeout=5).ok, 60)
    except BaseException:
        print(docker.logs(container))
        raise
    return url


def create_schedule(url: str, title: str) -> dict[str, Any]:
    response = requests.post(
        f"{url}/api/schedules",
        json={"title": title, "startsAt": "2030-01-01T09:00:00Z"},
        timeout=10,
    )
    assert response.status_code == 201, response.text
    body = response.json()
    assert isinstance(body, dict)
    return body


@pytest.mark.parametrize("name", list(IMAGES))
def test_image_is_non_root_and_labelled(docker: Docker, images: dict[str, str], name: str) -> None:
    config = docker.inspect("image", images[name])["Config"]
    assert isinstance(config, dict)
    user = str(config.get("User") or "")
    assert user, f"{name} runs as root (no USER)"
    assert user.split(":", maxsplit=1)[0] not in {"0", "root"}, f"{name} runs as {user}"
    labels = config.get("Labels") or {}
    assert labels.get("org.opencontainers.image.title") == f"schedule-tracker-{name}"
    assert labels.get("org.opencontainers.image.revision") == "0123abc"
    assert labels.get("org.opencontainers.image.version") == "0.0.0-it"
    assert labels.get("org.opencontainers.image.licenses")
    assert labels.get("org.opencontainers.image.source")


@pytest.mark.parametrize("name", list(IMAGES))
def test_image_is_in_the_registry(images: dict[str, str], local_registry: str, name: str) -> None:
    repo, tag = images[name].removeprefix(f"{local_registry}/").rsplit(":", 1)
    response = requests.get(
        f"http://{local_registry}/v2/{repo}/manifests/{tag}",
        headers={"Accept": "application/vnd.docker.distribution.manifest.v2+json"},
        timeout=10,
    )
    assert response.status_code == 200, response.text
    assert response.headers["Docker-Content-Digest"].startswith("sha256:")
    config = requests.get(
        f"http://{local_registry}/v2/{repo}/blobs/{response.json()['config']['digest']}", timeout=10
    ).json()
    assert config["config"]["User"] not in {"", "0", "root"}


def test_backend_health_and_probes(backend: Backend) -> None:
    for path in ("health/liveness", "health/readiness"):
        response = requests.get(f"{backend.url}/api/actuator/{path}", timeout=5)
        assert response.status_code == 200, f"{path}: {response.text}"
        assert response.json()["status"] == "UP"
    metrics = requests.get(f"{backend.url}/api/actuator/prometheus", timeout=5)
    assert metrics.status_code == 200
    assert "jvm_memory_used_bytes" in metrics.text


def test_migration_created_the_schema(docker: Docker, images: dict[str, str], stack: Stack) -> None:
    versions = psql(
        docker,
        images,
        stack.network,
        "SELECT version FROM flyway_schema_history WHERE success ORDER BY installed_rank",
    )
    assert versions.splitlines() == ["1"]


def test_schedule_round_trip_through_rabbitmq(backend: Backend) -> None:
    created = create_schedule(backend.url, "round trip")
    assert created["title"] == "round trip"
    assert created["startsAt"] == "2030-01-01T09:00:00Z"
    assert created["confirmed"] is False

    def confirmed() -> dict[str, Any] | None:
        body = requests.get(f"{backend.url}/api/schedules/{created['id']}", timeout=5).json()
        return body if body["confirmed"] else None

    body = wait_for("the schedule's event to come back from RabbitMQ", confirmed, timeout=30)
    assert body["events"] == 1
    listed = requests.get(f"{backend.url}/api/schedules", timeout=5).json()
    assert created["id"] in [item["id"] for item in listed]


def test_invalid_schedule_is_rejected(backend: Backend) -> None:
    response = requests.post(f"{backend.url}/api/schedules", json={"title": ""}, timeout=5)
    assert response.status_code == 400
    missing = requests.get(f"{backend.url}/api/schedules/999999", timeout=5)
    assert missing.status_code == 404


def test_frontend_serves_the_spa(frontend: str) -> None:
    index = requests.get(f"{frontend}/", timeout=5)
    assert index.status_code == 200
    assert '<div id="root">' in index.text
    assert index.headers["Cache-Control"] == "no-cache"
    # Client-side routes fall back to the SPA.
    deep = requests.get(f"{frontend}/schedules/42", timeout=5)
    assert deep.status_code == 200
    assert '<div id="root">' in deep.text
    asset = re.search(r'src="(/assets/[^"]+\.js)"', index.text)
    assert asset, index.text
    js = requests.get(f"{frontend}{asset.group(1)}", headers={"Accept-Encoding": "gzip"}, timeout=5)
    assert js.status_code == 200
    assert "immutable" in js.headers["Cache-Control"]
    assert js.headers.get("Content-Encoding") == "gzip"
    assert requests.get(f"{frontend}/assets/missing.js", timeout=5).status_code == 404


def test_frontend_proxies_the_api(frontend: str, backend: Backend) -> None:
    created = create_schedule(frontend, "through the proxy")
    listed = requests.get(f"{frontend}/api/schedules", timeout=5)
    assert listed.status_code == 200
    assert listed.headers["Content-Type"].startswith("application/json")
    assert created["id"] in [item["id"] for item in listed.json()]
    health = requests.get(f"{frontend}/api/actuator/health", timeout=5).json()
    assert health["status"] == "UP"


def test_wait_for_db_times_out_with_a_clear_message(
    docker: Docker, images: dict[str, str], stack: Stack
) -> None:
    started = time.monotonic()
    proc = dbtools(
        docker,
        images,
        stack.network,
        "/wait-for-db.sh",
        env={"PGHOST": "no-such-host", "WAIT_TIMEOUT": "3", "WAIT_INTERVAL": "1"},
    )
    assert proc.returncode == 1
    assert "timed out after 3s" in proc.stderr
    assert "no-such-host" in proc.stderr
    assert time.monotonic() - started < 60


@pytest.fixture
def backup_dir(tmp_path: Path) -> Path:
    """A host directory the dbtools user (uid 10001) can write to."""
    path = tmp_path / "backups"
    path.mkdir()
    os.chmod(path, 0o777)
    return path


def test_backup_restores_the_same_rows(
    docker: Docker, images: dict[str, str], stack: Stack, backend: Backend, backup_dir: Path
) -> None:
    create_schedule(backend.url, "backed up")
    volume = ("-v", f"{backup_dir}:/backups")
    proc = dbtools(docker, images, stack.network, "/backup-db.sh", extra=volume)
    assert proc.returncode == 0, proc.stderr
    files = sorted(p.name for p in backup_dir.iterdir())
    assert len(files) == 1, files
    assert re.fullmatch(r"schedules-\d{8}T\d{6}Z\.sql\.gz", files[0])
    dump = gzip.decompress((backup_dir / files[0]).read_bytes()).decode()
    assert "CREATE TABLE public.schedules" in dump

    target = f"restore_{uuid.uuid4().hex[:6]}"
    psql(docker, images, stack.network, f"CREATE DATABASE {target}")
    restore = dbtools(
        docker,
        images,
        stack.network,
        "psql",
        "-X",
        "-q",
        "-v",
        "ON_ERROR_STOP=1",
        env={"PGDATABASE": target},
        stdin=dump,
    )
    assert restore.returncode == 0, restore.stderr
    query = "SELECT id, title, confirmed FROM schedules ORDER BY id"
    original = psql(docker, images, stack.network, query)
    assert "backed up" in original
    assert psql(docker, images, stack.network, query, db=target) == original


def test_backup_keeps_the_newest(
    docker: Docker, images: dict[str, str], stack: Stack, backup_dir: Path
) -> None:
    old = ["schedules-20200101T000000Z.sql.gz", "schedules-20210101T000000Z.sql.gz"]
    for name in old:
        (backup_dir / name).write_bytes(gzip.compress(b"-- old dump\n"))
    proc = dbtools(
        docker,
        images,
        stack.network,
        "/backup-db.sh",
        env={"BACKUP_KEEP": "2"},
        extra=("-v", f"{backup_dir}:/backups"),
    )
    assert proc.returncode == 0, proc.stderr
    remaining = sorted(p.name for p in backup_dir.iterdir())
    assert len(remaining) == 2, remaining
    assert remaining[0] == old[1]
    assert remaining[1] > old[1]


def test_backup_of_unreachable_db_fails_and_leaves_nothing(
    docker: Docker, images: dict[str, str], stack: Stack, backup_dir: Path
) -> None:
    proc = dbtools(
        docker,
        images,
        stack.network,
        "/backup-db.sh",
        env={"PGHOST": "no-such-host"},
        extra=("-v", f"{backup_dir}:/backups"),
    )
    assert proc.returncode != 0
    assert "pg_dump of schedules" in proc.stderr
    assert list(backup_dir.iterdir()) == []
