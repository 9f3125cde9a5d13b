"""Build, tag and push the configured images; skip those whose inputs the registry already has.

How it fits together:

* ``plan`` turns the configuration and the git state into one ``Job`` per image: its
  repository, its tags (full and short SHA, branch, semver on a version tag) and the
  content tag ``inputs-<hash>``, a hash of everything that decides the image's content (the
  Dockerfile, every context file ``.dockerignore`` keeps, build args, target, platforms and the
  base image references).
* ``build_images`` runs the jobs in a bounded thread pool. A job whose content tag is already
  in the registry is *cached*: nothing is built, the other tags are added to the existing
  manifest through the registry API. Otherwise a ``Builder`` builds and pushes the first tag,
  the registry confirms the digest, the remaining tags are added, and the content tag goes
  last -- so a failed run never leaves a content tag on a partial image, and the next run
  cannot mistake it for a finished one.
* Two builders share one interface: ``BuildxBuilder`` (BuildKit through ``docker buildx``,
  registry cache import and export, a cache ref per image) and ``DockerBuilder`` (the Docker
  Engine API's classic builder through the Docker SDK).

Steps report progress through a callback and return ``ImagesResult``; only the CLI prints.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import functools
import hashlib
import json
import os
import re
import socket as socketlib
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import docker
from docker.errors import APIError, DockerException, NotFound
from docker.utils.build import exclude_paths, tar

from ci import gha, proc, tools
from ci.errors import (
    BuildError,
    CiError,
    ConfigError,
    EnvironmentNotReady,
    Location,
    ProcessError,
    RegistryError,
    ToolError,
    first_line,
)
from ci.registry import Client, is_loopback, split_reference

if TYPE_CHECKING:
    from ci.config import Config, Image
    from ci.config import Registry as RegistryConfig

#: Bump when the hash recipe changes, so old content tags stop matching.
HASH_SCHEME = "ci-images-v1"
CONTENT_TAG_PREFIX = "inputs-"
#: Hex digits of the input hash kept in the content tag (128 bits).
CONTENT_HASH_LEN = 32
CACHE_TAG_PREFIX = "buildcache-"
BUILDERS = ("auto", "buildx", "docker")
DEFAULT_JOBS = 2

#: Where the images step starts its own BuildKit daemon when none is running.
BUILDKIT_DIR = Path("/run/schedule-ci")
BUILDKIT_SOCKET = BUILDKIT_DIR / "buildkitd.sock"
BUILDX_BUILDER = "ci"

#: Build args every image receives (also written as OCI labels); not part of the input hash,
#: or every commit would rebuild everything.
AUTO_ARGS = ("VCS_REF", "VERSION", "BUILD_DATE")

#: Called with an image name and a short status ("building step 3/9", "pushing 2/5 layers").
Progress = Callable[[str, str], None]


def _no_progress(_name: str, _status: str) -> None:
    """The default progress sink: steps stay quiet unless someone listens."""


# ----------------------------------------------------------------------------- git


@dataclass(frozen=True)
class GitInfo:
    """What the tags and labels say about the source: commit, branch, version tag, URL."""

    sha: str
    branch: str | None = None
    tag: str | None = None
    source: str | None = None

    @property
    def short_sha(self) -> str:
        return self.sha[:7]

    @property
    def version(self) -> str:
        """The release version on a version tag (``v1.2.3`` -> ``1.2.3``), else the short SHA."""
        if self.tag and SEMVER.match(self.tag):
            return self.tag.removeprefix("v")
        return self.short_sha


def git_info(root: Path, env: Mapping[str, str] | None = None) -> GitInfo:
    """Git facts from the Actions environment when present, else from ``git`` in ``root``."""
    env = os.environ if env is None else env
    if env.get("GITHUB_SHA"):
        return _git_info_actions(env)
    try:
        sha = _git(root, "rev-parse", "HEAD")
    except CiError:
        raise ConfigError(
            f"{root}: not a git repository with a commit (the image tags need the commit SHA)"
        ) from None
    branch = _git(root, "rev-parse", "--abbrev-ref", "HEAD", check=False)
    tag = _git(root, "describe", "--tags", "--exact-match", "HEAD", check=False)
    remote = _git(root, "config", "--get", "remote.origin.url", check=False)
    return GitInfo(
        sha=sha,
        branch=branch if branch and branch != "HEAD" else None,
        tag=tag or None,
        source=https_url(remote) if remote else None,
    )


def _git_info_actions(env: Mapping[str, str]) -> GitInfo:
    """Under Actions the checkout may be shallow or detached; the environment is exact."""
    ref_type = env.get("GITHUB_REF_TYPE", "branch")
    name = env.get("GITHUB_HEAD_REF") or env.get("GITHUB_REF_NAME") or None
    server = env.get("GITHUB_SERVER_URL", "https://github.com")
    repo = env.get("GITHUB_REPOSITORY")
    return GitInfo(
        sha=env["GITHUB_SHA"],
        branch=name if ref_type != "tag" else None,
        tag=name if ref_type == "tag" else None,
        source=f"{server}/{repo}" if repo else None,
    )


def _git(root: Path, *args: str, check: bool = True) -> str:
    result = proc.run(("git", "-C", str(root), *args), timeout=30, check=check, what="git")
    return result.stdout.strip() if result.ok else ""


def https_url(remote: str) -> str:
    """``git@github.com:org/repo.git`` -> ``https://github.com/org/repo`` (for the source label)."""
    url = remote.strip()
    match = re.match(r"^(?:ssh://)?git@([^:/]+)[:/](.+)$", url)
    if match:
        url = f"https://{match.group(1)}/{match.group(2)}"
    url = re.sub(r"^(https?://)[^@/]+@", r"\1", url)  # drop credentials
    return url.removesuffix(".git")


# ----------------------------------------------------------------------------- tags

