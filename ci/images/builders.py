"""The ways an image is built and pushed, behind one ``Builder`` interface, and the choice.

``BuildxBuilder`` drives BuildKit through buildx, with registry cache import and export and a
cache ref per image: either the pinned ``buildx`` on the pinned ``buildkitd`` (``buildx``), or
``docker buildx`` with its ``docker-container`` driver (``buildx-container``, what a
GitHub-hosted runner has). ``DockerBuilder`` uses the Docker Engine API's classic builder
through the Docker SDK. Why several: BuildKit is faster, shares its cache across machines and
attaches attestations, but a Docker daemon alone must be enough to build -- so falling back to
the classic builder is allowed, but always said (a warning), never silent. Build output
becomes a few progress lines and, on failure, one error that points at the Dockerfile line.
"""

from __future__ import annotations

import functools
import json
import os
import re
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import docker
from docker.errors import APIError, DockerException
from docker.utils.build import tar
from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception_type,
    stop_after_attempt,
    wait_exponential,
)

from ci import proc, tools
from ci.errors import (
    BuildError,
    ConfigError,
    EnvironmentNotReady,
    Location,
    ProcessError,
    RegistryError,
    ToolError,
    first_line,
)
from ci.images.buildkit import (
    BUILDX_BUILDER,
    CONTAINER_BUILDER,
    DOCKER_BUILDX,
    ensure_buildkit,
    ensure_container_builder,
)
from ci.images.inputs import dockerfile_in_context, ignore_patterns
from ci.images.plan import Job, Progress
from ci.registry import is_loopback, split_reference

if TYPE_CHECKING:
    from ci.config import Config


#: ``auto`` picks; the others name one builder, which must then work.
BUILDERS = ("auto", "buildx", "buildx-container", "docker")

#: What each builder is, for the job summary and the warnings.
DESCRIPTIONS = {
    "buildx": "BuildKit on the pinned buildkitd (buildx remote driver)",
    "buildx-container": "BuildKit in a container (docker buildx, docker-container driver)",
    "docker": "the classic Docker Engine builder (no registry cache, one platform, "
    "no attestations)",
}


class Builder(Protocol):
    """Builds one job; when ``push``, pushes ``job.tags[0]`` and returns the manifest digest."""

    name: str
    #: One phrase saying what builds (``DESCRIPTIONS``), for the job summary.
    description: str
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
            f"docker daemon not reachable at {host}: {docker_reason(exc)}"
            " (start it: hack/dockerd.sh)"
        ) from None
    return client


def docker_reason(exc: BaseException) -> str:
    """The reason in a Docker SDK error, without its HTTP preamble (``500 ... ("reason")``)."""
    match = re.search(r'\("(.*)"\)\s*$', str(exc).strip())  # APIError: '... ("reason")'
    return first_line(match.group(1) if match and match.group(1) else exc)


class DockerBuilder:
    """The Docker Engine API's classic builder through the Docker SDK.

    The context tar is made here, from the same file list the input hash used, so the build
    sees exactly what was hashed (including a ``<Dockerfile>.dockerignore``).
    """

    name = "docker"
    description = DESCRIPTIONS["docker"]
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
            raise _build_error(job, docker_reason(exc), log) from None
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

        def once() -> str:
            digest = self._push_once(job, StepCounter(job.name, progress), log)
            if not digest:
                raise RegistryError("the push reported no digest")
            return digest

        def retrying(state: RetryCallState) -> None:
            failure = state.outcome.exception() if state.outcome else None
            reason = failure.message if isinstance(failure, RegistryError) else str(failure)
            progress(job.name, f"push failed ({reason}); retrying")

        try:
            return Retrying(
                stop=stop_after_attempt(self.retries),
                wait=wait_exponential(multiplier=self.backoff),
                retry=retry_if_exception_type(RegistryError),
                before_sleep=retrying,
                reraise=True,
            )(once)
        except RegistryError as exc:
            raise RegistryError(
                f"image {job.name}: push to {job.repository} failed: {exc.message}",
                detail=proc.tail("\n".join(log)),
            ) from None

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
            raise RegistryError(docker_reason(exc)) from None
        return digest


