#!/usr/bin/env python3
"""A small ingress controller: serves Ingress objects of class ``nginx`` with Debian's NGINX.

Why this exists: the NGINX Ingress Controller cannot be built on the project's machines (its Go
module is not served by the module proxy, and kubernetes/ingress-nginx needs OpenResty and Lua
libraries Debian does not ship). This controller keeps the same contract for the pipeline: an
``IngressClass`` named ``nginx``, host and path rules, Service backends by port number or name,
TLS from Secrets, and a status address. It polls the API (no watch), renders one nginx.conf
and reloads NGINX only when the rendered text changes.

Environment: LISTEN (address:port NGINX listens on, default 127.0.0.1:18080), LISTEN_TLS (for
Ingresses with a ``tls`` section and a ``kubernetes.io/tls`` Secret; off when empty), INGRESS_CLASS
(default nginx), STATUS_ADDRESS (written into Ingress status, default 127.0.0.1), INTERVAL (s).
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import signal
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from typing import Any

SA = "/var/run/secrets/kubernetes.io/serviceaccount"
CONF = "/etc/nginx/nginx.conf"
TLS_DIR = "/etc/nginx/tls"
CONTROLLER = "k8s.io/ingress-nginx"


class Api:
    """The Kubernetes API with the pod's service account (no client library in the image)."""

    def __init__(self) -> None:
        host = os.environ["KUBERNETES_SERVICE_HOST"]
        port = os.environ.get("KUBERNETES_SERVICE_PORT", "443")
        self.base = f"https://{host}:{port}"
        self.ctx = ssl.create_default_context(cafile=f"{SA}/ca.crt")

    def _token(self) -> str:
        with open(f"{SA}/token") as fh:  # re-read: projected tokens rotate
            return fh.read().strip()

    def request(self, path: str, method: str = "GET", body: Any = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.base + path, data=data, method=method)
        req.add_header("Authorization", f"Bearer {self._token()}")
        if method == "PATCH":
            req.add_header("Content-Type", "application/merge-patch+json")
        with urllib.request.urlopen(req, context=self.ctx, timeout=10) as resp:
            return json.loads(resp.read() or b"{}")


def is_ours(ing: dict[str, Any], cls: str, default_class: bool) -> bool:
    """Class by spec.ingressClassName, the legacy annotation, or the default class."""
    name = ing.get("spec", {}).get("ingressClassName")
    legacy = ing["metadata"].get("annotations", {}).get("kubernetes.io/ingress.class")
    if name or legacy:
        return cls in (name, legacy)
    return default_class


def service_port(svc: dict[str, Any], ref: dict[str, Any]) -> int | None:
    """The Service port an Ingress backend names, by number or by name."""
    for port in svc.get("spec", {}).get("ports", []):
        if port.get("port") == ref.get("number") or (ref.get("name") and port.get("name") == ref.get("name")):
            return int(port["port"])
    return None


def upstream(ns: str, backend: dict[str, Any], services: dict[tuple[str, str], Any]) -> str | None:
    """``clusterIP:port`` for a backend (kube-proxy balances across the endpoints)."""
    ref = backend.get("service")
    if not ref:
        return None
    svc = services.get((ns, ref["name"]))
    if svc is None or svc["spec"].get("clusterIP") in (None, "None"):
        return None
    port = service_port(svc, ref.get("port", {}))
    return None if port is None else f"{svc['spec']['clusterIP']}:{port}"


def location(path: str, kind: str, target: str | None) -> dict[str, str]:
    """NGINX locations for one path: Exact is ``=``; Prefix matches whole path elements
    (``/api`` serves ``/api`` and ``/api/...`` but not ``/apix``); ImplementationSpecific is a
    plain NGINX prefix. Keyed by the NGINX match, so that the first rule for a match wins."""
    if kind == "Exact":
        matches = [f"= {path}"]
    elif kind == "Prefix" and not path.endswith("/"):
        matches = [f"= {path}", f"{path}/"]
    else:
        matches = [path]
    return {m: _block(m, target) for m in matches}


