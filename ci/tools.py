"""Find the external tools the steps run, check their versions, and build pinned ones.

Why this module: every step needs helm, kubectl, kubeconform, docker buildx or buildkit, and a
wrong or missing one should stop the pipeline with one line that names the tool, the version
found, the version needed and the make target that fixes it -- not with a stack of errors from
deep inside a step. A compatible tool already on PATH is preferred (GitHub runners ship helm,
kubectl and docker buildx); otherwise the pinned build in the project-local folder
(``.tools/bin``) is used. ``install`` builds the pinned versions from the Go module proxy into a
cache shared by every clone on the machine, so a second ``make tools`` only re-links.
"""

from __future__ import annotations

import fcntl
import os
import re
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from ci import paths, proc
from ci.errors import ConfigError, ProcessError, ToolError

#: The make target that installs the pinned tools; named in every "missing" message.
INSTALL_HINT = "run `make tools`"

#: Go toolchain needed to build the pinned versions (the newest ``go`` directive among them).
GO_MINIMUM = "1.26.8"
GO_FALLBACK = Path("/usr/local/go/bin/go")

#: Seconds a version probe may take before the binary counts as broken.
PROBE_TIMEOUT = 30.0
#: Seconds one tool's build may take (kubectl from a cold cache takes ~20 min on 2 cores).
BUILD_TIMEOUT = 3600.0

#: Where docker looks for CLI plugins besides the user's own folder, in its search order.
SYSTEM_PLUGIN_DIRS = (
    Path("/usr/local/lib/docker/cli-plugins"),
    Path("/usr/local/libexec/docker/cli-plugins"),
    Path("/usr/lib/docker/cli-plugins"),
    Path("/usr/libexec/docker/cli-plugins"),
)

_SEMVER = r"v?(\d+\.\d+(?:\.\d+)?)"


@dataclass(frozen=True)
class ToolSpec:
    """How to recognise, check and build one tool.

    ``binary`` is the file name in the project-local folder; ``path_names`` are the names
    looked up on PATH (helm 3 and helm 4 are both called ``helm`` there); ``built_name`` is
    what ``go build`` calls the output.
    """

    name: str
    module: str
    package: str
    version: str
    minimum: str
    version_args: tuple[str, ...]
    version_regex: str
    binary: str
    path_names: tuple[str, ...]
    built_name: str
    major: int | None = None
    ldflags: tuple[str, ...] = ()
    docker_plugin: bool = False
    #: Build through a wrapper module with ``replace`` lines (k8s.io/kubernetes staging modules).
    staging_replaces: bool = False
    #: Build inside the downloaded module: ``go install pkg@version`` refuses modules whose
    #: go.mod has ``replace`` or ``exclude`` directives (buildkit has excludes).
    from_source: bool = False

    @property
    def bare_version(self) -> str:
        return self.version.removeprefix("v")


def _x(var: str, value: str) -> str:
    return f"-X {var}={value}"


K8S_VERSION = "v1.34.4"
_K8S_LD = tuple(
    _x(f"{pkg}.{key}", value)
    for pkg in ("k8s.io/component-base/version", "k8s.io/client-go/pkg/version")
    for key, value in (
        ("gitVersion", K8S_VERSION),
        ("gitMajor", "1"),
        ("gitMinor", K8S_VERSION.split(".")[1]),
        ("gitTreeState", "clean"),
        ("buildDate", "1970-01-01T00:00:00Z"),
    )
)
_BUILDKIT_VERSION = "v0.34.2"
_BUILDKIT_LD = (
    _x("github.com/moby/buildkit/version.Version", _BUILDKIT_VERSION),
    _x("github.com/moby/buildkit/version.Package", "github.com/moby/buildkit"),
)


def _helm(major: int, version: str, minimum: str, kube_minor: str) -> ToolSpec:
    pkg = f"helm.sh/helm/v{major}"
    ld = [_x(f"{pkg}/internal/version.version", version)]
    ld.append(_x(f"{pkg}/internal/version.gitTreeState", "clean"))
    if major == 3:  # helm 3 takes its default Kubernetes version from ldflags too
        for var in ("pkg/lint/rules", "pkg/chartutil"):
            ld += [_x(f"{pkg}/{var}.k8sVersionMajor", "1")]
            ld += [_x(f"{pkg}/{var}.k8sVersionMinor", kube_minor)]
    return ToolSpec(
        name=f"helm{major}",
        module=pkg,
        package=f"{pkg}/cmd/helm",
        version=version,
        minimum=minimum,
        version_args=("version", "--short"),
        version_regex=r"^" + _SEMVER,
        binary=f"helm{major}",
        path_names=("helm",),
        built_name="helm",
        major=major,
        ldflags=tuple(ld),
    )


