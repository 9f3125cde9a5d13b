"""The reference backend's traces, logs and metrics for real, without containers: the jar built by
Maven runs against a PostgreSQL and a RabbitMQ started from their Debian packages in temporary
directories, exports OTLP/HTTP to a fake collector (a local HTTP server that records what an
OpenTelemetry Collector would receive), and NGINX runs the frontend's configuration in front of it.
The environment is the one the Helm chart sets (MANAGEMENT_OTLP_TRACING_ENDPOINT, OTEL_SERVICE_NAME,
MANAGEMENT_SERVER_PORT, ...), so what passes here is what a deployment exports."""

from __future__ import annotations

import glob
import gzip
import json
import os
import secrets
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, TypeVar

import pytest
import requests
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.trace.v1.trace_pb2 import Span

ROOT = Path(__file__).resolve().parents[2]
APP = ROOT / "examples/schedule-tracker"
JAR = APP / "backend/target/app.jar"
SERVICE = "schedule-tracker-it"

pytestmark = pytest.mark.integration

T = TypeVar("T")


def require(command: str, hint: str) -> str:
    """The path of COMMAND; fails naming what to install when it is missing (never skips)."""
    found = shutil.which(command) or next(
        iter(glob.glob(f"/usr/lib/postgresql/*/bin/{command}")), ""
    )
    if not found:
        pytest.fail(f"{command} not found: {hint}")
    return found


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_for(what: str, probe: Callable[[], T | None], timeout: float, interval: float = 1) -> T:
    """Calls PROBE until it returns a truthy value; fails the test naming WHAT after TIMEOUT."""
    deadline = time.monotonic() + timeout
    last: object = None
    while time.monotonic() < deadline:
        try:
            result = probe()
        except (requests.RequestException, OSError, ValueError) as exc:
            last = exc
        else:
            if result:
                return result
            last = result
        time.sleep(interval)
    pytest.fail(f"timed out after {timeout:.0f}s waiting for {what} (last: {last!r})")


