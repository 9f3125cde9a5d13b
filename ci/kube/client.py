"""A connected Kubernetes client, and whether an API server is ready.

The official ``kubernetes`` package is imported on first use (it is slow to import and
``ci --help`` must stay fast); its objects are turned into plain dicts (the API's camelCase
JSON) at once, so that every decision about them is a pure function on a dict.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Mapping
from functools import cached_property
from pathlib import Path
from typing import Any

from ci import errors
from ci.errors import EnvironmentNotReady
from ci.kube.checks import container_statuses
from ci.kube.kubeconfig import Access

#: Pod Security Standards labels every deploy namespace carries.
PSS_LABELS = {
    f"pod-security.kubernetes.io/{mode}": "restricted" for mode in ("enforce", "warn", "audit")
}
LOG_LINES = 20


def configuration(acc: Access) -> Any:
    """The client configuration (server, TLS, credentials) of the kubeconfig ``acc`` names.

    One reader for the typed client and for plain HTTP sessions through the API server's
    service proxy, so both trust and authenticate the same way.
    """
    client, config = modules("client", "config")
    conf = client.Configuration()
    try:
        config.load_kube_config(
            config_file=acc.kubeconfig, context=acc.context, client_configuration=conf
        )
    except Exception as exc:  # ConfigException, OSError, YAML errors: all "cannot connect"
        raise EnvironmentNotReady(
            f"cannot load kubeconfig {acc.source}: {first_line(exc)}"
        ) from None
    return conf


class Kube:
    """A connected client: the typed APIs plus conversion of their objects to dicts."""

    def __init__(self, acc: Access, request_timeout: float = 15.0) -> None:
        (client,) = modules("client")
        conf = configuration(acc)
        conf.retries = 1
        self.access = acc
        self.timeout = request_timeout
        self.api: Any = client.ApiClient(conf)
        self.version_api: Any = client.VersionApi(self.api)

    # The typed APIs, made on first use: CoreV1Api alone is a 4.5 MB module whose loading
    # took half a second, and a deploy that skips reads through ``list`` and ``get`` only.
    @cached_property
    def core(self) -> Any:
        return modules("client")[0].CoreV1Api(self.api)

    @cached_property
    def apps(self) -> Any:
        return modules("client")[0].AppsV1Api(self.api)

    @cached_property
    def batch(self) -> Any:
        return modules("client")[0].BatchV1Api(self.api)

    def to_dict(self, obj: Any) -> dict[str, Any]:
        data: dict[str, Any] = self.api.sanitize_for_serialization(obj)
        return data

    def list(
        self, group_version: str, resource: str, namespace: str, **query: str
    ) -> list[dict[str, Any]]:
        """The items of ``resource`` in ``namespace``, as the API's own JSON.

        Read without the client's model classes: a typed object per item (each model
        imported on first use) turned back into a dict cost a deploy most of a second, and
        the dicts are the same (the API's field names, timestamps as RFC 3339 strings).
        ``query`` takes list options such as ``labelSelector``.
        """
        base = "/api/v1" if group_version == "v1" else f"/apis/{group_version}"
        _, data = self.get(f"{base}/namespaces/{namespace}/{resource}", **query)
        return [i for i in data.get("items") or [] if isinstance(i, dict)]

    def get(self, path: str, **query: str) -> tuple[int, dict[str, Any]]:
        """``GET path`` as ``(status, JSON)``; 404 is ``(404, {})``, other errors raise."""
        (exceptions,) = modules("client.exceptions")
        response = self._request(path, "application/json", **query)
        if response.status == 404:
            return 404, {}
        if not 200 <= response.status < 300:
            raise exceptions.ApiException(http_resp=response)
        data = json.loads(response.data or b"{}")
        return int(response.status), data if isinstance(data, dict) else {}

    def _request(self, path: str, accept: str, **query: str) -> Any:
        """An untyped GET through the client's own connection pool (its TLS and client
        certificates) with its bearer token, if any; the response, whatever its status."""
        method, url, headers, body, post = self.api.param_serialize(
            "GET",
            path,
            query_params=list(query.items()),
            header_params={"Accept": accept},
            auth_settings=["BearerToken"],
        )
        response = self.api.call_api(
            method, url, header_params=headers, body=body, post_params=post,
            _request_timeout=self.timeout,
        )  # fmt: skip
        response.read()
        return response

    def server_version(self) -> str:
        """The API server's version; ``EnvironmentNotReady`` (exit 3) when it does not answer."""
        try:
            info = self.version_api.get_code(_request_timeout=self.timeout)
        except Exception as exc:
            raise EnvironmentNotReady(
                f"cluster unreachable through {self.access.source}: {first_line(exc)}"
            ) from None
        return str(info.git_version)

    def ready(self) -> bool:
        """True when the API server answers ``/readyz`` with 200: serving, not just listening."""
        try:
            return int(self._request("/readyz", "text/plain").status) == 200
        except Exception:  # refused, timed out or TLS: all "not ready"
            return False

    def ensure_namespace(self, name: str, labels: Mapping[str, str]) -> str:
        """Create the namespace with ``labels``, or add missing labels; say which happened."""
        (exceptions,) = modules("client.exceptions")
        try:
            status, ns = self.get(f"/api/v1/namespaces/{name}")
        except exceptions.ApiException as exc:
            raise EnvironmentNotReady(f"namespace {name}: {exc.status} {exc.reason}") from None
        if status == 404:
            body = {"metadata": {"name": name, "labels": dict(labels)}}
            self.core.create_namespace(body, _request_timeout=self.timeout)
            return "created"
        have = ns.get("metadata", {}).get("labels") or {}
        missing = {k: v for k, v in labels.items() if have.get(k) != v}
        if not missing:
            return "unchanged"
        self.core.patch_namespace(
            name, {"metadata": {"labels": missing}}, _request_timeout=self.timeout
        )
        return "labelled"

    def pod_logs(self, namespace: str, pod: dict[str, Any], lines: int = LOG_LINES) -> str:
        """The last lines of each container (the crashed run's when the current one is empty)."""
        out = []
        name = pod["metadata"]["name"]
        statuses = container_statuses(pod)
        for c in (pod.get("spec") or {}).get("containers", []):
            restarted = statuses.get(c["name"], {}).get("restartCount", 0) > 0
            text = self._log(namespace, name, c["name"], lines, previous=False)
            if not text.strip() and restarted:
                text = self._log(namespace, name, c["name"], lines, previous=True)
            if text.strip():
                out.append(f"[{c['name']}]\n{text.rstrip()}")
        return "\n".join(out)

    def _log(self, ns: str, pod: str, container: str, lines: int, *, previous: bool) -> str:
        try:
            text: str = self.core.read_namespaced_pod_log(
                pod,
                ns,
                container=container,
                tail_lines=lines,
                previous=previous,
                _request_timeout=self.timeout,
            )
        except Exception:  # no logs yet (container not started) is not an error to report
            return ""
        return text


