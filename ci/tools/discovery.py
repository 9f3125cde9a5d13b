"""Where a compatible tool is: on PATH, named by ``CI_HELM``, or pinned in ``.tools/bin``.

Why a search with version checks: a wrong or missing tool should stop the pipeline with one
line naming the tool, the version found, the version needed and the make target that fixes
it. A compatible tool already on PATH is preferred (GitHub runners ship helm, kubectl and
docker buildx); otherwise the pinned build in the project-local folder is used.
"""

from __future__ import annotations

import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

from ci import paths, proc
from ci.errors import ProcessError, ToolError
from ci.tools.specs import INSTALL_HINT, TOOLS, ToolSpec

GO_FALLBACK = Path("/usr/local/go/bin/go")

#: Seconds a version probe may take before the binary counts as broken.
PROBE_TIMEOUT = 30.0

#: Where docker looks for CLI plugins besides the user's own folder, in its search order.
SYSTEM_PLUGIN_DIRS = (
    Path("/usr/local/lib/docker/cli-plugins"),
    Path("/usr/local/libexec/docker/cli-plugins"),
    Path("/usr/lib/docker/cli-plugins"),
    Path("/usr/libexec/docker/cli-plugins"),
)


@dataclass(frozen=True)
class Tool:
    """A tool that passed its version check. ``source`` is "PATH", "pinned" or "CI_HELM"."""

    name: str
    path: Path
    version: str
    source: str


# ------------------------------------------------------------------------------ versions


def parse_version(text: str) -> tuple[int, int, int]:
    """``"v1.34.4"``, ``"3.14"`` or ``"go1.26.8"`` as a comparable triple."""
    match = re.search(r"(\d+)\.(\d+)(?:\.(\d+))?", text)
    if match is None:
        raise ValueError(f"not a version: {text!r}")
    major, minor, patch = match.groups()
    return int(major), int(minor), int(patch or 0)


def read_version(output: str, regex: str) -> str | None:
    """The version a tool printed, without a leading ``v``, or None when it is not there."""
    match = re.search(regex, output, flags=re.MULTILINE)
    return match.group(1) if match else None


def probe_version(path: Path, spec: ToolSpec) -> str | None:
    """Run the tool's version command; None when it fails or prints no version."""
    try:
        result = proc.run(
            (str(path), *spec.version_args),
            timeout=PROBE_TIMEOUT,
            check=False,
            what=f"{spec.name} version check",
        )
    except (ToolError, ProcessError):
        return None
    return read_version(result.stdout + "\n" + result.stderr, spec.version_regex)


# ------------------------------------------------------------------------------ locations


def project_root(start: Path | None = None) -> Path:
    """The nearest folder at or above ``start`` (cwd) holding pyproject.toml or ci.yaml."""
    here = (start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / "pyproject.toml").is_file() or (folder / "ci.yaml").is_file():
            return folder
    return here


def tools_dir() -> Path:
    """The project-local folder for pinned tools: ``$TOOLS_DIR`` or ``<root>/.tools/bin``."""
    env = os.environ.get("TOOLS_DIR")
    return Path(env) if env else project_root() / ".tools" / "bin"


def cache_root() -> Path:
    """Built binaries shared by every clone: ``$CI_TOOLS_CACHE`` or ``paths.cache_home()/tools``."""
    env = os.environ.get("CI_TOOLS_CACHE")
    return Path(env) if env else paths.cache_home() / "tools"


def docker_plugin_dir() -> Path:
    """The user's docker CLI plugin folder, where ``docker buildx`` finds the plugin."""
    config = os.environ.get("DOCKER_CONFIG")
    base = Path(config) if config else Path.home() / ".docker"
    return base / "cli-plugins"


def _is_pinned(path: Path) -> bool:
    """True when ``path`` is (a link to) a binary this module installed."""
    real = path.resolve()
    return any(real.is_relative_to(d.resolve()) for d in (tools_dir(), cache_root()))


# ------------------------------------------------------------------------------ discovery


@dataclass(frozen=True)
class _Probe:
    """One candidate binary and what its version check said."""

    path: Path
    source: str
    version: str | None
    problem: str  # empty when compatible


#: The Helm major ``helm`` means when neither CI_HELM_MAJOR nor a CI_HELM binary says otherwise.
DEFAULT_HELM_MAJOR = 4


def helm_major(major: int | None = None) -> int:
    """The major ``require("helm")`` uses: the argument, CI_HELM_MAJOR, CI_HELM's, else 4."""
    env = os.environ.get("CI_HELM_MAJOR", "")
    chosen = major or (int(env) if env.isdigit() else None) or _ci_helm_major()
    return chosen or DEFAULT_HELM_MAJOR


