"""The upstream CRD sets (Gateway API, prometheus-operator) as pinned, cached JSON Schemas.

Why a pinned artifact: custom resources must be checked against the API the cluster really
serves, not a hand-written subset, and the CRDs ship inside the operators' Go modules. So
``ci tools install`` (``make tools``, the action's tool step) downloads the pinned module
through the Go module proxy, converts its CRDs once and caches the schemas with the built
tools (``<tools cache>/NAME-VERSION/GROUP/KIND_VERSION.json``, kubeconform's layout), and
``ci chart validate`` only reads that folder: no Go, no network. Where the module is already
in Go's module cache (the local cluster's build downloads it) the schemas are made from it
without any download.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from functools import cache
from pathlib import Path
from typing import Any

import yaml

from ci import crdschema, proc
from ci.errors import ProcessError, ToolError
from ci.tools import discovery
from ci.tools.discovery import cache_root
from ci.tools.specs import CRD_ALIASES, CRDS, INSTALL_HINT, CrdSpec

#: Written into each converted folder; a folder with another value is converted again, so a
#: change to the conversion never leaves stale schemas behind.
FORMAT = "crdschema 1"
MARKER = ".format"

#: Seconds ``go mod download`` of one module may take.
DOWNLOAD_TIMEOUT = 900.0

_BASE_LOADER: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml: the CRDs are 4 MB


class _CrdLoader(_BASE_LOADER):  # type: ignore[misc]
    """Safe loading where a bare ``=`` (an enum value in AlertmanagerConfig) is a string.

    YAML 1.1 resolves ``=`` to the "value" type, which PyYAML cannot construct.
    """


_CrdLoader.add_constructor("tag:yaml.org,2002:value", yaml.SafeLoader.construct_yaml_str)


def crd_names(names: list[str]) -> list[CrdSpec]:
    """The CRD sets among ``names`` (``crds`` means all of them), order kept."""
    wanted: list[str] = []
    for name in names:
        for real in CRD_ALIASES.get(name, (name,)):
            if real in CRDS and real not in wanted:
                wanted.append(real)
    return [CRDS[n] for n in wanted]


def is_crd_name(name: str) -> bool:
    return name in CRDS or name in CRD_ALIASES


def for_api_version(api_version: str) -> CrdSpec | None:
    """The pinned set that defines ``api_version``'s group, if any."""
    group = api_version.rpartition("/")[0]
    return next((s for s in CRDS.values() if s.group == group), None)


def schema_dir(spec: CrdSpec) -> Path:
    """Where the converted schemas of ``spec`` live: ``<tools cache>/NAME-VERSION``."""
    return cache_root() / f"{spec.name}-{spec.version}"


def is_installed(spec: CrdSpec) -> bool:
    marker = schema_dir(spec) / MARKER
    return marker.is_file() and marker.read_text(encoding="utf-8").strip() == FORMAT


# ------------------------------------------------------------------------------ module source


def escape_module(module: str) -> str:
    """Go's case encoding of module paths on disk: ``BurntSushi`` -> ``!burnt!sushi``."""
    return "".join(f"!{c.lower()}" if c.isupper() else c for c in module)


def module_cache() -> Path:
    """Go's module cache: ``$GOMODCACHE``, else ``$GOPATH/pkg/mod``, else ``~/go/pkg/mod``."""
    env = os.environ.get("GOMODCACHE")
    if env:
        return Path(env)
    gopath = os.environ.get("GOPATH", "").split(os.pathsep)[0]
    return Path(gopath or Path.home() / "go") / "pkg" / "mod"


def cached_module(spec: CrdSpec) -> Path | None:
    """The module's folder when Go already downloaded it (no network needed)."""
    folder = module_cache() / f"{escape_module(spec.module)}@{spec.version}"
    return folder if (folder / spec.folder).is_dir() else None


def download(spec: CrdSpec) -> Path:
    """``go mod download -json MODULE@VERSION`` through the Go module proxy: the module's folder."""
    go = discovery.find_go()  # any Go downloads a module; the build minimum does not apply
    if go is None:
        raise ToolError(
            f"{spec.name}: fetching {spec.module}@{spec.version} needs Go (not found on PATH "
            f"or in {discovery.GO_FALLBACK.parent}); install Go, then {INSTALL_HINT}"
        )
    env = {"GOTOOLCHAIN": "local", "GOFLAGS": "", "GO111MODULE": "on"}
    with tempfile.TemporaryDirectory(prefix="ci-crds-") as outside_any_module:
        result = proc.run(
            (str(go), "mod", "download", "-json", f"{spec.module}@{spec.version}"),
            env=env,
            cwd=outside_any_module,
            timeout=DOWNLOAD_TIMEOUT,
            check=False,
            what=f"download {spec.module}",
        )
    return _downloaded_dir(spec, result.stdout, result.returncode)


