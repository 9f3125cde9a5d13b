"""``ci tools install``: build the pinned versions from the Go module proxy and link them.

Why a shared cache: kubectl alone takes about twenty minutes to build on two cores, so a build
lands in a cache shared by every clone on the machine (``CI_TOOLS_CACHE``), under a lock so
parallel installs build each pin once, and a second ``make tools`` only re-links.
"""

from __future__ import annotations

import fcntl
import os
import re
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from ci import proc
from ci.errors import ConfigError, ToolError
from ci.tools import crds, discovery
from ci.tools.discovery import (
    DEFAULT_HELM_MAJOR,
    cache_root,
    clear_cache,
    docker_plugin_dir,
    probe_version,
    tools_dir,
)
from ci.tools.specs import ALIASES, CRD_ALIASES, CRDS, GO_MINIMUM, TOOLS, CrdSpec, ToolSpec
from ci.tools.status import go_status

#: Seconds one tool's build may take (kubectl from a cold cache takes ~20 min on 2 cores).
BUILD_TIMEOUT = 3600.0


@dataclass(frozen=True)
class InstallResult:
    """What ``install`` did for one tool: "built", "linked" (from the cache) or "skipped"."""

    name: str
    version: str
    path: Path
    action: str
    seconds: float
    notes: tuple[str, ...] = field(default=())


#: Called with a tool name and a progress message ("building v3.22.0", a line of go output).
Progress = Callable[[str, str], None]


def _no_progress(name: str, message: str) -> None:
    """The default progress sink: say nothing (only the CLI prints)."""


# ------------------------------------------------------------------------------ install


def expand_names(names: list[str] | None) -> list[ToolSpec]:
    """The specs ``names`` stand for (all when empty), aliases expanded, order kept.

    CRD set names (``crds``, ``gateway-api-crds``, ...) are accepted and left out: they are
    data, installed by ``ci.tools.crds``.
    """
    if not names:
        return list(TOOLS.values())
    wanted: list[str] = []
    for name in names:
        if crds.is_crd_name(name):
            continue
        for real in ALIASES.get(name, (name,)):
            if real not in TOOLS:
                known = ", ".join([*TOOLS, *ALIASES, *CRDS, *CRD_ALIASES])
                raise ConfigError(f"unknown tool '{name}' (known: {known})")
            if real not in wanted:
                wanted.append(real)
    return [TOOLS[n] for n in wanted]


def cache_dir(spec: ToolSpec) -> Path:
    """Where the pinned build of ``spec`` lives: ``<cache>/<name>-<version>/``."""
    return cache_root() / f"{spec.name}-{spec.version}"


def _at_pin(path: Path, spec: ToolSpec) -> bool:
    """True when ``path`` runs and reports exactly the pinned version."""
    return path.exists() and probe_version(path, spec) == spec.bare_version


def install(
    names: list[str] | None = None, on_progress: Progress = _no_progress
) -> list[InstallResult]:
    """Build the pinned versions of ``names`` (all by default) and link them into ``tools_dir``.

    A tool already linked at its pinned version is skipped; one already built in the shared
    cache is only linked. Helm 3 and 4 live side by side as ``helm3`` and ``helm4``, with
    ``helm`` pointing at the default major; buildx is also linked as a docker CLI plugin.
    The pinned upstream CRD sets (all of them by default) are fetched and converted too.
    """
    only_crds = bool(names) and all(crds.is_crd_name(n) for n in names or ())
    specs = [] if only_crds else expand_names(names)
    target_dir = tools_dir()
    target_dir.mkdir(parents=True, exist_ok=True)
    # the version probes of a warm run are independent programs: asked side by side
    with ThreadPoolExecutor(max_workers=4, thread_name_prefix="tool-probe") as pool:
        at_pin = list(pool.map(lambda s: _at_pin(target_dir / s.binary, s), specs))
    results = [
        _install_one(spec, target_dir, on_progress, linked=ok)
        for spec, ok in zip(specs, at_pin, strict=True)
    ]
    results += [_install_crds(spec, on_progress) for spec in _crd_specs(names)]
    _link_default_helm(target_dir)
    clear_cache()
    return results


def _crd_specs(names: list[str] | None) -> list[CrdSpec]:
    return list(CRDS.values()) if not names else crds.crd_names(names)


