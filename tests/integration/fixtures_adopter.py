"""A second application, as a team adopting the toolkit would have it: "bookshelf", two services
(``storefront``, a static page, and ``inventory``, a JSON API under /inventory/) in a scratch git
repository, with nothing from this repository but what ``ci init`` of the installed wheel writes.

The test edits what ``ci init`` made, as its team would: the API's probe path, an Ingress that
routes /inventory/ to it, and smoke checks for both services. Images build FROM the local base
image ``127.0.0.1:5000/base/nginx`` (``make base-images``) and push to the local registry.
"""

from __future__ import annotations

import subprocess
import uuid
from pathlib import Path
from typing import Any

import yaml

REGISTRY = "127.0.0.1:5000"
PROJECT = "bookshelf"
SERVICES = ("inventory", "storefront")

_NGINX_BASE = f"{REGISTRY}/base/nginx:bookworm"
_FILES = {
    "storefront/Dockerfile": f"""FROM {_NGINX_BASE}
COPY index.html /usr/share/nginx/html/index.html
EXPOSE 8080
""",
    "storefront/index.html": "<!doctype html><title>Bookshelf</title><h1>Bookshelf</h1>\n",
    "inventory/Dockerfile": f"""FROM {_NGINX_BASE}
COPY default.conf /etc/nginx/conf.d/default.conf
EXPOSE 8080
""",
    "inventory/default.conf": """server {
    listen 8080;
    default_type application/json;
    location = /inventory/health { return 200 '{"status":"ok","service":"inventory"}'; }
    location /inventory/books { return 200 '{"books":[{"id":1,"title":"Dune"}]}'; }
}
""",
    "README.md": "# Bookshelf\n\nA storefront and an inventory API.\n",
}


def git(repo: Path, *args: str) -> str:
    """git in ``repo`` with a fixed identity; the output."""
    argv = ["git", "-c", "user.name=Bookshelf", "-c", "user.email=dev@bookshelf.test", *args]
    return subprocess.run(argv, cwd=repo, capture_output=True, text=True, check=True).stdout


def make_repo(root: Path) -> Path:
    """The application's own files, committed in a new git repository."""
    repo = root / PROJECT
    for name, text in _FILES.items():
        (repo / name).parent.mkdir(parents=True, exist_ok=True)
        (repo / name).write_text(text)
    git(repo, "init", "-q", "-b", "main")
    git(repo, "add", ".")
    git(repo, "commit", "-q", "-m", "bookshelf: storefront and inventory")
    return repo


def _yaml() -> Any:
    """Round-trip YAML as an editor keeps it: comments, order, sequences indented."""
    from ruamel.yaml import YAML

    rt = YAML()
    rt.indent(mapping=2, sequence=4, offset=2)
    return rt


def _load(path: Path) -> Any:
    return _yaml().load(path.read_text())


def _dump(path: Path, data: Any) -> None:
    with path.open("w") as out:
        _yaml().dump(data, out)


def edit_after_init(
    repo: Path,
    *,
    namespace: str | None = None,
    host: str | None = None,
    ingress_class: str | None = None,
    kubeconfig: Path | None = None,
) -> None:
    """What the team changes in the scaffold: probe path, ingress, smoke checks, and with
    ``namespace`` an environment ``local`` for the local cluster."""
    chart = repo / "charts" / PROJECT
    values = _load(chart / "values.yaml")
    values["services"]["inventory"]["probePath"] = "/inventory/health"
    values["ingress"]["enabled"] = True
    values["ingress"]["paths"] = [
        {"path": "/inventory/", "service": "inventory"},
        {"path": "/", "service": "storefront"},
    ]
    _dump(chart / "values.yaml", values)
    cfg = _load(repo / "ci.yaml")
    cfg["smoke"]["checks"] = [
        {"name": "storefront", "path": "/", "expect_body": "<h1>Bookshelf</h1>"},
        {"name": "inventory-health", "path": "/inventory/health", "expect_json": {"status": "ok"}},
        {"name": "inventory-books", "path": "/inventory/books", "expect_body": "Dune"},
    ]
    if namespace:
        (chart / "values-local.yaml").write_text(
            yaml.safe_dump({"ingress": {"host": host, "className": ingress_class or ""}})
        )
        cfg["environments"]["local"] = {
            "namespace": namespace,
            "release": PROJECT,
            "values": [f"charts/{PROJECT}/values-local.yaml"],
            "kube": {"kubeconfig": str(kubeconfig)} if kubeconfig else {},
            "timeout": "5m",
            "rollback_on_smoke_failure": False,
            "base_url": "${LOCAL_URL}",
        }
    _dump(repo / "ci.yaml", cfg)


def registry_env(namespace: str | None = None) -> dict[str, str]:
    """The ci.yaml variables that point the pipeline at the local registry."""
    return {
        "CI_REGISTRY": REGISTRY,
        "CI_REGISTRY_INSECURE": "true",
        "CI_REGISTRY_NAMESPACE": namespace or f"adopter-{uuid.uuid4().hex[:8]}",
    }