def _downloaded_dir(spec: CrdSpec, stdout: str, returncode: int) -> Path:
    """The ``Dir`` that ``go mod download -json`` reported, or its ``Error`` as one line."""
    try:
        info: dict[str, Any] = json.loads(stdout or "{}")
    except json.JSONDecodeError:
        info = {}
    if returncode != 0 or "Dir" not in info:
        reason = str(info.get("Error") or f"exit {returncode}").splitlines()[0]
        raise ProcessError(f"go mod download {spec.module}@{spec.version}: {reason}")
    return Path(info["Dir"])


# ------------------------------------------------------------------------------ conversion


def convert(source: Path, out: Path) -> int:
    """Write the schema of every CRD version found in ``source/*.yaml`` under ``out``.

    Returns how many schemas were written. The folder is built aside and moved into place,
    so a reader never sees half of it.
    """
    files = sorted(source.glob("*.yaml"))
    if not files:
        raise ToolError(f"no CRD files in {source}")
    out.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    work.chmod(0o755)
    try:
        count = 0
        for path in files:
            for (api_version, kind), schema in _file_schemas(path).items():
                target = work / crdschema.catalog_name(api_version, kind)
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_text(json.dumps(schema, sort_keys=True), encoding="utf-8")
                count += 1
        (work / MARKER).write_text(FORMAT + "\n", encoding="utf-8")
        shutil.rmtree(out, ignore_errors=True)
        work.rename(out)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    _load.cache_clear()
    return count


def _file_schemas(path: Path) -> crdschema.Schemas:
    try:
        docs = list(yaml.load_all(path.read_text(encoding="utf-8"), Loader=_CrdLoader))
        return crdschema.crd_schemas(docs)
    except (OSError, yaml.YAMLError, crdschema.NotACrd) as exc:
        raise ToolError(f"{path}: {exc}") from None


# ------------------------------------------------------------------------------ install/use


def install(spec: CrdSpec) -> tuple[str, float]:
    """Make sure ``spec``'s schemas are cached: ("skipped" | "converted" | "fetched", seconds).

    "converted" means the module was already in Go's module cache; "fetched" that it was
    downloaded first.
    """
    started = time.monotonic()
    if is_installed(spec):
        return "skipped", time.monotonic() - started
    module = cached_module(spec)
    action = "converted"
    if module is None:
        module = download(spec)
        action = "fetched"
    convert(module / spec.folder, schema_dir(spec))
    return action, time.monotonic() - started


def require(spec: CrdSpec) -> Path:
    """The folder of ``spec``'s schemas; made from Go's module cache when only that exists.

    Never downloads: a validation step must not depend on the network. Missing everywhere,
    it fails with one line naming the module, the version and the fix.
    """
    if is_installed(spec):
        return schema_dir(spec)
    module = cached_module(spec)
    if module is not None:
        try:
            convert(module / spec.folder, schema_dir(spec))
        except OSError as exc:
            raise ToolError(
                f"cannot write the schemas of {spec.module} {spec.version} into "
                f"{schema_dir(spec)}: {exc.strerror or exc}; {INSTALL_HINT}"
            ) from None
        return schema_dir(spec)
    raise ToolError(
        f"schemas of {spec.module} {spec.version} ({spec.group} CRDs) not found in "
        f"{schema_dir(spec)}; {INSTALL_HINT} (or `ci tools install {spec.name}`)"
    )


def load(api_version: str, kind: str) -> dict[str, Any] | None:
    """The cached upstream schema of ``kind``, None when no pinned set defines it.

    Raises ``ToolError`` when the set that owns the group is not installed.
    """
    spec = for_api_version(api_version)
    if spec is None:
        return None
    path = require(spec) / crdschema.catalog_name(api_version, kind)
    return _load(path)


@cache
def _load(path: Path) -> dict[str, Any] | None:
    if not path.is_file():
        return None
    try:
        data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ToolError(
            f"{path}: unreadable schema ({exc}); delete its folder and {INSTALL_HINT}"
        ) from None
    return data