def _install_crds(spec: CrdSpec, on_progress: Progress) -> InstallResult:
    """Fetch (or take from Go's module cache) and convert one pinned CRD set."""
    if not crds.is_installed(spec):
        on_progress(spec.name, f"building {spec.name} from {spec.module}@{spec.version}")
    action, seconds = crds.install(spec)
    return InstallResult(spec.name, spec.version, crds.schema_dir(spec), action, seconds)


def _install_one(
    spec: ToolSpec, target_dir: Path, on_progress: Progress, *, linked: bool
) -> InstallResult:
    """One tool; ``linked``: its link already runs the pinned version (probed beforehand)."""
    started = time.monotonic()
    link = target_dir / spec.binary
    if linked:
        notes = _plugin_link(spec, link)
        return InstallResult(
            spec.name, spec.version, link, "skipped", time.monotonic() - started, notes
        )
    built = cache_dir(spec) / spec.binary
    action = "linked"
    with _build_lock(spec, on_progress):  # another clone may be building the same pin
        if not _at_pin(built, spec):
            on_progress(spec.name, f"building {spec.package}@{spec.version}")
            _build(spec, on_progress)
            action = "built"
    _link(built, link)
    notes = _plugin_link(spec, link)
    return InstallResult(spec.name, spec.version, link, action, time.monotonic() - started, notes)


@contextmanager
def _build_lock(spec: ToolSpec, on_progress: Progress) -> Iterator[None]:
    """Hold ``<cache>/.<name>-<version>.lock`` so parallel installs build each pin only once."""
    final = cache_dir(spec)
    final.parent.mkdir(parents=True, exist_ok=True)
    with (final.parent / f".{final.name}.lock").open("w") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            on_progress(spec.name, f"building {spec.version}: waiting for another install of it")
            fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _link(source: Path, link: Path) -> None:
    """Point ``link`` at ``source`` (a symlink; a copy where links are not allowed)."""
    tmp = link.with_name(f".{link.name}.{os.getpid()}")
    tmp.unlink(missing_ok=True)
    try:
        tmp.symlink_to(source)
    except OSError:
        shutil.copy2(source, tmp)
    tmp.replace(link)


def _plugin_link(spec: ToolSpec, link: Path) -> tuple[str, ...]:
    """Make ``docker buildx`` find the pinned plugin, unless the user installed their own there."""
    if not spec.docker_plugin:
        return ()
    plugin = docker_plugin_dir() / spec.binary
    if plugin.exists() and not plugin.is_symlink():
        return (f"kept {plugin} (not a link made by `make tools`)",)
    plugin.parent.mkdir(parents=True, exist_ok=True)
    _link(link.resolve(), plugin)
    return (f"docker CLI plugin linked at {plugin}",)


def _link_default_helm(target_dir: Path) -> None:
    """``helm`` -> ``helm4`` (or ``helm3`` with CI_HELM_MAJOR=3), when that one is installed."""
    major = os.environ.get("CI_HELM_MAJOR", str(DEFAULT_HELM_MAJOR))
    chosen = target_dir / f"helm{major}"
    if chosen.exists():
        _link(Path(chosen.name), target_dir / "helm")


def _go_env(out_dir: Path) -> dict[str, str]:
    """Static binaries, the local toolchain only, and the shared caches (go's defaults)."""
    return {"CGO_ENABLED": "0", "GOTOOLCHAIN": "local", "GOFLAGS": "", "GOBIN": str(out_dir)}


def _require_go() -> Path:
    go = go_status()
    if go.path is None:
        raise ToolError(
            f"go not found on PATH or in {discovery.GO_FALLBACK.parent}; "
            f"install Go >= {GO_MINIMUM} to build the pinned tools "
            "(Debian's golang package is too old)"
        )
    if go.status != "ok":
        raise ToolError(f"go {go.version} found at {go.path} is too old (need >= {GO_MINIMUM})")
    return go.path


def _build(spec: ToolSpec, on_progress: Progress) -> None:
    """Build ``spec`` into a fresh folder, check its version, then move it into the cache."""
    go = _require_go()
    final = cache_dir(spec)
    final.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{final.name}.", dir=final.parent))
    work.chmod(0o755)  # mkdtemp's 0700 would hide the shared cache from other users
    try:
        if spec.staging_replaces:
            _build_with_wrapper(go, spec, work, on_progress)
        elif spec.from_source:
            _build_in_module(go, spec, work, on_progress)
        else:
            _go_install(go, spec, work, on_progress)
        produced = work / spec.built_name
        if spec.built_name != spec.binary:
            produced = produced.rename(work / spec.binary)
        got = probe_version(produced, spec)
        if got != spec.bare_version:
            raise ToolError(
                f"{spec.name} built from {spec.package}@{spec.version} reports version {got}, "
                f"expected {spec.bare_version}"
            )
        shutil.rmtree(final, ignore_errors=True)
        work.rename(final)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _ldflags(spec: ToolSpec) -> str:
    return " ".join(("-s", "-w", *spec.ldflags))


