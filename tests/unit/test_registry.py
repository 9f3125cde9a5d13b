"""Unit tests of the registry client: reference parsing, retries, auth challenges.

Retries, token auth and a registry failing halfway through tagging are behaviours a healthy
local registry never shows, so a small scripted HTTP server plays that registry; the real
registry is exercised in tests/integration/test_images.py.
"""

from __future__ import annotations

import base64
import hashlib
import json
import socket
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from ci import config, registry
from ci.errors import RegistryError
from ci.images import plan, publish

Reply = tuple[int, dict[str, str], bytes]
Script = Callable[[str, str, dict[str, str]], Reply]


class _Server:
    """Answers each request through ``script(method, path, headers)`` and records it."""

    def __init__(self, script: Script) -> None:
        self.script = script
        self.requests: list[tuple[str, str, dict[str, str]]] = []
        #: The body of the request being answered (PUT manifests).
        self.body = b""
        server = self

        class Handler(BaseHTTPRequestHandler):
            def _answer(self) -> None:
                headers = {k.lower(): v for k, v in self.headers.items()}
                length = int(headers.get("content-length", "0") or 0)
                server.body = self.rfile.read(length) if length else b""
                server.requests.append((self.command, self.path, headers))
                status, reply_headers, body = server.script(self.command, self.path, headers)
                self.send_response(status)
                for key, value in reply_headers.items():
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(body)

            do_GET = do_HEAD = do_PUT = do_DELETE = do_POST = _answer

            def log_message(self, *_args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.host = f"127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def serve() -> Iterator[Callable[[Script], _Server]]:
    servers: list[_Server] = []

    def start(script: Script) -> _Server:
        servers.append(_Server(script))
        return servers[-1]

    yield start
    for s in servers:
        s.close()


def _client(host: str, **kwargs: object) -> tuple[registry.Client, list[float]]:
    slept: list[float] = []
    client = registry.Client(host, sleep=slept.append, **kwargs)  # type: ignore[arg-type]
    return client, slept


DIGEST = "sha256:" + "ab" * 32


# ----------------------------------------------------------------------------- references


@pytest.mark.parametrize(
    ("ref", "expected"),
    [
        ("127.0.0.1:5000/ns/api:main", ("127.0.0.1:5000", "ns/api", "main")),
        ("ghcr.io/acme/app@sha256:abc", ("ghcr.io", "acme/app", "sha256:abc")),
        ("localhost/app", ("localhost", "app", "latest")),
        ("debian:bookworm", ("registry-1.docker.io", "library/debian", "bookworm")),
        ("bitnami/nginx", ("registry-1.docker.io", "bitnami/nginx", "latest")),
    ],
)
def test_split_reference(ref: str, expected: tuple[str, str, str]) -> None:
    assert registry.split_reference(ref) == expected


@pytest.mark.parametrize(
    ("host", "loopback"),
    [("127.0.0.1:5000", True), ("localhost", True), ("ghcr.io", False), ("10.0.0.1:5000", False)],
)
def test_is_loopback(host: str, loopback: bool) -> None:
    assert registry.is_loopback(host) is loopback


def test_plain_http_only_for_local_or_insecure_registries() -> None:
    assert registry.Client("127.0.0.1:5000").base_url == "http://127.0.0.1:5000"
    assert registry.Client("ghcr.io").base_url == "https://ghcr.io"
    assert registry.Client("reg.lan:5000", insecure=True).base_url == "http://reg.lan:5000"


def test_pick_platform_skips_attestations() -> None:
    index = {
        "manifests": [
            {"digest": "sha256:att", "platform": {"os": "unknown", "architecture": "unknown"}},
            {"digest": "sha256:arm", "platform": {"os": "linux", "architecture": "arm64"}},
            {"digest": "sha256:amd", "platform": {"os": "linux", "architecture": "amd64"}},
        ]
    }
    assert registry.pick_platform(index, "linux/amd64") == "sha256:amd"
    assert registry.pick_platform(index, "linux/s390x") is None


# ----------------------------------------------------------------------------- retries


def test_transient_errors_are_retried_with_backoff(serve: Callable[[Script], _Server]) -> None:
    answers = iter([503, 502, 200])

    def script(_m: str, _p: str, _h: dict[str, str]) -> Reply:
        return next(answers), {"Docker-Content-Digest": DIGEST}, b""

    server = serve(script)
    client, slept = _client(server.host)
    assert client.digest("ns/api", "main") == DIGEST
    assert slept == [0.5, 1.0]
    assert len(server.requests) == 3


def test_missing_tag_is_none_not_an_error(serve: Callable[[Script], _Server]) -> None:
    server = serve(lambda *_: (404, {}, b'{"errors":[{"code":"MANIFEST_UNKNOWN"}]}'))
    client, slept = _client(server.host)
    assert client.digest("ns/api", "nope") is None
    assert slept == []


def test_refusal_is_not_retried_and_quotes_the_registry(serve: Callable[[Script], _Server]) -> None:
    body = json.dumps({"errors": [{"code": "DENIED", "message": "requested access is denied"}]})
    server = serve(lambda *_: (403, {"Content-Type": "application/json"}, body.encode()))
    client, slept = _client(server.host)
    with pytest.raises(
        RegistryError, match=r"GET .*: HTTP 403 DENIED: requested access is denied$"
    ):
        client.manifest("ns/api", "main")
    with pytest.raises(RegistryError, match=r"HEAD .*: HTTP 403 Forbidden$"):  # HEAD has no body
        client.digest("ns/api", "main")
    assert slept == []


def test_unreachable_registry_is_one_line_after_retries() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    client, slept = _client(f"127.0.0.1:{port}", retries=2)
    with pytest.raises(RegistryError) as info:
        client.ping()
    assert str(info.value) == (
        f"registry 127.0.0.1:{port} unreachable: connection refused (after 3 attempts)"
    )
    assert slept == [0.5, 1.0]


# ----------------------------------------------------------------------------- auth


def test_bearer_challenge_fetches_a_token_with_the_credentials(
    serve: Callable[[Script], _Server],
) -> None:
    expected_basic = "Basic " + base64.b64encode(b"bot:pw").decode()
    host: list[str] = []

    def script(_m: str, path: str, headers: dict[str, str]) -> Reply:
        if path.startswith("/token"):
            if headers.get("authorization") != expected_basic:
                return 401, {}, b""
            return 200, {"Content-Type": "application/json"}, b'{"token": "tok-1"}'
        if headers.get("authorization") == "Bearer tok-1":
            return 200, {"Docker-Content-Digest": DIGEST}, b""
        challenge = f'Bearer realm="http://{host[0]}/token",service="reg"'
        return 401, {"WWW-Authenticate": challenge}, b""

    server = serve(script)
    host.append(server.host)
    client, _ = _client(server.host, username="bot", password="pw")
    assert client.digest("ns/api", "main") == DIGEST
    token_request = next(p for _m, p, _h in server.requests if p.startswith("/token"))
    assert "scope=repository%3Ans%2Fapi%3Apull" in token_request
    assert "service=reg" in token_request
    # The token is reused for the same scope: no second token request.
    client.digest("ns/api", "other")
    assert sum(p.startswith("/token") for _m, p, _h in server.requests) == 1


def test_refused_token_says_to_check_credentials(serve: Callable[[Script], _Server]) -> None:
    host: list[str] = []

    def script(_m: str, path: str, _h: dict[str, str]) -> Reply:
        if path.startswith("/token"):
            return 401, {}, b""
        return 401, {"WWW-Authenticate": f'Bearer realm="http://{host[0]}/token"'}, b""

    server = serve(script)
    host.append(server.host)
    client, _ = _client(server.host, username="bot", password="wrong")
    with pytest.raises(RegistryError, match="token request refused: HTTP 401"):
        client.digest("ns/api", "main")


# ----------------------------------------------------------------------------- tagging


class _Manifests:
    """A registry's manifest store, failing PUTs of chosen tags: a registry that breaks midway."""

    def __init__(self, fail_tags: set[str]) -> None:
        self.fail_tags = fail_tags
        self.by_digest: dict[str, bytes] = {}
        self.tags: dict[str, str] = {}
        self.server: _Server | None = None

    def add(self, body: bytes, *tags: str) -> str:
        digest = "sha256:" + hashlib.sha256(body).hexdigest()
        self.by_digest[digest] = body
        for tag in tags:
            self.tags[tag] = digest
        return digest

    def __call__(self, method: str, path: str, _h: dict[str, str]) -> Reply:
        ref = path.rsplit("/", 1)[-1]
        if method == "DELETE":
            self.by_digest.pop(ref, None)
            self.tags = {t: d for t, d in self.tags.items() if d != ref}
            return 202, {}, b""
        if method == "PUT":
            if ref in self.fail_tags:
                return 500, {}, b""
            assert self.server is not None
            return 201, {"Docker-Content-Digest": self.add(self.server.body, ref)}, b""
        digest = ref if ref.startswith("sha256:") else self.tags.get(ref, "")
        if digest not in self.by_digest:
            return 404, {}, b""
        headers = {"Docker-Content-Digest": digest, "Content-Type": registry.DOCKER_MANIFEST}
        return 200, headers, self.by_digest[digest]


def _job() -> plan.Job:
    image = config.Image("api", Path("/x/Dockerfile"), Path("/x"), {}, ("linux/amd64",), "api")
    tags = ("a" * 40, "aaaaaaa", "main", "inputs-new")
    return plan.Job(image, "127.0.0.1:1/ns/api", tags, "new", {}, {}, ())


def test_a_failed_content_tag_leaves_no_tag_moved(serve: Callable[[Script], _Server]) -> None:
    store = _Manifests(fail_tags={"inputs-new"})
    old = store.add(b'{"schemaVersion":2,"old":true}', "main")
    new = store.add(b'{"schemaVersion":2,"new":true}', "a" * 40)
    store.server = server = serve(store)
    client, _ = _client(server.host, retries=1)
    job = _job()
    with pytest.raises(RegistryError):
        publish.add_tags(job, client, new, list(job.tags[1:]), lambda *_: None, fresh=True)
    assert store.tags == {"main": old}  # moved during the run, then put back
    assert new not in store.by_digest  # this run's image is gone, and every tag it got
    puts = [p.rsplit("/", 1)[-1] for m, p, _h in server.requests if m == "PUT"]
    assert puts[:2] == ["aaaaaaa", "main"]
    assert puts[-1] == "main"  # the restore


def test_a_failed_tag_on_an_existing_image_deletes_nothing(
    serve: Callable[[Script], _Server],
) -> None:
    store = _Manifests(fail_tags={"main"})
    digest = store.add(b'{"schemaVersion":2}', "a" * 40, "inputs-new")
    store.server = server = serve(store)
    client, _ = _client(server.host, retries=0)
    job = _job()
    with pytest.raises(RegistryError):
        publish.add_tags(job, client, digest, list(job.tags), lambda *_: None)
    assert digest in store.by_digest
    assert not [m for m, _p, _h in server.requests if m == "DELETE"]


def test_tagging_the_same_content_twice_writes_nothing(serve: Callable[[Script], _Server]) -> None:
    store = _Manifests(fail_tags=set())
    digest = store.add(b'{"schemaVersion":2}', "a" * 40)
    store.server = server = serve(store)
    client, _ = _client(server.host, retries=0)
    job = _job()
    publish.add_tags(job, client, digest, list(job.tags[1:]), lambda *_: None)
    assert {store.tags[t] for t in job.tags} == {digest}
    first = sum(m == "PUT" for m, _p, _h in server.requests)
    publish.add_tags(job, client, digest, list(job.tags[1:]), lambda *_: None)
    assert sum(m == "PUT" for m, _p, _h in server.requests) == first == 3


# ----------------------------------------------------------------------------- tags and blobs


def test_tags_follow_the_registrys_pages(serve: Callable[[Script], _Server]) -> None:
    def script(_method: str, path: str, _headers: dict[str, str]) -> Reply:
        if path == "/v2/ns/api/tags/list?n=1000":
            link = '</v2/ns/api/tags/list?n=1000&last=b>; rel="next"'
            return 200, {"Link": link}, json.dumps({"tags": ["a", "b"]}).encode()
        if path == "/v2/ns/api/tags/list?n=1000&last=b":
            return 200, {}, json.dumps({"tags": ["c"]}).encode()
        return 404, {}, b""

    server = serve(script)
    client, _ = _client(server.host)
    assert client.tags("ns/api") == ["a", "b", "c"]
    assert client.tags("ns/none") == []


def test_put_blob_uploads_in_one_request(serve: Callable[[Script], _Server]) -> None:
    body = b'{"config": {}}'
    digest = "sha256:" + hashlib.sha256(body).hexdigest()

    def script(method: str, path: str, _headers: dict[str, str]) -> Reply:
        if method == "POST" and path == "/v2/ns/api/blobs/uploads/":
            return 202, {"Location": "/v2/ns/api/blobs/uploads/u1?state=x"}, b""
        if method == "PUT" and path == f"/v2/ns/api/blobs/uploads/u1?state=x&digest={digest}":
            return 201, {}, b""
        return 400, {}, b""

    server = serve(script)
    client, _ = _client(server.host)
    assert client.put_blob("ns/api", body) == digest
    assert server.body == body


def test_connection_failure_is_unreachable_exit_3() -> None:
    client, _ = _client(f"127.0.0.1:{_free_port()}", retries=0)
    with pytest.raises(registry.RegistryUnreachable) as caught:
        client.digest("ns/api", "main")
    assert caught.value.exit_code == 3
    assert isinstance(caught.value, RegistryError)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