TOOLS: dict[str, ToolSpec] = {
    spec.name: spec
    for spec in (
        _helm(3, "v3.22.0", "3.14", kube_minor="37"),
        _helm(4, "v4.3.1", "4.0", kube_minor="37"),
        ToolSpec(
            name="kubectl",
            module="k8s.io/kubernetes",
            package="k8s.io/kubernetes/cmd/kubectl",
            version=K8S_VERSION,
            minimum="1.33",  # the cluster is 1.34; kubectl supports one minor of skew
            version_args=("version", "--client"),
            version_regex=r'Client Version: (?:version\.Info\{.*?GitVersion:")?' + _SEMVER,
            binary="kubectl",
            path_names=("kubectl",),
            built_name="kubectl",
            ldflags=_K8S_LD,
            staging_replaces=True,
        ),
        ToolSpec(
            name="kubeconform",
            module="github.com/yannh/kubeconform",
            package="github.com/yannh/kubeconform/cmd/kubeconform",
            version="v0.8.0",
            minimum="0.6",
            version_args=("-v",),
            version_regex=r"^" + _SEMVER,
            binary="kubeconform",
            path_names=("kubeconform",),
            built_name="kubeconform",
            ldflags=(_x("main.version", "v0.8.0"),),
        ),
        ToolSpec(
            name="actionlint",
            module="github.com/rhysd/actionlint",
            package="github.com/rhysd/actionlint/cmd/actionlint",
            version="v1.7.12",
            minimum="1.7",
            version_args=("-version",),
            version_regex=r"^" + _SEMVER,
            binary="actionlint",
            path_names=("actionlint",),
            built_name="actionlint",
        ),
        ToolSpec(
            name="buildx",
            module="github.com/docker/buildx",
            package="github.com/docker/buildx/cmd/buildx",
            version="v0.38.2",
            minimum="0.17",
            version_args=("version",),
            version_regex=r"buildx\S*\s+" + _SEMVER,
            binary="docker-buildx",
            path_names=("docker-buildx",),
            built_name="buildx",
            ldflags=(
                _x("github.com/docker/buildx/version.Version", "v0.38.2"),
                _x("github.com/docker/buildx/version.Package", "github.com/docker/buildx"),
            ),
            docker_plugin=True,
        ),
        ToolSpec(
            name="buildkitd",
            module="github.com/moby/buildkit",
            package="github.com/moby/buildkit/cmd/buildkitd",
            version=_BUILDKIT_VERSION,
            minimum="0.13",
            version_args=("--version",),
            version_regex=r"buildkit\s+" + _SEMVER,
            binary="buildkitd",
            path_names=("buildkitd",),
            built_name="buildkitd",
            ldflags=_BUILDKIT_LD,
            from_source=True,
        ),
        ToolSpec(
            name="cosign",
            module="github.com/sigstore/cosign/v2",
            package="github.com/sigstore/cosign/v2/cmd/cosign",
            version="v2.6.5",
            minimum="2.2",
            version_args=("version", "--json"),
            version_regex=r'"gitVersion":\s*"' + _SEMVER,
            binary="cosign",
            path_names=("cosign",),
            built_name="cosign",
            ldflags=(_x("sigs.k8s.io/release-utils/version.gitVersion", "v2.6.5"),),
        ),
        ToolSpec(
            name="syft",
            module="github.com/anchore/syft",
            package="github.com/anchore/syft/cmd/syft",
            version="v1.57.1",
            minimum="1.0",
            version_args=("version",),
            version_regex=r"Version:\s+" + _SEMVER,
            binary="syft",
            path_names=("syft",),
            built_name="syft",
            ldflags=(_x("main.version", "1.57.1"),),
        ),
    )
}

#: Names ``install`` accepts besides the tool names.
ALIASES: dict[str, tuple[str, ...]] = {
    "helm": ("helm3", "helm4"),
    "buildkit": ("buildkitd",),
    "docker-buildx": ("buildx",),
}


@dataclass(frozen=True)
class Tool:
    """A tool that passed its version check. ``source`` is "PATH", "pinned" or "CI_HELM"."""

    name: str
    path: Path
    version: str
    source: str


@dataclass(frozen=True)
class ToolStatus:
    """One line of ``ci doctor``: what was found, where, and what to do if it is not ok."""

    name: str
    path: Path | None
    version: str | None
    source: str
    status: str  # "ok", "missing" or "too-old"
    hint: str = ""
    required: bool = True

    @property
    def ok(self) -> bool:
        return self.status == "ok"


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


def _ci_helm() -> Path | None:
    """The helm binary named by ``CI_HELM``, which ``require("helm")`` uses instead of a search."""
    env = os.environ.get("CI_HELM", "")
    return Path(env) if env else None


def _ci_helm_major() -> int | None:
    """The major version of the ``CI_HELM`` binary, so that it is used whichever it is."""
    path = _ci_helm()
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


def _search(spec: ToolSpec, *, only: Path | None = None) -> list[_Probe]:
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
    probes = _search(spec, only=_ci_helm() if name == "helm" else None)
    if probes and not probes[-1].problem:
        best = probes[-1]
        assert best.version is not None
        tool = Tool(spec.name, best.path, best.version, best.source)
        _cache[key] = tool
        return tool
    if probes:
        raise ToolError(f"{probes[0].problem}; {INSTALL_HINT}")
    label = f"helm {spec.major}" if spec.major else spec.binary
    raise ToolError(f"{label} not found on PATH or in {_display(tools_dir())}; {INSTALL_HINT}")