class BuildxBuilder:
    """BuildKit through buildx, with registry cache import and export.

    ``buildx`` is the pinned binary (run standalone, so no Docker CLI plugin setup is needed)
    with a ``remote`` builder pointing at a ``buildkitd`` this step starts when none runs,
    because the ``docker`` driver of Docker 20.10 cannot export cache; or it is ``docker
    buildx`` (an argv prefix) with a ``docker-container`` builder, named ``buildx-container``.
    """

    no_cache = False
    #: ``--provenance`` / ``--sbom`` options (``attest.buildx_args``); buildx's defaults if empty.
    attest: tuple[str, ...] = ()

    def __init__(
        self,
        buildx: Path | Sequence[str],
        *,
        builder: str = BUILDX_BUILDER,
        name: str = "buildx",
        cache: bool = True,
        insecure: bool = False,
        metadata_dir: Path,
        retries: int = 3,
        backoff: float = 2.0,
    ) -> None:
        self.command = (str(buildx),) if isinstance(buildx, Path) else tuple(buildx)
        self.builder, self.cache, self.insecure = builder, cache, insecure
        self.name, self.description = name, f"{DESCRIPTIONS[name]}, builder '{builder}'"
        self.metadata_dir = metadata_dir
        self.retries, self.backoff = retries, backoff

    def argv(self, job: Job, *, push: bool, metadata: Path) -> tuple[str, ...]:
        """The ``buildx build`` command line for one job (pure: unit tests check it)."""
        image = job.image
        args: list[str] = [*self.command, "build", "--builder", self.builder]
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
        args += self.attest
        args += ["--metadata-file", str(metadata), str(image.context)]
        return tuple(args)

    def build(self, job: Job, *, push: bool, progress: Progress, log: list[str]) -> str:
        self.metadata_dir.mkdir(parents=True, exist_ok=True)
        metadata = self.metadata_dir / f"{job.name}.metadata.json"

        def once() -> str:
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
                raise _RegistryFailure from None
            return self._digest(job, metadata, push)

        try:
            return Retrying(
                stop=stop_after_attempt(self.retries),
                wait=wait_exponential(multiplier=self.backoff),
                retry=retry_if_exception_type(_RegistryFailure),
                before_sleep=lambda _state: progress(job.name, "registry error; retrying"),
                reraise=True,
            )(once)
        except _RegistryFailure:
            raise RegistryError(
                f"image {job.name}: push failed: {_buildx_reason(log)}",
                detail=proc.tail("\n".join(log)),
            ) from None

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


class _RegistryFailure(Exception):
    """A buildx run that failed at the registry, not in the build: worth another try."""


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


def _container_builder(cfg: Config, out_dir: Path) -> BuildxBuilder:
    """``docker buildx`` with a ``docker-container`` builder, created or reused; raises when
    the docker CLI, its buildx plugin or the daemon is missing."""
    ensure_container_builder(DOCKER_BUILDX, CONTAINER_BUILDER)
    return BuildxBuilder(
        DOCKER_BUILDX,
        builder=CONTAINER_BUILDER,
        name="buildx-container",
        cache=cfg.registry.cache,
        insecure=cfg.registry.insecure or is_loopback(cfg.registry.host),
        metadata_dir=out_dir / "buildx",
    )


def hosted_runner(env: Mapping[str, str]) -> bool:
    """A GitHub-hosted runner: ``docker buildx`` is there, the pinned ``buildkitd`` is not."""
    return env.get("GITHUB_ACTIONS") == "true" and env.get("RUNNER_ENVIRONMENT") == "github-hosted"


def candidates(choice: str, *, hosted: bool) -> tuple[str, ...]:
    """The builders to try, in order (pure: the decision table the tests check).

    ``auto`` means BuildKit the way this machine has it (a container on a hosted runner, the
    pinned daemon elsewhere), then the classic builder; a named builder is the only one tried.
    """
    if choice != "auto":
        return (choice,)
    return ("buildx-container" if hosted else "buildx", "docker")


#: Errors meaning "this builder is not available here", as opposed to a bug or a bad config.
UNAVAILABLE = (ToolError, EnvironmentNotReady, ProcessError)


@dataclass
class Chosen:
    """The builder that will run, and the warnings its choice produced (a fallback)."""

    builder: Builder
    warnings: list[str] = field(default_factory=list)


def select(choice: str, source: str, *, hosted: bool, make: Callable[[str], Builder]) -> Chosen:
    """Try the candidates with ``make``; a fallback is a warning, a named builder's failure an
    error that names ``source`` (the flag or config key that named it).
    """
    if choice not in BUILDERS:
        raise ConfigError(f"{source}: expected one of {', '.join(BUILDERS)}, got '{choice}'")
    order = candidates(choice, hosted=hosted)
    warnings: list[str] = []
    for name in order:
        try:
            builder = make(name)
        except UNAVAILABLE as exc:
            if name == order[-1]:
                exc.message = f"{source} {choice}: {name} is not available: {exc.message}"
                raise
            warnings.append(
                f"builder {name} is not available ({first_line(exc.message, 200)}); "
                f"falling back to {order[-1]}: {DESCRIPTIONS[order[-1]]}"
            )
            continue
        return Chosen(builder, warnings)
    raise AssertionError("candidates() is never empty")  # pragma: no cover


def choose_builder(
    choice: str,
    cfg: Config,
    *,
    out_dir: Path,
    base_refs: Sequence[str] = (),
    source: str = "--builder",
    env: Mapping[str, str] | None = None,
) -> Chosen:
    """The builder ``choice`` (``--builder`` or ``build.builder``) means on this machine.

    ``auto``: on a GitHub-hosted runner ``docker buildx`` with a ``docker-container``
    builder, elsewhere the pinned buildx on the pinned ``buildkitd``; when that cannot run,
    the classic builder with a warning. A named builder fails loudly instead of falling back.
    """

    def make(name: str) -> Builder:
        if name == "buildx":
            return _buildx_builder(cfg, out_dir, base_refs)
        if name == "buildx-container":
            return _container_builder(cfg, out_dir)
        return DockerBuilder(docker_client())

    hosted = hosted_runner(os.environ if env is None else env)
    return select(choice, source, hosted=hosted, make=make)