def stop(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM, then SIGKILL after 20 s: the process this module started, by its own handle."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


@dataclass
class Collector:
    """A fake OTLP/HTTP trace receiver: every POST /v1/traces is decoded and kept."""

    port: int
    spans: list[tuple[dict[str, str], Span]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def trace(self, trace_id: str) -> list[Span]:
        with self.lock:
            return [span for _, span in self.spans if span.trace_id.hex() == trace_id]

    def resource_of(self, span_id: bytes) -> dict[str, str]:
        with self.lock:
            return next(res for res, span in self.spans if span.span_id == span_id)


def collector_handler(collector: Collector) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            if self.headers.get("Content-Encoding") == "gzip":
                body = gzip.decompress(body)
            if self.path != "/v1/traces":
                self.send_response(404)
                self.end_headers()
                return
            request = ExportTraceServiceRequest.FromString(body)
            with collector.lock:
                for resource_spans in request.resource_spans:
                    resource = {
                        a.key: a.value.string_value for a in resource_spans.resource.attributes
                    }
                    for scope in resource_spans.scope_spans:
                        collector.spans += [(resource, span) for span in scope.spans]
            self.send_response(200)
            self.send_header("Content-Type", "application/x-protobuf")
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            """Quiet: the test asserts on what was received, not on the request log."""

    return Handler


@pytest.fixture(scope="module")
def collector() -> Iterator[Collector]:
    instance = Collector(0)
    server = ThreadingHTTPServer(("127.0.0.1", 0), collector_handler(instance))
    instance.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield instance
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def workdir() -> Iterator[Path]:
    """World-traversable, so PostgreSQL (which refuses to run as root) can use it as postgres."""
    path = Path(tempfile.mkdtemp(prefix="schedule-tracing-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def as_postgres(argv: list[str]) -> list[str]:
    """PostgreSQL will not run as root: under root the command runs as the postgres account."""
    if os.geteuid() != 0:
        return argv
    return [require("runuser", "install util-linux"), "-u", "postgres", "--", *argv]


@pytest.fixture(scope="module", autouse=True)
def prerequisites() -> None:
    """What a fresh machine lacks: the Debian packages (installed when missing) and the jar
    (built with Maven when it is not there yet, as `mvn package` would leave it)."""
    initdb = next(
        iter(glob.glob("/usr/lib/postgresql/*/bin/initdb")), "/usr/lib/postgresql/15/bin/initdb"
    )
    pairs = [
        f"{initdb}=postgresql",
        "/usr/lib/rabbitmq/bin/rabbitmq-server=rabbitmq-server",
        "nginx=nginx-light",
        "java=openjdk-17-jdk-headless",
        "mvn=maven",
    ]
    ensure = subprocess.run([str(ROOT / "hack/ensure-packages.sh"), *pairs], check=False)
    if ensure.returncode != 0:
        pytest.fail(f"hack/ensure-packages.sh {' '.join(pairs)} failed")
    if not JAR.is_file():
        build = subprocess.run(
            ["mvn", "-q", "-B", "-ntp", "package", "-DskipTests"],
            cwd=JAR.parents[1], capture_output=True, text=True, check=False,
        )  # fmt: skip
        if build.returncode != 0:
            pytest.fail(f"mvn package failed:\n{build.stdout[-3000:]}{build.stderr[-2000:]}")


@pytest.fixture(scope="module")
def postgres(workdir: Path) -> Iterator[int]:
    """A throwaway cluster on a free port, trust auth on 127.0.0.1, database `schedules`."""
    hint = "install the Debian package postgresql (hack/ensure-packages.sh initdb=postgresql)"
    initdb, server, createdb = (require(c, hint) for c in ("initdb", "postgres", "createdb"))
    data = workdir / "pg"
    data.mkdir()
    if os.geteuid() == 0:
        shutil.chown(data, "postgres", "postgres")
    init = [initdb, "-D", str(data), "-U", "schedules", "--auth=trust", "-E", "UTF8"]
    subprocess.run(as_postgres(init), check=True, capture_output=True, timeout=120)
    port = free_port()
    argv = [server, "-D", str(data), "-p", str(port), "-k", str(data), "-h", "127.0.0.1"]
    with (workdir / "postgres.log").open("wb") as log:
        proc = subprocess.Popen(as_postgres(argv), stdout=log, stderr=subprocess.STDOUT)
    create = [createdb, "-h", "127.0.0.1", "-p", str(port), "-U", "schedules", "schedules"]
    wait_for(
        "PostgreSQL to accept connections",
        lambda: (
            subprocess.run(create, check=False, capture_output=True, timeout=30).returncode == 0
        ),
        timeout=60,
    )
    yield port
    stop(proc)


@pytest.fixture(scope="module")
def rabbitmq(workdir: Path) -> Iterator[int]:
    """A single node with its own epmd port, node name, cookie and data under WORKDIR."""
    server = "/usr/lib/rabbitmq/bin/rabbitmq-server"
    if not os.access(server, os.X_OK):
        require("rabbitmq-server", "install the Debian package rabbitmq-server")
    base = workdir / "rabbitmq"
    (base / "log").mkdir(parents=True)
    (base / "enabled_plugins").write_text("[].\n")
    port, epmd = free_port(), free_port()
    env = {
        **os.environ,
        "HOME": str(base),
        "ERL_EPMD_PORT": str(epmd),
        "RABBITMQ_NODENAME": f"it-{secrets.token_hex(4)}@localhost",
        "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1",
        "RABBITMQ_NODE_PORT": str(port),
        "RABBITMQ_DIST_PORT": str(free_port()),
        "RABBITMQ_MNESIA_BASE": str(base / "mnesia"),
        "RABBITMQ_LOG_BASE": str(base / "log"),
        "RABBITMQ_ENABLED_PLUGINS_FILE": str(base / "enabled_plugins"),
        "RABBITMQ_CONFIG_FILE": str(base / "rabbitmq"),
    }
    with (base / "server.out").open("wb") as log:
        proc = subprocess.Popen([server], env=env, stdout=log, stderr=subprocess.STDOUT)

    def amqp_banner() -> bool:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
            sock.sendall(b"AMQP\x00\x00\x09\x01")
            return sock.recv(1) == b"\x01"  # the Connection.Start method frame

    try:
        wait_for("RabbitMQ to accept AMQP connections", amqp_banner, timeout=90)
    except BaseException:
        print((base / "server.out").read_text(errors="replace")[-3000:])
        raise
    yield port
    stop(proc)
    epmd_bin = shutil.which("epmd") or next(iter(glob.glob("/usr/lib/erlang/erts-*/bin/epmd")), "")
    if epmd_bin:
        kill = [epmd_bin, "-port", str(epmd), "-kill"]
        subprocess.run(kill, check=False, capture_output=True, timeout=10)


@dataclass
class Backend:
    url: str
    management: str
    log: Path

    def log_lines(self) -> list[dict[str, Any]]:
        lines = []
        for line in self.log.read_text(errors="replace").splitlines():
            if line.startswith("{"):
                lines.append(json.loads(line))
        return lines


@pytest.fixture(scope="module")
def backend(workdir: Path, postgres: int, rabbitmq: int, collector: Collector) -> Iterator[Backend]:
    """The jar migrated, then started with the chart's tracing environment, ready."""
    java = require("java", "install a Java 17 runtime (openjdk-17-jre-headless)")
    if not JAR.is_file():
        pytest.fail(f"{JAR} missing: cd {JAR.parents[1]} && mvn -q -B package -DskipTests")
    port, management = free_port(), free_port()
    env = {
        **os.environ,
        "DB_HOST": "127.0.0.1",
        "DB_PORT": str(postgres),
        "RABBITMQ_HOST": "127.0.0.1",
        "RABBITMQ_PORT": str(rabbitmq),
        "SECRETS_DIR": str(workdir / "no-secrets"),
        "SERVER_PORT": str(port),
        "MANAGEMENT_SERVER_PORT": str(management),
        "OTEL_SERVICE_NAME": SERVICE,
        "OTEL_RESOURCE_ATTRIBUTES": "deployment.environment=it,service.namespace=tracing",
        "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{collector.port}",
        "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
        "MANAGEMENT_OTLP_TRACING_ENDPOINT": f"http://127.0.0.1:{collector.port}/v1/traces",
        "MANAGEMENT_TRACING_SAMPLING_PROBABILITY": "1.0",
        # Spans leave in batches: a short delay keeps the test quick.
        "MANAGEMENT_OPENTELEMETRY_TRACING_EXPORT_SCHEDULE_DELAY": "500ms",
        "JAVA_TOOL_OPTIONS": "-XX:TieredStopAtLevel=1 -Xshare:auto",
    }
    argv = [java, "-jar", str(JAR), "--migrate"]
    migrate = subprocess.run(
        argv, check=False, env=env, capture_output=True, text=True, timeout=300
    )
    assert migrate.returncode == 0, f"--migrate: {migrate.stdout[-3000:]}{migrate.stderr[-2000:]}"
    log = workdir / "backend.log"
    with log.open("wb") as out:
        proc = subprocess.Popen([java, "-jar", str(JAR)], env=env, stdout=out, stderr=out)
    mgmt = f"http://127.0.0.1:{management}"

    def ready() -> bool:
        response = requests.get(f"{mgmt}/api/actuator/health/readiness", timeout=5)
        return response.status_code == 200

    try:
        wait_for("the backend's readiness on the management port", ready, timeout=240, interval=2)
    except BaseException:
        print(log.read_text(errors="replace")[-5000:])
        stop(proc)
        raise
    yield Backend(f"http://127.0.0.1:{port}", mgmt, log)
    stop(proc)


def traceparent() -> tuple[str, str, str]:
    """A fresh sampled W3C traceparent: (header, trace id, parent span id)."""
    trace_id, parent = secrets.token_hex(16), secrets.token_hex(8)
    return f"00-{trace_id}-{parent}-01", trace_id, parent


def attrs(span: Span) -> dict[str, str]:
    return {a.key: a.value.string_value or str(a.value.int_value) for a in span.attributes}


def create(url: str, header: str, title: str, extra: dict[str, str] | None = None) -> int:
    response = requests.post(
        f"{url}/api/schedules",
        json={"title": title, "startsAt": "2030-01-01T09:00:00Z"},
        headers={"traceparent": header, **(extra or {})},
        timeout=15,
    )
    assert response.status_code == 201, response.text
    schedule_id: int = response.json()["id"]
    return schedule_id


def complete_trace(collector: Collector, trace_id: str) -> list[Span]:
    """Waits until the trace holds the server, producer and consumer spans (batches arrive late)."""

    def kinds() -> list[Span] | None:
        spans = collector.trace(trace_id)
        wanted = {Span.SPAN_KIND_SERVER, Span.SPAN_KIND_PRODUCER, Span.SPAN_KIND_CONSUMER}
        return spans if wanted <= {span.kind for span in spans} else None

    return wait_for(f"spans of trace {trace_id} at the fake collector", kinds, timeout=60)


def test_one_trace_spans_http_jdbc_and_the_broker_round_trip(
    backend: Backend, collector: Collector
) -> None:
    header, trace_id, parent = traceparent()
    create(backend.url, header, "traced")
    spans = complete_trace(collector, trace_id)
    by_kind = {span.kind: span for span in spans}
    server = by_kind[Span.SPAN_KIND_SERVER]
    assert server.parent_span_id.hex() == parent, "the server span does not continue the caller"
    assert attrs(server).get("http.url") == "/api/schedules", attrs(server)
    assert attrs(server).get("method") == "POST", attrs(server)
    queries = [attrs(span).get("jdbc.query[0]", "") for span in spans]
    assert any(q.lower().startswith("insert into schedules") for q in queries), queries
    assert any(q.lower().startswith("update schedules") for q in queries), queries
    producer, consumer = by_kind[Span.SPAN_KIND_PRODUCER], by_kind[Span.SPAN_KIND_CONSUMER]
    assert consumer.parent_span_id == producer.span_id, "the consumer does not follow the publish"
    assert "schedule-created" in consumer.name, consumer.name
    resource = collector.resource_of(server.span_id)
    assert resource.get("service.name") == SERVICE, resource
    assert resource.get("deployment.environment") == "it", resource


def test_json_log_lines_carry_the_trace_and_span_ids(
    backend: Backend, collector: Collector
) -> None:
    header, trace_id, _ = traceparent()
    schedule_id = create(backend.url, header, "logged")
    spans = complete_trace(collector, trace_id)

    def lines() -> list[dict[str, Any]]:
        return [line for line in backend.log_lines() if line.get("traceId") == trace_id]

    traced = wait_for(f"log lines with traceId {trace_id}", lines, timeout=30)
    messages = {line["message"] for line in traced}
    assert f"schedule {schedule_id} created, event published" in messages, traced
    assert f"schedule {schedule_id} confirmed" in messages, traced
    span_ids = {span.span_id.hex() for span in spans}
    assert {line["spanId"] for line in traced} <= span_ids, traced
    assert {line["service"]["name"] for line in traced} == {SERVICE}, "logs and spans differ"


def test_request_latency_histogram_on_the_management_port(backend: Backend) -> None:
    header, _, _ = traceparent()
    create(backend.url, header, "measured")
    text = requests.get(f"{backend.management}/api/actuator/prometheus", timeout=10).text
    buckets = [
        line
        for line in text.splitlines()
        if line.startswith("http_server_requests_seconds_bucket{")
        and 'uri="/api/schedules"' in line
    ]
    assert buckets, "no http_server_requests_seconds_bucket for /api/schedules"
    assert any('le="+Inf"' in line for line in buckets), buckets[:5]
    api = requests.get(f"{backend.url}/api/actuator/prometheus", timeout=10)
    assert api.status_code == 404, "the metrics must not be served on the API's port"


@pytest.fixture(scope="module")
def nginx(workdir: Path, backend: Backend) -> Iterator[tuple[str, Path]]:
    """The frontend's NGINX configuration, rendered as the image's entrypoint does, in WORKDIR."""
    binary = require("nginx", "install the Debian package nginx-light")
    conf_dir = APP / "frontend/nginx"
    home = workdir / "nginx"
    for sub in ("main.d", "conf.d"):
        (home / sub).mkdir(parents=True)
    port = free_port()
    main = (conf_dir / "nginx.conf").read_text().replace("/tmp/", f"{home}/")
    (home / "nginx.conf").write_text(main)
    workers = (conf_dir / "workers.conf.template").read_text()
    (home / "main.d/workers.conf").write_text(workers.replace("${NGINX_WORKER_PROCESSES}", "1"))
    server = (conf_dir / "default.conf.template").read_text()
    server = server.replace("${BACKEND_URL}", backend.url).replace(
        "listen 8080;", f"listen 127.0.0.1:{port};"
    )
    (home / "conf.d/default.conf").write_text(server)
    access = home / "access.log"
    argv = [binary, "-p", str(home), "-e", str(home / "error.log"), "-c", str(home / "nginx.conf")]
    with access.open("wb") as out:
        proc = subprocess.Popen([*argv, "-g", "daemon off;"], stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    wait_for("NGINX /healthz", lambda: requests.get(f"{url}/healthz", timeout=5).ok, timeout=30)
    yield url, access
    stop(proc)


def test_nginx_passes_the_trace_context_and_logs_json(
    nginx: tuple[str, Path], collector: Collector
) -> None:
    url, access = nginx
    header, trace_id, parent = traceparent()
    create(url, header, "through nginx", extra={"tracestate": "it=nginx"})
    server = next(
        span for span in complete_trace(collector, trace_id) if span.kind == Span.SPAN_KIND_SERVER
    )
    assert server.parent_span_id.hex() == parent, "NGINX did not pass traceparent on"
    assert server.trace_state == "it=nginx", "NGINX did not pass tracestate on"
    requests.get(f"{url}/api/schedules", timeout=10)  # no traceparent: an empty trace_id

    def entries() -> list[dict[str, Any]]:
        return [
            json.loads(line) for line in access.read_text().splitlines() if line.startswith("{")
        ]

    def last_two() -> list[dict[str, Any]] | None:
        lines = entries()
        return lines[-2:] if len(lines) >= 2 else None

    post, plain = wait_for("two JSON access log lines", last_two, timeout=10)
    assert post["trace_id"] == trace_id, post
    assert post["status"] == 201, post
    assert post["method"] == "POST", post
    assert post["uri"] == "/api/schedules", post
    assert isinstance(post["request_time"], float | int), post
    assert float(post["upstream_response_time"]) >= 0, post  # one upstream, in seconds
    assert post["upstream_status"] == "201", post
    assert plain["trace_id"] == "", plain
    assert plain["status"] == 200, plain