#: The parts of the ``kubernetes`` package every deploy uses: the modules, then the small API
#: classes its client package only imports when they are first named (the large ones, made
#: lazily by ``Kube``, are left to the deploys that need them).
PRELOADED_MODULES = ("client", "client.exceptions", "config", "watch")
PRELOADED_APIS = ("VersionApi", "CoordinationV1Api")


class _Preload:
    """The one background import of the client, started at most once per process."""

    lock = threading.Lock()
    thread: threading.Thread | None = None


def preload() -> None:
    """Import the client in a background thread, while this one waits on other programs.

    A deploy checks its images and renders its chart (cosign, Helm, the registry) before it
    talks to the cluster; the import is CPU work that fits in those waits. ``modules`` joins
    the thread first, so the package is never imported from two threads at once.
    """
    with _Preload.lock:
        if _Preload.thread is None:
            _Preload.thread = threading.Thread(target=_import_all, name="kube-preload", daemon=True)
            _Preload.thread.start()


def _import_all() -> None:
    import importlib

    try:
        for name in PRELOADED_MODULES:
            importlib.import_module(f"kubernetes.{name}")
        client = importlib.import_module("kubernetes.client")
        for api in PRELOADED_APIS:
            getattr(client, api)
    except Exception:  # the import is done again on first use, where it fails visibly
        return


def modules(*names: str) -> tuple[Any, ...]:
    """Parts of the ``kubernetes`` package, imported on first use and typed loosely.

    Its generated API is only partly annotated; the dicts this module works on are typed.
    """
    import importlib

    loading = _Preload.thread
    if loading is not None and loading is not threading.current_thread():
        loading.join()
    return tuple(importlib.import_module(f"kubernetes.{n}") for n in names)


def connect(acc: Access) -> Kube:
    """A client whose API server answered: reachability is checked before anything changes."""
    kube = Kube(acc)
    kube.server_version()
    return kube


def api_ready(kubeconfig: Path, *, context: str | None = None, timeout: float = 20.0) -> bool:
    """True when the cluster of a kubeconfig file answers ``/readyz`` within ``timeout``."""
    if not kubeconfig.is_file():
        return False
    try:
        kube = Kube(Access(str(kubeconfig), context, str(kubeconfig)), request_timeout=timeout)
    except EnvironmentNotReady:  # a kubeconfig the client cannot load reaches no cluster
        return False
    return kube.ready()


def first_line(exc: BaseException) -> str:
    """The useful part of a client error: urllib3 buries the OS error deep in its message."""
    text = str(exc).strip() or type(exc).__name__
    errno = re.search(r"\[Errno -?\d+\] [^'\")]+", text)
    if errno:
        return errno.group(0).strip()
    return errors.first_line(text, 300)
