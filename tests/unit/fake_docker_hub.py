"""A fake Docker Hub: two in-process HTTP servers answering like auth.docker.io and
registry-1.docker.io, for the base image digest lookups.

The registry answers a manifest request without a token as Docker Hub does: 401 with a Bearer
challenge naming the auth server, the service ``registry.docker.io`` and the pull scope. The
auth server hands out an anonymous token for a scope; the registry accepts only that token for
that repository. A manifest answer carries ``Docker-Content-Digest``: the index digest when the
request accepts manifest lists, else a single-platform manifest's digest (as Docker Hub falls
back), so a test can tell which ``Accept`` was sent. ``fail`` answers the next requests with a
status (503: the retry policy's business). Every request is kept in ``seen``.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

SERVICE = "registry.docker.io"
INDEX_TYPE = "application/vnd.docker.distribution.manifest.list.v2+json"
OCI_INDEX_TYPE = "application/vnd.oci.image.index.v1+json"


@dataclass
class Seen:
    """One request as the fake received it."""

    server: str  # "auth" or "registry"
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]


@dataclass
class FakeDockerHub:
    """Addresses of both fakes, what they hold, and the requests they saw."""

    #: ``host:port`` of the fake registry API (what ``registry.Client`` takes as host).
    registry_host: str = ""
    auth_url: str = ""
    #: ``(library/node, 22)`` -> index digest; a tag not here answers 404 MANIFEST_UNKNOWN.
    manifests: dict[tuple[str, str], str] = field(default_factory=dict)
    #: Statuses the registry answers the next requests with, before any normal answer.
    fail: list[int] = field(default_factory=list)
    seen: list[Seen] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def token_for(self, scope: str) -> str:
        return "anon." + scope.replace(":", ".").replace("/", ".")

    def requests(self, server: str) -> list[Seen]:
        return [s for s in self.seen if s.server == server]


def _handler(hub: FakeDockerHub, server: str) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def _record(self) -> tuple[str, dict[str, list[str]]]:
            parts = urlsplit(self.path)
            query = parse_qs(parts.query)
            with hub._lock:
                hub.seen.append(Seen(server, self.command, parts.path, query, dict(self.headers)))
            return parts.path, query

        def _answer(self, status: int, headers: dict[str, str], body: bytes = b"") -> None:
            self.send_response(status)
            for key, value in headers.items():
                self.send_header(key, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        def do_GET(self) -> None:
            if server == "auth":
                self._token()
            else:
                self._manifest()

        def do_HEAD(self) -> None:
            self._manifest()

        def _token(self) -> None:
            path, query = self._record()
            scope = (query.get("scope") or [""])[0]
            if path != "/token" or query.get("service") != [SERVICE] or not scope:
                self._answer(400, {}, b'{"details":"bad token request"}')
                return
            body = f'{{"token": "{hub.token_for(scope)}"}}'.encode()
            self._answer(200, {"Content-Type": "application/json"}, body)

        def _manifest(self) -> None:
            path, _ = self._record()
            with hub._lock:
                status = hub.fail.pop(0) if hub.fail else None
            if status is not None:
                self._answer(status, {})
                return
            repo, sep, tag = path.removeprefix("/v2/").rpartition("/manifests/")
            scope = f"repository:{repo}:pull"
            if self.headers.get("Authorization") != f"Bearer {hub.token_for(scope)}":
                challenge = (
                    f'Bearer realm="{hub.auth_url}/token",service="{SERVICE}",scope="{scope}"'
                )
                self._answer(401, {"WWW-Authenticate": challenge}, b'{"errors":[]}')
                return
            digest = hub.manifests.get((repo, tag)) if sep else None
            if digest is None:
                body = b'{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown"}]}'
                self._answer(404, {"Content-Type": "application/json"}, body)
                return
            accept = self.headers.get("Accept", "")
            index = INDEX_TYPE in accept or OCI_INDEX_TYPE in accept
            kind = INDEX_TYPE if index else "application/vnd.docker.distribution.manifest.v2+json"
            found = digest if index else "sha256:" + "0" * 64  # the default platform's manifest
            self._answer(200, {"Content-Type": kind, "Docker-Content-Digest": found})

        def log_message(self, format: str, *args: object) -> None:
            """Quiet: the test output is for the assertions."""

    return Handler


@contextmanager
def _server(handler: type[BaseHTTPRequestHandler]) -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield f"127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@contextmanager
def serve() -> Iterator[FakeDockerHub]:
    """Run the fake auth server and the fake registry on free loopback ports."""
    hub = FakeDockerHub()
    with ExitStack() as stack:
        hub.auth_url = "http://" + stack.enter_context(_server(_handler(hub, "auth")))
        hub.registry_host = stack.enter_context(_server(_handler(hub, "registry")))
        yield hub