def _block(match: str, target: str | None) -> str:
    if target is None:
        return f"    location {match} {{ return 503; }}\n"
    return (
        f"    location {match} {{\n"
        f"      proxy_pass http://{target};\n"
        "      proxy_set_header Host $host;\n"
        "      proxy_set_header X-Real-IP $remote_addr;\n"
        "      proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;\n"
        "      proxy_set_header X-Forwarded-Proto $scheme;\n"
        "    }\n"
    )


def collect(ingresses: list[dict[str, Any]], services: dict[tuple[str, str], Any]) -> dict[str, dict[str, str]]:
    """host -> {NGINX match -> location block}; the oldest Ingress wins a clash."""
    hosts: dict[str, dict[str, str]] = {}
    for ing in sorted(ingresses, key=lambda i: i["metadata"]["creationTimestamp"]):
        ns = ing["metadata"]["namespace"]
        default = ing["spec"].get("defaultBackend")
        if default:
            blocks = location("/", "ImplementationSpecific", upstream(ns, default, services))
            _merge(hosts.setdefault("", {}), blocks)
        for rule in ing["spec"].get("rules", []):
            host = rule.get("host", "")
            for p in rule.get("http", {}).get("paths", []):
                target = upstream(ns, p["backend"], services)
                blocks = location(p.get("path", "/"), p.get("pathType", "Prefix"), target)
                _merge(hosts.setdefault(host, {}), blocks)
    return hosts


def _merge(into: dict[str, str], blocks: dict[str, str]) -> None:
    for match, block in blocks.items():
        into.setdefault(match, block)


def server(listen: str, name: str, locations: str, tls: tuple[str, str] | None = None) -> str:
    """One NGINX server block; ``tls`` is (TLS listen address, certificate file prefix)."""
    extra = ""
    if tls is not None:
        extra = (
            f"    listen {tls[0]} ssl;\n"
            f"    ssl_certificate {tls[1]}.crt;\n    ssl_certificate_key {tls[1]}.key;\n"
        )
    return f"  server {{\n    listen {listen};\n{extra}    server_name {name};\n{locations}  }}\n"


def render(
    hosts: dict[str, dict[str, str]],
    listen: str,
    certs: dict[str, str] | None = None,
    listen_tls: str = "",
) -> str:
    """The whole nginx.conf: one server per host, default servers answering 404 (plain HTTP)
    and refusing the handshake (TLS for an unknown host). ``certs`` maps a host to the file
    prefix of its certificate and key."""
    certs = certs or {}
    default = hosts.get("", {})
    servers = [
        server(
            f"{listen} default_server",
            "_",
            "".join(default.values())
            + ("    location / { return 404; }\n" if "/" not in default else ""),
        )
    ]
    if certs and listen_tls:
        servers.append(
            f"  server {{\n    listen {listen_tls} ssl default_server;\n"
            "    server_name _;\n    ssl_reject_handshake on;\n  }\n"
        )
    for host in sorted(h for h in hosts if h):
        tls = (listen_tls, certs[host]) if host in certs and listen_tls else None
        servers.append(server(listen, host, "".join(hosts[host].values()), tls))
    return (
        "worker_processes 1;\npid /run/nginx.pid;\nerror_log stderr warn;\n"
        "events { worker_connections 1024; }\n"
        "http {\n  access_log /dev/stdout;\n  server_names_hash_bucket_size 128;\n"
        "  proxy_http_version 1.1;\n  proxy_read_timeout 60s;\n  client_max_body_size 64m;\n"
        + "".join(servers)
        + "}\n"
    )


