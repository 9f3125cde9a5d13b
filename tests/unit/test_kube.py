"""kube.api_ready against an in-process HTTP server standing in for an API server."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar

import pytest
import yaml

from ci import kube

TOKEN = "t0ken"


class FakeApi(BaseHTTPRequestHandler):
    """Answers ``/readyz`` with the status the test sets; records the requests it saw."""

    status: ClassVar[int] = 200
    seen: ClassVar[list[tuple[str, str | None]]] = []

    def do_GET(self) -> None:
        FakeApi.seen.append((self.path, self.headers.get("Authorization")))
        body = b"ok" if self.status == 200 else b"[-]etcd failed"
        self.send_response(self.status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        """Quiet: the test output is for the assertions."""


@pytest.fixture
def api() -> Iterator[str]:
    FakeApi.status, FakeApi.seen = 200, []
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakeApi)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def kubeconfig(path: Path, server: str, token: str | None = TOKEN) -> Path:
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


def test_ready_when_readyz_answers_200_with_the_token(api: str, tmp_path: Path) -> None:
    assert kube.api_ready(kubeconfig(tmp_path / "config", api)) is True
    assert FakeApi.seen == [("/readyz", f"Bearer {TOKEN}")]


def test_ready_without_a_token_sends_no_authorization(api: str, tmp_path: Path) -> None:
    assert kube.api_ready(kubeconfig(tmp_path / "config", api, token=None)) is True
    assert FakeApi.seen == [("/readyz", None)]


def test_not_ready_when_readyz_fails(api: str, tmp_path: Path) -> None:
    FakeApi.status = 500
    assert kube.api_ready(kubeconfig(tmp_path / "config", api)) is False


def test_not_ready_when_nothing_listens(tmp_path: Path) -> None:
    with socket.socket() as sock:  # a port just freed: nothing answers there
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    path = kubeconfig(tmp_path / "config", f"http://127.0.0.1:{port}")
    assert kube.api_ready(path, timeout=2) is False


def test_not_ready_without_a_loadable_kubeconfig(tmp_path: Path) -> None:
    assert kube.api_ready(tmp_path / "missing") is False
    (tmp_path / "broken").write_text("clusters: [", encoding="utf-8")
    assert kube.api_ready(tmp_path / "broken") is False