def _go_install(go: Path, spec: ToolSpec, out: Path, on_progress: Progress) -> None:
    argv = (
        str(go),
        "install",
        "-trimpath",
        "-ldflags",
        _ldflags(spec),
        f"{spec.package}@{spec.version}",
    )
    proc.run(
        argv,
        env=_go_env(out),
        timeout=BUILD_TIMEOUT,
        on_line=lambda line, _stream: on_progress(spec.name, line),
        what=f"build {spec.name}",
    )


def _download(go: Path, spec: ToolSpec, env: dict[str, str]) -> dict[str, str]:
    """``go mod download -json`` for the pinned module: where its source and go.mod are."""
    info = proc.run(
        (str(go), "mod", "download", "-json", f"{spec.module}@{spec.version}"),
        env=env,
        timeout=BUILD_TIMEOUT,
        what=f"download {spec.module}",
    )
    found = dict(re.findall(r'"(Dir|GoMod)":\s*"([^"]+)"', info.stdout))
    if set(found) != {"Dir", "GoMod"}:
        raise ToolError(f"go mod download {spec.module}@{spec.version} did not report its files")
    return found


def _build_in_module(go: Path, spec: ToolSpec, out: Path, on_progress: Progress) -> None:
    """``go build`` in the module's own (read-only) folder, so its go.mod applies as written."""
    env = {**_go_env(out), "GOFLAGS": "-mod=readonly"}
    source = _download(go, spec, env)["Dir"]
    relative = "./" + spec.package.removeprefix(spec.module).strip("/")
    argv = (str(go), "build", "-trimpath", "-ldflags", _ldflags(spec), "-o", f"{out}/", relative)
    proc.run(
        argv,
        env=env,
        cwd=source,
        timeout=BUILD_TIMEOUT,
        on_line=lambda line, _stream: on_progress(spec.name, line),
        what=f"build {spec.name}",
    )


def staging_replaces(gomod_text: str, version: str) -> list[str]:
    """``replace`` lines pinning k8s.io/kubernetes' staging modules (v0.0.0 => ./staging/...).

    Kubernetes v1.34.4 publishes its staging modules as v0.34.4; its own go.mod points them at
    local folders, which a build from the module proxy does not have.
    """
    staged = "v0." + version.removeprefix("v").split(".", 1)[1]
    modules = re.findall(
        r"^\s*(k8s\.io/[\w.-]+)\s+=>\s+\./staging/", gomod_text, flags=re.MULTILINE
    )
    return [f"replace {m} => {m} {staged}" for m in modules]


def wrapper_gomod(spec: ToolSpec, replaces: list[str]) -> str:
    """A throwaway main module that requires ``spec.module`` with ``replaces`` applied."""
    lines = ["module wrapper", "", "go 1.24", "", f"require {spec.module} {spec.version}", ""]
    return "\n".join(lines + replaces) + "\n"


def _build_with_wrapper(go: Path, spec: ToolSpec, out: Path, on_progress: Progress) -> None:
    """Build through a wrapper module (shares the build cache with hack/cluster/build.sh)."""
    env = {**_go_env(out), "GOFLAGS": "-mod=mod"}
    sink: proc.LineSink = lambda line, _stream: on_progress(spec.name, line)  # noqa: E731
    gomod = _download(go, spec, env)["GoMod"]
    replaces = staging_replaces(Path(gomod).read_text(), spec.version)
    with tempfile.TemporaryDirectory(prefix="ci-tools-wrapper-") as wrapper:
        (Path(wrapper) / "go.mod").write_text(wrapper_gomod(spec, replaces))
        pkg = f"{spec.package}@{spec.version}"
        proc.run((str(go), "get", pkg), env=env, cwd=wrapper, timeout=BUILD_TIMEOUT, on_line=sink)
        argv = (
            str(go),
            "build",
            "-trimpath",
            "-ldflags",
            _ldflags(spec),
            "-o",
            str(out),
            spec.package,
        )
        proc.run(
            argv,
            env=env,
            cwd=wrapper,
            timeout=BUILD_TIMEOUT,
            on_line=sink,
            what=f"build {spec.name}",
        )