def _spec_for(name: str, major: int | None) -> ToolSpec:
    """The spec ``require`` should use; ``helm`` picks its major from the argument or env."""
    if name == "helm":
        major = helm_major(major)
        name = f"helm{major}"
    spec = TOOLS.get(name)
    if spec is None:
        raise ToolError(f"unknown tool '{name}' (known: {', '.join(sorted(TOOLS))})")
    if major is not None and spec.major is not None and major != spec.major:
        raise ToolError(f"{name} is major {spec.major}, not {major}")
    return spec


def ci_helm() -> Path | None:
    """The helm binary named by ``CI_HELM``, which ``require("helm")`` uses instead of a search."""
    env = os.environ.get("CI_HELM", "")
    return Path(env) if env else None


def _ci_helm_major() -> int | None:
    """The major version of the ``CI_HELM`` binary, so that it is used whichever it is."""
    path = ci_helm()
    version = probe_version(path, TOOLS["helm3"]) if path else None
    return parse_version(version)[0] if version else None


def _on_path(names: tuple[str, ...]) -> list[Path]:
    found = []
    for name in names:
        hit = shutil.which(name)
        if hit:
            found.append(Path(hit))
    return found


def _candidates(spec: ToolSpec) -> list[tuple[Path, str]]:
    """Where ``spec`` may be, in order of preference, each with its source label."""
    out: list[tuple[Path, str]] = []
    outside = list(_on_path(spec.path_names))
    if spec.docker_plugin:
        dirs = (docker_plugin_dir(), *SYSTEM_PLUGIN_DIRS)
        outside += [d / spec.binary for d in dirs if (d / spec.binary).is_file()]
    for path in outside:
        out.append((path, "pinned" if _is_pinned(path) else "PATH"))
    pinned = tools_dir() / spec.binary
    if pinned.exists():
        out.append((pinned, "pinned"))
    seen: set[Path] = set()
    unique = []
    for path, source in out:
        if path.resolve() not in seen:
            seen.add(path.resolve())
            unique.append((path, source))
    return unique


def _check(spec: ToolSpec, path: Path, source: str) -> _Probe:
    """Probe one candidate and say why it is not usable, if it is not."""
    label = spec.path_names[0] if spec.major else spec.name
    version = probe_version(path, spec)
    if version is None:
        return _Probe(path, source, None, f"{label} at {path} did not report a version")
    found = parse_version(version)
    if spec.major is not None and found[0] != spec.major:
        return _Probe(
            path, source, version, f"{label} {version} found at {path} is not {spec.major}.x"
        )
    if found < parse_version(spec.minimum):
        problem = f"{label} {version} found at {path} is too old (need >= {spec.minimum})"
        return _Probe(path, source, version, problem)
    return _Probe(path, source, version, "")


def search(spec: ToolSpec, *, only: Path | None = None) -> list[_Probe]:
    """Probe candidates in order, stopping at the first compatible one (which ends the list).

    ``only`` replaces the search with one given binary (``CI_HELM``).
    """
    probes = []
    candidates = [(only, "CI_HELM")] if only is not None else _candidates(spec)
    for path, source in candidates:
        probe = _check(spec, path, source)
        probes.append(probe)
        if not probe.problem:
            break
    return probes


_cache: dict[tuple[object, ...], Tool] = {}


def clear_cache() -> None:
    """Forget earlier lookups (after ``install``, or when a test changes PATH)."""
    _cache.clear()


def require(name: str, *, major: int | None = None) -> Tool:
    """A compatible ``name``: on PATH first, else pinned; ``ToolError`` naming the fix if none."""
    names = ("PATH", "CI_HELM", "CI_HELM_MAJOR", "DOCKER_CONFIG", "HOME")
    key = (name, major, tuple(os.environ.get(k) for k in names), tools_dir())
    if key in _cache:
        return _cache[key]
    spec = _spec_for(name, major)
    probes = search(spec, only=ci_helm() if name == "helm" else None)
    if probes and not probes[-1].problem:
        best = probes[-1]
        assert best.version is not None
        tool = Tool(spec.name, best.path, best.version, best.source)
        _cache[key] = tool
        return tool
    if probes:
        raise ToolError(f"{probes[0].problem}; {INSTALL_HINT}")
    label = f"helm {spec.major}" if spec.major else spec.binary
    raise ToolError(f"{label} not found on PATH or in {display_path(tools_dir())}; {INSTALL_HINT}")


def display_path(path: Path) -> str:
    """A path relative to the project when it is inside it: shorter messages."""
    try:
        return str(path.resolve().relative_to(project_root()))
    except ValueError:
        return str(path)


def find_go() -> Path | None:
    """The go command: on PATH, else the usual /usr/local/go/bin/go."""
    hit = shutil.which("go")
    if hit:
        return Path(hit)
    return GO_FALLBACK if GO_FALLBACK.is_file() else None