def _display(path: Path) -> str:
    """A path relative to the project when it is inside it: shorter messages."""
    try:
        return str(path.resolve().relative_to(project_root()))
    except ValueError:
        return str(path)


# ------------------------------------------------------------------------------ doctor


def _tool_status(spec: ToolSpec) -> ToolStatus:
    probes = _search(spec)
    if probes and not probes[-1].problem:
        best = probes[-1]
        return ToolStatus(spec.name, best.path, best.version, best.source, "ok")
    if not probes:
        hint = f"not found on PATH or in {_display(tools_dir())}; {INSTALL_HINT}"
        return ToolStatus(spec.name, None, None, "-", "missing", hint)
    first = probes[0]
    status = "too-old" if first.version else "missing"
    return ToolStatus(
        spec.name,
        first.path,
        first.version,
        first.source,
        status,
        f"{first.problem}; {INSTALL_HINT}",
    )


def _ci_helm_status() -> ToolStatus:
    """The helm named by ``CI_HELM``, checked as ``require("helm")`` would."""
    try:
        tool = require("helm")
    except ToolError as exc:
        path = _ci_helm()
        return ToolStatus("helm (CI_HELM)", path, None, "CI_HELM", "missing", exc.message)
    return ToolStatus("helm (CI_HELM)", tool.path, tool.version, tool.source, "ok")


def find_go() -> Path | None:
    """The go command: on PATH, else the usual /usr/local/go/bin/go."""
    hit = shutil.which("go")
    if hit:
        return Path(hit)
    return GO_FALLBACK if GO_FALLBACK.is_file() else None


def _go_status() -> ToolStatus:
    go = find_go()
    hint = f"needed only to build missing tools: install Go >= {GO_MINIMUM} in /usr/local/go"
    if go is None:
        return ToolStatus("go", None, None, "-", "missing", hint, required=False)
    version = _run_version((str(go), "version"), r"go(\d+\.\d+(?:\.\d+)?)")
    source = "PATH" if shutil.which("go") else "/usr/local/go"
    if version is None or parse_version(version) < parse_version(GO_MINIMUM):
        return ToolStatus("go", go, version, source, "too-old", hint, required=False)
    return ToolStatus("go", go, version, source, "ok", required=False)


def _run_version(argv: tuple[str, ...], regex: str) -> str | None:
    try:
        result = proc.run(argv, timeout=PROBE_TIMEOUT, check=False, what="version check")
    except (ToolError, ProcessError):
        return None
    if not result.ok:
        return None
    return read_version(result.stdout, regex)


def _docker_statuses() -> list[ToolStatus]:
    """The docker CLI, and whether its daemon answers (the images step needs both)."""
    hit = shutil.which("docker")
    if hit is None:
        hint = "install the docker.io package (Debian) or Docker Engine"
        return [
            ToolStatus("docker", None, None, "-", "missing", hint),
            ToolStatus("docker daemon", None, None, "-", "missing", "needs the docker CLI"),
        ]
    docker = Path(hit)
    fmt = "{{.Client.Version}}"
    client = _run_version((hit, "version", "--format", fmt), _SEMVER)
    cli = ToolStatus("docker", docker, client, "PATH", "ok" if client else "missing")
    server = _run_version((hit, "version", "--format", "{{.Server.Version}}"), _SEMVER)
    host = os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")
    if server is None:
        hint = f"daemon not reachable at {host}: run `make services`"
        return [cli, ToolStatus("docker daemon", None, None, host, "missing", hint)]
    return [cli, ToolStatus("docker daemon", None, server, host, "ok")]


def doctor() -> list[ToolStatus]:
    """What every tool resolves to, where it came from, and what is missing or too old."""
    statuses = [_tool_status(spec) for spec in TOOLS.values()]
    if _ci_helm() is not None:
        statuses.append(_ci_helm_status())
    return [*statuses, *_docker_statuses(), _go_status()]


# ------------------------------------------------------------------------------ install


def expand_names(names: list[str] | None) -> list[ToolSpec]:
    """The specs ``names`` stand for (all when empty), aliases expanded, order kept."""
    if not names:
        return list(TOOLS.values())
    wanted: list[str] = []
    for name in names:
        for real in ALIASES.get(name, (name,)):
            if real not in TOOLS:
                known = ", ".join([*TOOLS, *ALIASES])
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
    """
    specs = expand_names(names)
    target_dir = tools_dir()
    target_dir.mkdir(parents=True, exist_ok=True)
    results = [_install_one(spec, target_dir, on_progress) for spec in specs]
    _link_default_helm(target_dir)
    clear_cache()
    return results


def _install_one(spec: ToolSpec, target_dir: Path, on_progress: Progress) -> InstallResult:
    started = time.monotonic()
    link = target_dir / spec.binary
    if _at_pin(link, spec):
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
    go = _go_status()
    if go.path is None:
        raise ToolError(
            f"go not found on PATH or in {GO_FALLBACK.parent}; install Go >= {GO_MINIMUM} "
            "to build the pinned tools (Debian's golang package is too old)"
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