SEMVER = re.compile(
    r"^v?(?P<major>0|[1-9]\d*)\.(?P<minor>0|[1-9]\d*)\.(?P<patch>0|[1-9]\d*)"
    r"(?P<pre>-[0-9A-Za-z.-]+)?(?P<build>\+[0-9A-Za-z.-]+)?$"
)
_TAG_CHARS = re.compile(r"[^A-Za-z0-9_.-]+")


def sanitize_tag(name: str) -> str | None:
    """A branch or ref name as a valid image tag (``feature/x`` -> ``feature-x``), or None."""
    tag = _TAG_CHARS.sub("-", name).lstrip(".-")[:128].rstrip(".-")
    return tag or None


def semver_tags(ref: str) -> list[str]:
    """``v1.2.3`` -> ``1.2.3``, ``1.2``, ``1``.

    A pre-release gets only its full version (an ``-rc`` must not move ``1.2``), and ``0.x``
    gets no bare ``0`` (0.x releases promise no compatibility). Build metadata's ``+`` is not
    allowed in tags and becomes ``_``. Not a version: no tags.
    """
    match = SEMVER.match(ref)
    if not match:
        return []
    full = ref.removeprefix("v").replace("+", "_")
    if match.group("pre"):
        return [full]
    major, minor = match.group("major"), match.group("minor")
    tags = [full, f"{major}.{minor}"]
    if major != "0":
        tags.append(major)
    return tags


def image_tags(git: GitInfo, content_tag: str) -> tuple[str, ...]:
    """Every tag of one image, the content tag last (it is pushed last)."""
    tags = [git.sha, git.short_sha]
    if git.branch and (branch := sanitize_tag(git.branch)):
        tags.append(branch)
    if git.tag:
        tags += semver_tags(git.tag) or [t for t in [sanitize_tag(git.tag)] if t]
    tags.append(content_tag)
    return tuple(dict.fromkeys(tags))


# ----------------------------------------------------------------------------- dockerfile


def logical_lines(text: str) -> Iterator[tuple[int, str]]:
    """Dockerfile instructions with continuations joined, comments dropped, and their line."""
    buf, start = "", 0
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not buf and (not line or line.startswith("#")):
            continue
        if buf and line.startswith("#"):
            continue
        if not buf:
            start = number
        if line.endswith("\\"):
            buf += line[:-1] + " "
            continue
        yield start, buf + line
        buf = ""
    if buf:
        yield start, buf


_VAR = re.compile(
    r"\$(?:\{([A-Za-z_][A-Za-z0-9_]*)(?::?([-+])([^}]*))?\}|([A-Za-z_][A-Za-z0-9_]*))"
)