class Controller:
    """Poll, render, reload, and report status."""

    def __init__(self, api: Api) -> None:
        self.api = api
        self.cls = os.environ.get("INGRESS_CLASS", "nginx")
        self.listen = os.environ.get("LISTEN", "127.0.0.1:18080")
        self.listen_tls = os.environ.get("LISTEN_TLS", "")
        self.address = os.environ.get("STATUS_ADDRESS", "127.0.0.1")
        self.nginx: subprocess.Popen[bytes] | None = None
        self.current = ""

    def default_class(self) -> bool:
        items = self.api.request("/apis/networking.k8s.io/v1/ingressclasses")["items"]
        for ic in items:
            ann = ic["metadata"].get("annotations", {})
            if ic["metadata"]["name"] == self.cls and ann.get("ingressclass.kubernetes.io/is-default-class") == "true":
                return True
        return False

    def sync(self) -> None:
        ings = self.api.request("/apis/networking.k8s.io/v1/ingresses")["items"]
        svcs = self.api.request("/api/v1/services")["items"]
        services = {(s["metadata"]["namespace"], s["metadata"]["name"]): s for s in svcs}
        mine = [i for i in ings if is_ours(i, self.cls, self.default_class())]
        conf = render(collect(mine, services), self.listen, self.certificates(mine), self.listen_tls)
        if conf != self.current:
            self.apply(conf)
        for ing in mine:
            self.report(ing)

    def certificates(self, ingresses: list[dict[str, Any]]) -> dict[str, str]:
        """host -> file prefix of its certificate, from the Ingresses' ``tls`` Secrets."""
        certs: dict[str, str] = {}
        os.makedirs(TLS_DIR, mode=0o700, exist_ok=True)
        for ing in ingresses:
            ns = ing["metadata"]["namespace"]
            for tls in ing["spec"].get("tls", []):
                prefix = self.write_secret(ns, tls.get("secretName", ""))
                for host in tls.get("hosts", []) if prefix else []:
                    certs.setdefault(host, prefix)
        return certs

    def write_secret(self, ns: str, name: str) -> str | None:
        """Write a ``kubernetes.io/tls`` Secret to files; None when it is missing or not TLS."""
        if not name:
            return None
        try:
            secret = self.api.request(f"/api/v1/namespaces/{ns}/secrets/{name}")
        except urllib.error.HTTPError:
            return None
        data = secret.get("data", {})
        if "tls.crt" not in data or "tls.key" not in data:
            return None
        # the prefix carries a digest: new key material means a new config, hence a reload
        digest = hashlib.sha256((data["tls.crt"] + data["tls.key"]).encode()).hexdigest()[:12]
        prefix = f"{TLS_DIR}/{ns}_{name}_{digest}"
        for suffix, key in ((".crt", "tls.crt"), (".key", "tls.key")):
            with open(prefix + suffix, "wb") as fh:
                fh.write(base64.b64decode(data[key]))
        return prefix

    def apply(self, conf: str) -> None:
        with open(CONF, "w") as fh:
            fh.write(conf)
        check = subprocess.run(["nginx", "-t", "-q", "-c", CONF], capture_output=True, text=True)
        if check.returncode != 0:
            print(f"rejected configuration: {check.stderr.strip()}", file=sys.stderr, flush=True)
            return
        if self.nginx is None or self.nginx.poll() is not None:
            self.nginx = subprocess.Popen(["nginx", "-c", CONF, "-g", "daemon off;"])
        else:
            self.nginx.send_signal(signal.SIGHUP)
        self.current = conf
        print(f"configuration applied ({conf.count('server {')} servers)", flush=True)

    def report(self, ing: dict[str, Any]) -> None:
        want = [{"ip": self.address}]
        if ing.get("status", {}).get("loadBalancer", {}).get("ingress") == want:
            return
        md = ing["metadata"]
        path = f"/apis/networking.k8s.io/v1/namespaces/{md['namespace']}/ingresses/{md['name']}/status"
        self.api.request(path, "PATCH", {"status": {"loadBalancer": {"ingress": want}}})

    def run(self) -> None:
        interval = float(os.environ.get("INTERVAL", "2"))
        signal.signal(signal.SIGTERM, lambda *_: self.stop())
        while True:
            try:
                self.sync()
            except Exception as exc:  # keep serving the last good configuration
                print(f"sync failed: {exc}", file=sys.stderr, flush=True)
            if self.nginx is not None and self.nginx.poll() is not None:
                self.current = ""  # NGINX died: start it again on the next pass
            time.sleep(interval)

    def stop(self) -> None:
        if self.nginx is not None:
            self.nginx.terminate()
        sys.exit(0)


if __name__ == "__main__":
    Controller(Api()).run()
