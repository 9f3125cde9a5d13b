"""Reaching an observability API: its URL, or an in-cluster Service through the API server.

Why the service proxy: Prometheus, Jaeger and the log store usually have no public address;
the API server already reaches every Service (``/api/v1/namespaces/NS/services/NAME:PORT/proxy``)
with the credentials the deploy uses, so no port-forward or extra Ingress is needed.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from ci.config import Endpoint, Environment
from ci.errors import ConfigError, first_line

REQUEST_TIMEOUT = 10.0


@dataclass(frozen=True)
class Reply:
    """One answer: what was asked (``asked``), its status and body, or why no answer came."""

    asked: str
    status: int | None
    text: str
    error: str = ""

    def json(self) -> Any:
        """The parsed body, or None when it is not JSON."""
        import json

        try:
            return json.loads(self.text)
        except ValueError:
            return None


class Api:
    """One HTTP API at ``base``, through a session that carries its credentials."""

    def __init__(self, name: str, base: str, session: Any, kind: str = "") -> None:
        self.name = name
        self.kind = kind
        self.base = base.rstrip("/")
        self.session = session

    def get(self, path: str, params: Mapping[str, str] | None = None) -> Reply:
        import requests

        url = self.base + path
        asked = f"GET {url}" + (f"?{urlencode(params)}" if params else "")
        try:
            # verify per request: a session's own is overridden by REQUESTS_CA_BUNDLE
            resp = self.session.get(
                url, params=params, timeout=REQUEST_TIMEOUT, verify=self.session.verify
            )
        except requests.RequestException as exc:
            return Reply(asked, None, "", f"request failed: {first_line(exc)}")
        return Reply(asked, resp.status_code, resp.text)


def parse_service(text: str) -> tuple[str, str, str]:
    """``NAMESPACE/NAME:PORT`` as its three parts."""
    namespace, _, rest = text.partition("/")
    name, _, port = rest.partition(":")
    if not (namespace and name and port):
        raise ConfigError(f"service {text!r}: expected NAMESPACE/NAME:PORT")
    return namespace, name, port


def open_api(
    name: str, endpoint: Endpoint, env: Environment, environ: Mapping[str, str] | None = None
) -> Api:
    """The API of ``endpoint``: its ``url`` when set, else its Service through the API server."""
    import requests

    environ = os.environ if environ is None else environ
    session = requests.Session()
    if endpoint.url:
        token = environ.get(endpoint.token_env or "", "") if endpoint.token_env else ""
        if token:
            session.headers["Authorization"] = f"Bearer {token}"
        return Api(name, endpoint.url, session, endpoint.kind)
    if not endpoint.service:
        raise ConfigError(
            f"environment '{env.name}': observability.{name} has neither url nor service"
        )
    namespace, service, port = parse_service(endpoint.service)
    host = _proxy_session(env, session)
    base = f"{host}/api/v1/namespaces/{namespace}/services/{service}:{port}/proxy"
    return Api(name, base, session, endpoint.kind)


def _proxy_session(env: Environment, session: Any) -> str:
    """Give ``session`` the kubeconfig's TLS and credentials; return the API server's URL."""
    from ci import kube
    from ci.kube.client import configuration

    with kube.access(env) as acc:
        conf = configuration(acc)
    session.verify = conf.ssl_ca_cert or conf.verify_ssl
    if conf.cert_file and conf.key_file:
        session.cert = (conf.cert_file, conf.key_file)
    auth = conf.auth_settings().get("BearerToken") or {}
    if auth.get("value"):
        session.headers[auth["key"]] = auth["value"]
    return str(conf.host).rstrip("/")