def substitute(text: str, values: Mapping[str, str]) -> str:
    """Dockerfile variable substitution: ``$X``, ``${X}``, ``${X:-default}``, ``${X:+alt}``."""

    def sub(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(4)
        value = values.get(name, "")
        if match.group(2) == "-":
            return value or match.group(3)
        if match.group(2) == "+":
            return match.group(3) if value else ""
        return value

    return _VAR.sub(sub, text)


def base_images(dockerfile: str, build_args: Mapping[str, str]) -> list[str]:
    """The images the ``FROM`` lines name after ``ARG`` substitution, without stage names.

    Part of the input hash: changing ``BUILD_IMAGE`` from one base to another must rebuild.
    """
    args: dict[str, str] = {}
    stages: set[str] = set()
    refs: list[str] = []
    seen_from = False
    for _, line in logical_lines(dockerfile):
        word, _, rest = line.partition(" ")
        if word.upper() == "ARG" and not seen_from:
            for decl in rest.split():
                name, eq, default = decl.partition("=")
                args[name] = build_args.get(name, default.strip("\"'") if eq else "")
        elif word.upper() == "FROM":
            seen_from = True
            words = [w for w in rest.split() if not w.startswith("--")]
            if not words:
                continue
            ref = substitute(words[0], args)
            if ref.lower() != "scratch" and ref not in stages and ref not in refs:
                refs.append(ref)
            if len(words) >= 3 and words[1].lower() == "as":
                stages.add(words[2])
    return refs


# ----------------------------------------------------------------------------- context


def ignore_patterns(context: Path, dockerfile: Path) -> list[str]:
    """The ``.dockerignore`` patterns BuildKit would use for this Dockerfile.

    ``<Dockerfile>.dockerignore`` next to the Dockerfile wins over the context's own file,
    as in BuildKit; lines are parsed exactly as the Docker SDK parses them.
    """
    for candidate in (Path(f"{dockerfile}.dockerignore"), context / ".dockerignore"):
        if candidate.is_file():
            lines = candidate.read_text(encoding="utf-8").splitlines()
            return [ln.strip() for ln in lines if ln.strip() and not ln.strip().startswith("#")]
    return []


def dockerfile_in_context(context: Path, dockerfile: Path) -> str | None:
    """The Dockerfile's path relative to the context, or None when it lives elsewhere."""
    try:
        return dockerfile.resolve().relative_to(context.resolve()).as_posix()
    except ValueError:
        return None


def context_files(context: Path, dockerfile: Path) -> list[str]:
    """Every context path the build can see, through the Docker SDK's own ignore matching."""
    inside = dockerfile_in_context(context, dockerfile)
    patterns = ignore_patterns(context, dockerfile)
    return sorted(exclude_paths(str(context), patterns, dockerfile=inside or ".dockerfile"))


def _file_digest(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def input_hash(
    image: Image,
    *,
    base_refs: Sequence[str],
    files: Sequence[str] | None = None,
) -> str:
    """SHA-256 of everything that decides an image's content, as hex.

    File contents, names, types and the executable bit go in (``COPY`` keeps the mode);
    timestamps and ownership do not, so a fresh checkout hashes the same as an old one.
    """
    h = hashlib.sha256()

    def feed(*parts: object) -> None:
        h.update(json.dumps(parts, separators=(",", ":")).encode() + b"\n")

    feed(HASH_SCHEME)
    feed("dockerfile", hashlib.sha256(image.dockerfile.read_bytes()).hexdigest())
    feed("args", sorted(image.build_args.items()))
    feed("target", image.target or "")
    feed("platforms", list(image.platforms))
    feed("bases", list(base_refs))
    for rel in files if files is not None else context_files(image.context, image.dockerfile):
        path = image.context / rel
        if path.is_symlink():
            feed("link", rel, os.readlink(path))
        elif path.is_dir():
            feed("dir", rel)
        elif path.is_file():
            feed("file", rel, os.access(path, os.X_OK), _file_digest(path))
    return h.hexdigest()


# ----------------------------------------------------------------------------- plan


@dataclass(frozen=True)
class Job:
    """Everything needed to build and publish one image."""

    image: Image
    repository: str
    tags: tuple[str, ...]
    input_hash: str
    build_args: dict[str, str]
    labels: dict[str, str]
    base_refs: tuple[str, ...]

    @property
    def name(self) -> str:
        return self.image.name

    @property
    def content_tag(self) -> str:
        return CONTENT_TAG_PREFIX + self.input_hash[:CONTENT_HASH_LEN]

    @property
    def cache_ref(self) -> str:
        """Each image its own cache ref, so two images never overwrite each other's cache."""
        return f"{self.repository}:{CACHE_TAG_PREFIX}{self.name}"


def select_images(cfg: Config, only: Sequence[str] = ()) -> list[Image]:
    """The images to build: all, or the ``--only`` ones (unknown names are a usage error)."""
    if not only:
        return list(cfg.images)
    return [cfg.image(name) for name in dict.fromkeys(only)]


#: What a base image reference currently points to (an image ID or digest), or None if unknown.
Resolver = Callable[[str], str | None]


def plan(
    cfg: Config,
    git: GitInfo,
    *,
    only: Sequence[str] = (),
    now: dt.datetime | None = None,
    resolve: Resolver | None = None,
) -> list[Job]:
    """One ``Job`` per selected image; raises ``BuildError`` for a missing Dockerfile/context.

    With ``resolve``, each base reference enters the input hash together with what it points
    to now, so a base rebuilt under the same tag rebuilds the images on top of it.
    """
    created = (now or dt.datetime.now(dt.UTC)).strftime("%Y-%m-%dT%H:%M:%SZ")
    return [_job(cfg, image, git, created, resolve) for image in select_images(cfg, only)]


def base_refs(cfg: Config, only: Sequence[str] = ()) -> list[str]:
    """Every base image the selected images' Dockerfiles name (checks the paths first)."""
    refs: list[str] = []
    for image in select_images(cfg, only):
        _check_paths(cfg, image)
        text = image.dockerfile.read_text(encoding="utf-8", errors="replace")
        refs += [r for r in base_images(text, image.build_args) if r not in refs]
    return refs


def _check_paths(cfg: Config, image: Image) -> None:
    if not image.context.is_dir():
        raise BuildError(
            f"image {image.name}: build context {image.context} does not exist",
            location=Location(str(cfg.path)),
        )
    if not image.dockerfile.is_file():
        raise BuildError(
            f"image {image.name}: Dockerfile {image.dockerfile} does not exist",
            location=Location(str(cfg.path)),
        )


def _job(cfg: Config, image: Image, git: GitInfo, created: str, resolve: Resolver | None) -> Job:
    _check_paths(cfg, image)
    text = image.dockerfile.read_text(encoding="utf-8", errors="replace")
    bases = tuple(base_images(text, image.build_args))
    pinned = [f"{ref}={resolve(ref) or ''}" if resolve else ref for ref in bases]
    digest = input_hash(image, base_refs=pinned)
    labels = {
        "org.opencontainers.image.title": image.name,
        "org.opencontainers.image.revision": git.sha,
        "org.opencontainers.image.created": created,
        "org.opencontainers.image.version": git.version,
    }
    if git.source:
        labels["org.opencontainers.image.source"] = git.source
    auto = dict(zip(AUTO_ARGS, (git.sha, git.version, created), strict=True))
    return Job(
        image=image,
        repository=cfg.registry.repository(image.name),
        tags=image_tags(git, CONTENT_TAG_PREFIX + digest[:CONTENT_HASH_LEN]),
        input_hash=digest,
        build_args={**image.build_args, **auto},
        labels=labels,
        base_refs=bases,
    )


# ----------------------------------------------------------------------------- credentials


def credentials(
    reg: RegistryConfig, env: Mapping[str, str] | None = None
) -> tuple[str, str] | None:
    """(username, password) from the configured variables; GHCR falls back to the Actions token."""
    env = os.environ if env is None else env
    user, password = env.get(reg.username_env, ""), env.get(reg.password_env, "")
    if (not user or not password) and reg.host == "ghcr.io":
        user = user or env.get("GITHUB_ACTOR", "")
        password = password or env.get("GITHUB_TOKEN", "")
    if user and password:
        return user, password
    return None


@dataclass(frozen=True)
class LoginResult:
    host: str
    username: str
    message: str


def login(cfg: Config, env: Mapping[str, str] | None = None) -> LoginResult:
    """``docker login`` with the password on stdin; the secret is masked before anything runs."""
    reg = cfg.registry
    creds = credentials(reg, env)
    if creds is None:
        ghcr = " (or GITHUB_ACTOR and GITHUB_TOKEN)" if reg.host == "ghcr.io" else ""
        raise ConfigError(
            f"registry {reg.host}: no credentials: set {reg.username_env} and "
            f"{reg.password_env}{ghcr}"
        )
    user, password = creds
    gha.mask(password)
    result = proc.run(
        ("docker", "login", reg.host, "--username", user, "--password-stdin"),
        input=password,
        timeout=60,
        check=False,
        what=f"docker login {reg.host}",
    )
    if not result.ok:
        reason = proc.tail(result.stderr or result.stdout, 1).replace(password, "***")
        raise RegistryError(f"registry {reg.host}: login as {user} failed: {reason}")
    return LoginResult(host=reg.host, username=user, message=result.stdout.strip())


def registry_client(cfg: Config, env: Mapping[str, str] | None = None) -> Client:
    """A registry API client for the configured registry, with credentials when given."""
    creds = credentials(cfg.registry, env)
    return Client(
        host=cfg.registry.host,
        insecure=cfg.registry.insecure,
        username=creds[0] if creds else None,
        password=creds[1] if creds else None,
    )


# ----------------------------------------------------------------------------- builders


class Builder(Protocol):
    """Builds one job; when ``push``, pushes ``job.tags[0]`` and returns the manifest digest."""

    name: str
    #: Build every step again, ignoring layer and registry caches (benchmarks, broken caches).
    no_cache: bool

    def build(self, job: Job, *, push: bool, progress: Progress, log: list[str]) -> str: ...


class StepCounter:
    """Turns build output into few status lines: a step change at most every ``interval``."""

    def __init__(self, name: str, progress: Progress, interval: float = 3.0) -> None:
        self.name, self.progress, self.interval = name, progress, interval
        self._last = float("-inf")
        self._layers: dict[str, bool] = {}

    def step(self, text: str) -> None:
        now = time.monotonic()
        if now - self._last >= self.interval:
            self._last = now
            self.progress(self.name, f"building {text}")

    def layer(self, layer_id: str, done: bool) -> None:
        """Track a layer's push; report ``pushing N/M layers`` when a layer finishes."""
        first = not self._layers
        before = self._layers.get(layer_id, False)
        self._layers[layer_id] = done or before
        if first or (done and not before):
            finished = sum(self._layers.values())
            self.progress(self.name, f"pushing {finished}/{len(self._layers)} layers")


def docker_client() -> Any:
    """A Docker SDK client that answered a ping, or ``EnvironmentNotReady``."""
    try:
        client = docker.from_env(timeout=600)
        client.ping()
    except DockerException as exc:
        host = os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")
        raise EnvironmentNotReady(
            f"docker daemon not reachable at {host}: {_first_line(exc)} (start it: hack/dockerd.sh)"
        ) from None
    return client


def _first_line(exc: BaseException) -> str:
    match = re.search(r'\("(.*)"\)\s*$', str(exc).strip())  # APIError: '... ("reason")'
    return first_line(match.group(1) if match and match.group(1) else exc)


class DockerBuilder:
    """The Docker Engine API's classic builder through the Docker SDK.

    The context tar is made here, from the same file list the input hash used, so the build
    sees exactly what was hashed (including a ``<Dockerfile>.dockerignore``).
    """

    name = "docker"
    no_cache = False

    def __init__(self, client: Any, retries: int = 3, backoff: float = 2.0) -> None:
        self.client = client
        self.retries, self.backoff = retries, backoff
        info = client.version()
        self.native = f"{info.get('Os', 'linux')}/{info.get('Arch', 'amd64')}"

    def build(self, job: Job, *, push: bool, progress: Progress, log: list[str]) -> str:
        image = job.image
        if len(image.platforms) > 1:
            raise BuildError(
                f"image {job.name}: the docker builder builds one platform, not "
                f"{','.join(image.platforms)}; use --builder buildx"
            )
        image_id = self._build(job, progress, log)
        for tag in job.tags:
            self.client.api.tag(image_id, job.repository, tag)
        if not push:
            return str(image_id)
        return self._push(job, progress, log)

    def _context(self, job: Job) -> tuple[Any, str]:
        image = job.image
        inside = dockerfile_in_context(image.context, image.dockerfile)
        if inside is not None:
            fileobj = tar(
                str(image.context),
                exclude=ignore_patterns(image.context, image.dockerfile),
                dockerfile=(inside, None),
            )
            return fileobj, inside
        name = f".dockerfile.{job.name}"
        text = image.dockerfile.read_text(encoding="utf-8")
        fileobj = tar(
            str(image.context),
            exclude=ignore_patterns(image.context, image.dockerfile),
            dockerfile=(name, text),
        )
        return fileobj, name

    def _build(self, job: Job, progress: Progress, log: list[str]) -> str:
        fileobj, dockerfile = self._context(job)
        platform = job.image.platforms[0] if job.image.platforms else self.native
        counter = StepCounter(job.name, progress)
        image_id = ""
        try:
            stream = self.client.api.build(
                fileobj=fileobj,
                custom_context=True,
                dockerfile=dockerfile,
                tag=f"{job.repository}:{job.tags[0]}",
                buildargs=job.build_args,
                labels=job.labels,
                target=job.image.target,
                platform=None if platform == self.native else platform,
                rm=True,
                forcerm=True,
                nocache=self.no_cache,
                pull=False,
                decode=True,
            )
            for chunk in stream:
                image_id = self._on_build_chunk(job, chunk, counter, log) or image_id
        except APIError as exc:
            raise _build_error(job, _first_line(exc), log) from None
        finally:
            fileobj.close()
        if not image_id:
            raise _build_error(job, "the build produced no image", log)
        return image_id

    @staticmethod
    def _on_build_chunk(
        job: Job, chunk: dict[str, Any], counter: StepCounter, log: list[str]
    ) -> str | None:
        if "error" in chunk:
            log.append(str(chunk["error"]))
            raise _build_error(job, str(chunk["error"]).strip(), log)
        text = str(chunk.get("stream", ""))
        for line in text.splitlines():
            log.append(line)
            match = re.match(r"^Step (\d+/\d+) : (.*)", line)
            if match:
                counter.step(f"step {match.group(1)}: {match.group(2)[:60]}")
        aux = chunk.get("aux") or {}
        return str(aux["ID"]) if "ID" in aux else None

    def _push(self, job: Job, progress: Progress, log: list[str]) -> str:
        """Push the first tag, retrying registry errors; return the manifest digest."""
        last = ""
        for attempt in range(self.retries):
            if attempt:
                progress(job.name, f"push failed ({last}); retrying")
                time.sleep(self.backoff * 2 ** (attempt - 1))
            counter = StepCounter(job.name, progress)
            try:
                digest = self._push_once(job, counter, log)
            except RegistryError as exc:
                last = exc.message
                continue
            if digest:
                return digest
            last = "the push reported no digest"
        raise RegistryError(
            f"image {job.name}: push to {job.repository} failed: {last}",
            detail=proc.tail("\n".join(log)),
        )

    def _push_once(self, job: Job, counter: StepCounter, log: list[str]) -> str:
        digest = ""
        try:
            stream = self.client.api.push(job.repository, tag=job.tags[0], stream=True, decode=True)
            for chunk in stream:
                if "error" in chunk:
                    raise RegistryError(str(chunk["error"]).strip())
                status, layer = str(chunk.get("status", "")), str(chunk.get("id", ""))
                if layer and status in ("Preparing", "Waiting", "Pushed", "Layer already exists"):
                    counter.layer(layer, status in ("Pushed", "Layer already exists"))
                if status and status not in ("Pushing", "Preparing", "Waiting"):
                    log.append(f"{layer}: {status}" if layer else status)
                digest = str((chunk.get("aux") or {}).get("Digest", digest))
        except APIError as exc:
            raise RegistryError(_first_line(exc)) from None
        return digest


class BuildxBuilder:
    """BuildKit through ``docker buildx``, with registry cache import and export.

    ``buildx`` is the pinned binary (run standalone, so no Docker CLI plugin setup is needed);
    the builder instance is a ``remote`` driver pointing at a ``buildkitd`` this step starts
    when none runs, because the ``docker`` driver of Docker 20.10 cannot export cache.
    """

    name = "buildx"
    no_cache = False

    def __init__(
        self,
        buildx: Path,
        *,
        builder: str = BUILDX_BUILDER,
        cache: bool = True,
        insecure: bool = False,
        metadata_dir: Path,
        retries: int = 3,
        backoff: float = 2.0,
    ) -> None:
        self.buildx, self.builder, self.cache, self.insecure = buildx, builder, cache, insecure
        self.metadata_dir = metadata_dir
        self.retries, self.backoff = retries, backoff

    def argv(self, job: Job, *, push: bool, metadata: Path) -> tuple[str, ...]:
        """The ``buildx build`` command line for one job (pure: unit tests check it)."""
        image = job.image
        args: list[str] = [str(self.buildx), "build", "--builder", self.builder]
        args += ["--file", str(image.dockerfile), "--progress", "plain"]
        args += ["--platform", ",".join(image.platforms)]
        for key, value in sorted(job.build_args.items()):
            args += ["--build-arg", f"{key}={value}"]
        for key, value in sorted(job.labels.items()):
            args += ["--label", f"{key}={value}"]
        if image.target:
            args += ["--target", image.target]
        insecure = ",registry.insecure=true" if self.insecure else ""
        if self.no_cache:
            args.append("--no-cache")
        elif self.cache:
            args += ["--cache-from", f"type=registry,ref={job.cache_ref}{insecure}"]
        if self.cache and push:
            args += ["--cache-to", f"type=registry,ref={job.cache_ref},mode=max{insecure}"]
        if push:
            name = f"{job.repository}:{job.tags[0]}"
            args += ["--output", f"type=image,name={name},push=true{insecure}"]
        else:
            args += ["--output", "type=cacheonly"]
        args += ["--metadata-file", str(metadata), str(image.context)]
        return tuple(args)

    def build(self, job: Job, *, push: bool, progress: Progress, log: list[str]) -> str:
        self.metadata_dir.mkdir(parents=True, exist_ok=True)
        metadata = self.metadata_dir / f"{job.name}.metadata.json"
        for attempt in range(self.retries):
            if attempt:
                progress(job.name, "registry error; retrying")
                time.sleep(self.backoff * 2 ** (attempt - 1))
            metadata.unlink(missing_ok=True)
            counter = StepCounter(job.name, progress)
            try:
                proc.run(
                    self.argv(job, push=push, metadata=metadata),
                    timeout=3600,
                    on_line=functools.partial(self._on_line, counter=counter, log=log),
                    what=f"build {job.name}",
                )
            except ProcessError:
                if not _is_registry_failure("\n".join(log[-40:])):
                    raise _build_error(job, _buildx_reason(log), log) from None
                continue
            return self._digest(job, metadata, push)
        raise RegistryError(
            f"image {job.name}: push failed: {_buildx_reason(log)}",
            detail=proc.tail("\n".join(log)),
        )

    @staticmethod
    def _on_line(line: str, _stream: str, *, counter: StepCounter, log: list[str]) -> None:
        log.append(line)
        match = re.match(r"^#\d+ \[(?:[\w.-]+ )?(\d+/\d+)\] (.*)", line)
        if match:
            counter.step(f"step {match.group(1)}: {match.group(2)[:60]}")
            return
        match = re.match(r"^#\d+ pushing layer (sha256:[0-9a-f]{12})[0-9a-f]*.*?( done)?$", line)
        if match:
            counter.layer(match.group(1), bool(match.group(2)))
            return
        # Plain progress reports the push as one status, not per layer.
        match = re.match(r"^#\d+ (pushing layers|exporting cache to registry)$", line)
        if match:
            counter.progress(counter.name, match.group(1))

    @staticmethod
    def _digest(job: Job, metadata: Path, push: bool) -> str:
        try:
            data = json.loads(metadata.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            data = {}
        digest = str(data.get("containerimage.digest", ""))
        if push and not digest:
            raise BuildError(f"image {job.name}: buildx reported no digest in {metadata}")
        return digest or "(not pushed)"


def _is_registry_failure(text: str) -> bool:
    """Output that means the registry failed, not the build: worth retrying."""
    markers = (
        "failed to push",
        "connection refused",
        "502 Bad Gateway",
        "503 Service",
        "i/o timeout",
        "connection reset",
        "unexpected status: 5",
    )
    return any(m.lower() in text.lower() for m in markers)


def _buildx_reason(log: list[str]) -> str:
    """The line that explains a buildx failure (``ERROR: ...``), without the noise."""
    for line in reversed(log):
        text = re.sub(r"^#\d+\s+", "", line.strip())
        if text.startswith("ERROR:"):
            return text.removeprefix("ERROR:").strip()
    return proc.tail("\n".join(log), 1) or "buildx failed"


def _build_error(job: Job, reason: str, log: list[str]) -> BuildError:
    """One line naming the image, pointing at the Dockerfile line when the output names one."""
    line = _dockerfile_line(reason, log)
    return BuildError(
        f"image {job.name}: build failed: {reason}",
        location=Location(str(job.image.dockerfile), line) if line else None,
        detail=proc.tail("\n".join(log)),
    )


def _dockerfile_line(reason: str, log: list[str]) -> int | None:
    """``parse error on line 3`` in the reason, or BuildKit's ``Dockerfile:12`` excerpt header."""
    match = re.search(r"parse error (?:on )?line (\d+)", reason)
    if match:
        return int(match.group(1))
    for text in reversed(log[-60:]):
        match = re.search(r"(?:^|\s)[\w./-]*Dockerfile:(\d+)\s*$", text)
        if match:
            return int(match.group(1))
    return None


# ----------------------------------------------------------------------------- buildkit


def buildkit_config(insecure_hosts: Sequence[str]) -> str:
    """``buildkitd.toml``: registries on this machine speak plain HTTP."""
    lines = []
    for host in sorted(set(insecure_hosts)):
        lines += [f'[registry."{host}"]', "  http = true", "  insecure = true", ""]
    return "\n".join(lines)


def _buildx_ready(buildx: Path, builder: str) -> bool:
    result = proc.run(
        (str(buildx), "inspect", "--bootstrap", builder),
        timeout=60,
        check=False,
        what="buildx inspect",
    )
    return result.ok and "running" in result.stdout.lower()


def ensure_buildkit(
    buildx: Path,
    insecure_hosts: Sequence[str],
    socket: Path = BUILDKIT_SOCKET,
    builder: str = BUILDX_BUILDER,
) -> None:
    """Make ``buildx --builder ci`` work: start ``buildkitd`` and create the remote builder.

    Idempotent and fast when both exist (one ``buildx inspect``).
    """
    if _buildx_ready(buildx, builder):
        return
    if not socket_alive(socket):
        # A socket file left by a daemon that is gone (a reboot, a killed container) must not
        # pass for a running one: remove it and start afresh.
        socket.unlink(missing_ok=True)
        buildkitd = tools.require("buildkitd")
        socket.parent.mkdir(parents=True, exist_ok=True)
        config = socket.parent / "buildkitd.toml"
        config.write_text(buildkit_config(insecure_hosts), encoding="utf-8")
        logfile = socket.parent / "buildkitd.log"
        proc.run(
            (
                "sh",
                "-c",
                'exec setsid -f "$0" "$@" >>"$LOG" 2>&1 </dev/null',
                str(buildkitd.path),
                "--addr",
                f"unix://{socket}",
                "--config",
                str(config),
            ),
            env={"LOG": str(logfile)},
            timeout=30,
            what="start buildkitd",
        )
        _wait_for(socket, logfile)
    proc.run((str(buildx), "rm", builder), timeout=30, check=False, what="buildx rm")
    proc.run(
        (str(buildx), "create", "--name", builder, "--driver", "remote", f"unix://{socket}"),
        timeout=60,
        what="buildx create",
    )
    if not _buildx_ready(buildx, builder):
        logfile = socket.parent / "buildkitd.log"
        raise EnvironmentNotReady(
            f"buildx builder '{builder}' at unix://{socket} did not start (log: {logfile})",
            detail=_log_tail(logfile),
        )


def _log_tail(logfile: Path) -> str:
    """The end of the daemon's log, for an error; empty when it wrote none."""
    if not logfile.exists():
        return ""
    return proc.tail(logfile.read_text(encoding="utf-8", errors="replace"))


def socket_alive(path: Path, timeout: float = 2.0) -> bool:
    """True when something accepts connections on the Unix socket ``path``."""
    if not path.exists():
        return False
    sock = socketlib.socket(socketlib.AF_UNIX, socketlib.SOCK_STREAM)
    sock.settimeout(timeout)
    try:
        sock.connect(str(path))
    except OSError:
        return False
    finally:
        sock.close()
    return True


def _wait_for(socket: Path, logfile: Path, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if socket.exists():
            return
        time.sleep(0.2)
    raise EnvironmentNotReady(
        f"buildkitd did not create {socket} within {timeout:g}s",
        detail=_log_tail(logfile),
    )


def _buildx_builder(cfg: Config, out_dir: Path, base_refs: Sequence[str]) -> BuildxBuilder:
    """The buildx builder, with its BuildKit daemon running; raises when it cannot be."""
    buildx = tools.require("buildx").path
    hosts = [split_reference(r)[0] for r in base_refs]
    hosts = [h for h in [cfg.registry.host, *hosts] if is_loopback(h)]
    if cfg.registry.insecure:
        hosts.append(cfg.registry.host)
    ensure_buildkit(buildx, hosts)
    return BuildxBuilder(
        buildx,
        cache=cfg.registry.cache,
        insecure=cfg.registry.insecure or is_loopback(cfg.registry.host),
        metadata_dir=out_dir / "buildx",
    )


def choose_builder(
    choice: str, cfg: Config, *, out_dir: Path, base_refs: Sequence[str] = ()
) -> Builder:
    """``auto`` means buildx when the pinned buildx and buildkitd are usable, else docker.

    ``buildx`` asked for by name fails loudly instead of falling back.
    """
    if choice not in BUILDERS:
        raise ConfigError(f"--builder: expected one of {', '.join(BUILDERS)}, got '{choice}'")
    if choice in ("auto", "buildx"):
        try:
            return _buildx_builder(cfg, out_dir, base_refs)
        except (ToolError, EnvironmentNotReady, ProcessError):
            if choice == "buildx":
                raise
    return DockerBuilder(docker_client())


# ----------------------------------------------------------------------------- results


@dataclass
class ImageResult:
    """One image's outcome, as written to ``images.json``."""

    name: str
    repository: str
    values_key: str
    tags: list[str]
    input_hash: str
    content_tag: str
    status: str = "pending"  # built | cached | failed
    digest: str = ""
    pushed: bool = False
    duration: float = 0.0
    error: str = ""
    log: list[str] = field(default_factory=list, repr=False)

    @property
    def ref(self) -> str:
        """``repository@digest`` when the registry has it: what a deploy should use."""
        in_registry = self.pushed or self.status == "cached"
        return f"{self.repository}@{self.digest}" if in_registry else ""

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data.pop("log")
        data["ref"] = self.ref
        data["duration"] = round(self.duration, 2)
        return data


@dataclass
class ImagesResult:
    builder: str
    push: bool
    git: GitInfo
    images: list[ImageResult]
    duration: float = 0.0
    path: Path | None = None
    errors: list[CiError] = field(default_factory=list)

    @property
    def failed(self) -> list[ImageResult]:
        return [i for i in self.images if i.status == "failed"]

    def raise_first(self) -> None:
        """Raise the first image's error, saying how many others failed too."""
        if not self.errors:
            return
        first = self.errors[0]
        if len(self.errors) > 1:
            first.message += f" (and {len(self.errors) - 1} more image(s) failed)"
        raise first

    def to_json(self) -> dict[str, Any]:
        return {
            "builder": self.builder,
            "push": self.push,
            "git": asdict(self.git),
            "duration": round(self.duration, 2),
            "images": [i.to_json() for i in self.images],
        }


def write_result(result: ImagesResult, out_dir: Path) -> Path:
    """``images.json`` (atomically: a reader never sees half a file) and one log per image."""
    out_dir.mkdir(parents=True, exist_ok=True)
    logs = out_dir / "logs" / "images"
    logs.mkdir(parents=True, exist_ok=True)
    for image in result.images:
        (logs / f"{image.name}.log").write_text("\n".join(image.log) + "\n", encoding="utf-8")
    path = out_dir / "images.json"
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(result.to_json(), indent=2) + "\n", encoding="utf-8")
    tmp.replace(path)
    result.path = path
    return path


# ----------------------------------------------------------------------------- the step


class Lookup:
    """Does the registry hold a tag, and at which digest?

    Through the Docker SDK (``images.get_registry_data``: the daemon's registry access and
    ``docker login`` credentials) when a daemon is there, else the registry API. Connection
    failures are retried with backoff before they become a ``RegistryError``.
    """

    def __init__(
        self, client: Any | None, registry: Client, retries: int = 3, backoff: float = 0.5
    ) -> None:
        self.client, self.registry = client, registry
        self.retries, self.backoff = retries, backoff

    def digest(self, repository: str, tag: str) -> str | None:
        if self.client is None:
            _, path, _ = split_reference(f"{repository}:{tag}")
            return self.registry.digest(path, tag)
        return self._sdk_digest(self.client, f"{repository}:{tag}")

    def _sdk_digest(self, client: Any, ref: str) -> str | None:
        last = ""
        for attempt in range(self.retries + 1):
            if attempt:
                time.sleep(self.backoff * 2 ** (attempt - 1))
            try:
                data = client.images.get_registry_data(ref)
            except NotFound:
                return None
            except APIError as exc:
                reason = _first_line(exc)
                if "manifest unknown" in reason or "not found" in reason.lower():
                    return None
                last = reason
                continue
            return str(data.id)
        raise RegistryError(f"registry lookup of {ref} failed: {last}")


def build_images(
    cfg: Config,
    *,
    out_dir: Path,
    push: bool = False,
    only: Sequence[str] = (),
    builder: str = "auto",
    jobs: int = DEFAULT_JOBS,
    progress: Progress = _no_progress,
    env: Mapping[str, str] | None = None,
    check: bool = True,
    no_cache: bool = False,
) -> ImagesResult:
    """Build (and push) the configured images and write ``images.json``.

    Every image is attempted even when one fails (they are independent, and a finished one
    fills the cache for the next run). With ``check`` the first failure is raised at the end;
    without, the caller gets the result (to show the table) and calls ``raise_first``.
    ``no_cache`` rebuilds every image from scratch, content tag or not.
    """
    started = time.monotonic()
    if jobs < 1:
        raise ConfigError(f"--jobs: expected at least 1, got {jobs}")
    git = git_info(cfg.root, env)
    bases = base_refs(cfg, only)
    registry = registry_client(cfg, env)
    names = ", ".join(i.name for i in select_images(cfg, only))
    try:
        chosen = choose_builder(builder, cfg, out_dir=out_dir, base_refs=bases)
    except CiError as exc:
        exc.message = f"cannot build {names}: {exc.message}"
        raise
    chosen.no_cache = no_cache
    client = chosen.client if isinstance(chosen, DockerBuilder) else _optional_docker()
    planned = plan(cfg, git, only=only, resolve=base_resolver(chosen, registry))
    runner = _Runner(chosen, Lookup(client, registry), registry, push, progress)
    results = [_result(job) for job in planned]
    with ThreadPoolExecutor(max_workers=jobs, thread_name_prefix="image") as pool:
        futures = [
            pool.submit(runner.run, job, res) for job, res in zip(planned, results, strict=True)
        ]
        errors = [f.result() for f in futures]
    result = ImagesResult(chosen.name, push, git, results, time.monotonic() - started)
    result.errors = [e for e in errors if e is not None]
    write_result(result, out_dir)
    if check:
        result.raise_first()
    return result


def base_resolver(builder: Builder, registry: Client) -> Resolver:
    """Resolve base references the way the builder will: the classic builder uses the daemon's
    local image (it never pulls here), BuildKit pulls from the registry.

    One quick attempt each, no retries: an unresolvable reference (an upstream image on a
    machine without that registry) just enters the hash by name.
    """
    cache: dict[str, str | None] = {}

    def resolve(ref: str) -> str | None:
        if "@sha256:" in ref:
            return None  # already content-addressed
        if ref not in cache:
            if isinstance(builder, DockerBuilder):
                cache[ref] = _local_image_id(builder.client, ref)
            else:
                cache[ref] = _registry_digest(ref, registry)
        return cache[ref]

    return resolve


def _local_image_id(client: Any, ref: str) -> str | None:
    try:
        return str(client.images.get(ref).id)
    except DockerException:
        return None


def _registry_digest(ref: str, registry: Client) -> str | None:
    host, path, tag = split_reference(ref)
    if host == "registry-1.docker.io":
        return None  # upstream: not reachable from every machine; the name is enough
    same = host == registry.host
    client = Client(
        host,
        insecure=registry.insecure if same else False,
        username=registry.username if same else None,
        password=registry.password if same else None,
        retries=0,
        timeout=5,
    )
    try:
        return client.digest(path, tag)
    except RegistryError:
        return None


def _optional_docker() -> Any | None:
    """A Docker client for registry lookups when the daemon is up; the buildx path needs none."""
    try:
        return docker_client()
    except EnvironmentNotReady:
        return None


def _result(job: Job) -> ImageResult:
    return ImageResult(
        name=job.name,
        repository=job.repository,
        values_key=job.image.values_key,
        tags=list(job.tags),
        input_hash=job.input_hash,
        content_tag=job.content_tag,
    )


@dataclass(frozen=True)
class _Runner:
    """What every job of one run shares: the builder, the registry, the push switch."""

    builder: Builder
    lookup: Lookup
    registry: Client
    push: bool
    progress: Progress

    def run(self, job: Job, res: ImageResult) -> CiError | None:
        """Run one image to the end; return its error instead of raising (the others go on)."""
        started = time.monotonic()
        try:
            self._publish_or_build(job, res)
        except CiError as exc:
            if not exc.message.startswith(f"image {job.name}"):
                exc.message = f"image {job.name}: {exc.message}"
            res.status, res.error = "failed", exc.message
            res.duration = time.monotonic() - started
            self.progress(job.name, f"failed after {res.duration:.1f}s")
            return exc
        res.duration = time.monotonic() - started
        self.progress(job.name, f"{res.status} {res.digest} in {res.duration:.1f}s")
        return None

    def _existing(self, job: Job) -> str | None:
        """The digest behind the job's content tag, unless the caller wants a fresh build."""
        if self.builder.no_cache:
            return None
        return self.lookup.digest(job.repository, job.content_tag)

    def _publish_or_build(self, job: Job, res: ImageResult) -> None:
        try:
            existing = self._existing(job)
        except RegistryError:
            if self.push:
                raise
            existing = None  # a local build does not need the registry
        if existing:
            res.status, res.digest = "cached", existing
            self.progress(job.name, f"cached ({job.content_tag})")
            if self.push:
                _tag(job, self.registry, existing, list(job.tags), self.progress)
                res.pushed = True
            return
        self.progress(job.name, f"building with {self.builder.name}")
        digest = self.builder.build(job, push=self.push, progress=self.progress, log=res.log)
        res.status, res.digest = "built", digest
        if self.push:
            _confirm_and_tag(job, self.registry, digest, self.progress)
            res.pushed = True


def _repo_path(job: Job) -> str:
    return split_reference(f"{job.repository}:{job.tags[0]}")[1]


def _confirm_and_tag(job: Job, registry: Client, digest: str, progress: Progress) -> None:
    """The builder pushed ``tags[0]``; check the registry serves that digest, then tag."""
    path = _repo_path(job)
    served = registry.digest(path, job.tags[0])
    if served != digest:
        raise RegistryError(
            f"image {job.name}: registry serves {served or 'nothing'} for {job.tags[0]}, "
            f"expected {digest}; content tag not written"
        )
    _tag(job, registry, digest, list(job.tags[1:]), progress, fresh=True)


def _tag(
    job: Job,
    registry: Client,
    digest: str,
    tags: list[str],
    progress: Progress,
    *,
    fresh: bool = False,
) -> None:
    """Add tags to a pushed manifest, content tag last; undo this run's tags on failure.

    Undoing means pointing moved tags back where they were and, for an image pushed by this
    run (``fresh``), deleting its manifest, which removes every tag this run gave it.
    """
    path = _repo_path(job)
    previous = {t: registry.digest(path, t) for t in tags}
    todo = [t for t in tags if previous[t] != digest]
    if not todo:
        return  # the same content pushed twice: nothing to write
    manifest = registry.manifest(path, digest)
    if manifest is None:
        raise RegistryError(
            f"image {job.name}: {job.repository}@{digest} vanished from the registry"
        )
    written: list[str] = []
    progress(job.name, f"tagging {', '.join(todo)}")
    try:
        for tag in todo:
            registry.put_manifest(path, tag, manifest)
            written.append(tag)
    except RegistryError:
        _undo_tags(registry, path, {t: previous[t] for t in written})
        if fresh:
            with contextlib.suppress(RegistryError):
                registry.delete(path, digest)
        raise


def _undo_tags(registry: Client, path: str, previous: dict[str, str | None]) -> None:
    """Best effort: point moved tags back where they were (the registry may be down)."""
    for tag, old in previous.items():
        if old is None:
            continue
        try:
            registry.tag(path, old, [tag])
        except RegistryError:
            return
