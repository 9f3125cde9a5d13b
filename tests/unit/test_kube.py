"""kube: readiness, lists and reads against an in-process stand-in for an API server."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from ci import kube
from ci.errors import EnvironmentNotReady
from tests.unit.fake_api import TOKEN, FakeApi, kubeconfig, serve

VERSION = (
    '{"major": "1", "minor": "34", "gitVersion": "v1.34.4", "gitCommit": "x", "gitTreeState":'
    ' "clean", "buildDate": "1970-01-01T00:00:00Z", "goVersion": "go1.24", "compiler": "gc",'
    ' "platform": "linux/amd64"}'
)


@pytest.fixture
def api() -> Iterator[FakeApi]:
    with serve() as fake:
        fake.routes["/version"] = (200, VERSION)
        yield fake


def test_ready_when_readyz_answers_200_with_the_token(api: FakeApi, tmp_path: Path) -> None:
    assert kube.api_ready(kubeconfig(tmp_path / "config", api.url)) is True
    assert api.seen == [("/readyz", f"Bearer {TOKEN}")]


def test_ready_without_a_token_sends_no_authorization(api: FakeApi, tmp_path: Path) -> None:
    assert kube.api_ready(kubeconfig(tmp_path / "config", api.url, token=None)) is True
    assert api.seen == [("/readyz", None)]


def test_not_ready_when_readyz_fails(api: FakeApi, tmp_path: Path) -> None:
    api.status = 500
    assert kube.api_ready(kubeconfig(tmp_path / "config", api.url)) is False
    assert [path for path, _auth in api.seen][:1] == ["/readyz"]


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


def test_preload_imports_the_client_once_and_modules_waits_for_it() -> None:
    from ci.kube import client

    kube.preload()
    first = client._Preload.thread
    kube.preload()
    assert client._Preload.thread is first is not None
    (api,) = client.modules("client")
    assert not first.is_alive()
    assert hasattr(api, "CoordinationV1Api")


def test_list_reads_the_apis_json_without_models(api: FakeApi, tmp_path: Path) -> None:
    api.routes["/apis/batch/v1/namespaces/ns/jobs"] = (
        200,
        '{"kind": "JobList", "items": [{"metadata": {"name": "migrate",'
        ' "creationTimestamp": "2026-12-07T22:00:00Z"}, "status": {"succeeded": 1}}]}',
    )
    conn = kube.connect(kube.Access(str(kubeconfig(tmp_path / "kc", api.url)), None, "test"))
    jobs = conn.list("batch/v1", "jobs", "ns", labelSelector="job-name=migrate")
    assert jobs == [
        {
            "metadata": {"name": "migrate", "creationTimestamp": "2026-12-07T22:00:00Z"},
            "status": {"succeeded": 1},
        }
    ]
    path, auth = api.seen[-1]
    assert path == "/apis/batch/v1/namespaces/ns/jobs?labelSelector=job-name%3Dmigrate"
    assert auth == f"Bearer {TOKEN}"


def test_get_answers_404_as_absent_and_raises_on_other_errors(api: FakeApi, tmp_path: Path) -> None:
    from kubernetes.client.exceptions import ApiException

    conn = kube.connect(kube.Access(str(kubeconfig(tmp_path / "kc", api.url)), None, "test"))
    assert conn.get("/api/v1/namespaces/gone") == (404, {})
    api.routes["/api/v1/namespaces/broken"] = (500, '{"message": "etcd"}')
    with pytest.raises(ApiException):
        conn.get("/api/v1/namespaces/broken")
    with pytest.raises(EnvironmentNotReady, match="namespace broken: 500"):
        conn.ensure_namespace("broken", {})
