"""An in-process HTTP server standing in for a Kubernetes API server, and a kubeconfig for it.

Enough for readiness checks (``/readyz``) without a cluster: the status it answers is set per
test, and the requests it saw are kept so a test can check what was sent.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import yaml

TOKEN = "t0ken"


@dataclass
class FakeApi:
    """The server's address, the status ``/readyz`` answers, and the requests seen."""

    url: str = ""
    status: int = 200
    seen: list[tuple[str, str | None]] = field(default_factory=list)
    #: Other paths' answers: path (without the query) -> (status, JSON body).
    routes: dict[str, tuple[int, str]] = field(default_factory=dict)


@contextmanager
def serve() -> Iterator[FakeApi]:
    """Run a fake API server on a free loopback port until the block ends."""
    api = FakeApi()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            api.seen.append((self.path, self.headers.get("Authorization")))
            status, body = api.status, b"ok" if api.status == 200 else b"[-]etcd failed"
            route = api.routes.get(self.path.split("?")[0].rstrip("/"))
            if route is not None:
                status, body = route[0], route[1].encode()
            elif self.path != "/readyz":
                status, body = 404, b'{"kind": "Status", "code": 404}'
            self.send_response(status)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            """Quiet: the test output is for the assertions."""

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    api.url = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        yield api
    finally:
        server.shutdown()
        server.server_close()


def kubeconfig(path: Path, server: str, token: str | None = TOKEN) -> Path:
    """A kubeconfig with one context for ``server`` (with a bearer token unless None)."""
    user = {"token": token} if token else {}
    data = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "c", "cluster": {"server": server}}],
        "users": [{"name": "u", "user": user}],
        "contexts": [{"name": "x", "context": {"cluster": "c", "user": "u"}}],
        "current-context": "x",
    }
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return path
