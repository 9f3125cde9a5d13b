"""``ci images build``: plan, build or reuse every image in a bounded pool, record the results.

Why every image is attempted when one fails: images are independent, and a finished one fills
the cache for the next run. Each job first asks the registry for its content tag: a hit is only
tagged, a miss is built, its digest confirmed, then tagged (see ``publish``).
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ci.errors import CiError, ConfigError, EnvironmentNotReady, RegistryError
from ci.images import attest
from ci.images.builders import (
    Builder,
    BuildxBuilder,
    DockerBuilder,
    choose_builder,
    docker_client,
)
from ci.images.credentials import registry_client
from ci.images.gitinfo import GitInfo, git_info
from ci.images.lookup import Lookup, base_resolver
from ci.images.plan import Job, Progress, base_refs, no_progress, plan, select_images
from ci.images.publish import add_tags, confirm_and_tag
from ci.images.results import ImageResult, ImagesResult, pending, write_result
from ci.images.scanner import ensure_generator
from ci.images.sign import Signer
from ci.registry import Client, RegistryUnreachable, split_reference

if TYPE_CHECKING:
    from ci.config import Config


DEFAULT_JOBS = 2


def build_images(
    cfg: Config,
    *,
    out_dir: Path,
    push: bool = False,
    only: Sequence[str] = (),
    builder: str | None = None,
    jobs: int = DEFAULT_JOBS,
    progress: Progress = no_progress,
    env: Mapping[str, str] | None = None,
    check: bool = True,
    no_cache: bool = False,
) -> ImagesResult:
    """Build (and push) the configured images and write ``images.json``.

    Every image is attempted even when one fails (they are independent, and a finished one
    fills the cache for the next run). With ``check`` the first failure is raised at the end;
    without, the caller gets the result (to show the table) and calls ``raise_first``.
    ``no_cache`` rebuilds every image from scratch, content tag or not. ``builder`` (the
    ``--builder`` flag) overrides the configuration's ``build.builder``.
    """
    started = time.monotonic()
    if jobs < 1:
        raise ConfigError(f"--jobs: expected at least 1, got {jobs}")
    git = git_info(cfg.root, env)
    bases = base_refs(cfg, only)
    registry = registry_client(cfg, env)
    names = ", ".join(i.name for i in select_images(cfg, only))
    choice, source = (builder, "--builder") if builder else (cfg.build.builder, "build.builder")
    if push:
        _reachable(registry, names, choice, git, out_dir)
    try:
        picked = choose_builder(
            choice, cfg, out_dir=out_dir, base_refs=bases, source=source, env=env
        )
    except CiError as exc:
        exc.message = f"cannot build {names}: {exc.message}"
        raise
    chosen = picked.builder
    chosen.no_cache = no_cache
    if isinstance(chosen, BuildxBuilder):
        _attestations(cfg, chosen, registry, push, out_dir)
    client = chosen.client if isinstance(chosen, DockerBuilder) else _optional_docker()
    # The docker builder attaches no attestations; what buildx attaches is part of the content.
    attached = attest.describe(cfg.registry) if isinstance(chosen, BuildxBuilder) else ""
    resolver = base_resolver(chosen, registry, require=cfg.build.require_base_digests)
    planned = plan(cfg, git, only=only, resolve=resolver, attestations=attached)
    signer = Signer.from_config(cfg.registry, env) if push else None
    runner = _Runner(chosen, Lookup(client, registry), registry, push, progress, signer)
    results = [pending(job) for job in planned]
    with ThreadPoolExecutor(max_workers=jobs, thread_name_prefix="image") as pool:
        futures = [
            pool.submit(runner.run, job, res) for job, res in zip(planned, results, strict=True)
        ]
        errors = [f.result() for f in futures]
    result = ImagesResult(chosen.name, push, git, results, time.monotonic() - started)
    result.builder_description = chosen.description
    result.warnings = [*picked.warnings, *resolver.warnings]
    result.errors = [e for e in errors if e is not None]
    write_result(result, out_dir)
    if check:
        result.raise_first()
    return result


def _reachable(registry: Client, names: str, builder: str, git: GitInfo, out_dir: Path) -> None:
    """A push needs the registry: unreachable is an environment not ready (exit 3), recorded
    as a failed attempt beside the last good ``images.json``, which stays as it was."""
    try:
        registry.ping()
    except RegistryUnreachable as exc:
        exc.message = f"cannot push {names}: {exc.message}"
        failed = ImagesResult(builder, True, git, [])
        failed.errors = [exc]
        write_result(failed, out_dir)
        raise


def _attestations(
    cfg: Config, builder: BuildxBuilder, registry: Client, push: bool, out_dir: Path
) -> None:
    """Provenance and SBOM options for BuildKit; the local SBOM generator built if needed."""
    generator = None
    if push and cfg.registry.sbom:
        work = out_dir / "sbom-generator"
        generator = ensure_generator(
            cfg.registry, registry, builder.command, work, builder=builder.builder
        )
    builder.attest = tuple(attest.buildx_args(cfg.registry, push=push, sbom_generator=generator))


def _optional_docker() -> Any | None:
    """A Docker client for registry lookups when the daemon is up; the buildx path needs none."""
    try:
        return docker_client()
    except EnvironmentNotReady:
        return None


@dataclass(frozen=True)
class _Runner:
    """What every job of one run shares: the builder, the registry, the push switch."""

    builder: Builder
    lookup: Lookup
    registry: Client
    push: bool
    progress: Progress
    signer: Signer | None = None

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
                add_tags(job, self.registry, existing, list(job.tags), self.progress)
                res.pushed = True
                self._supply(job, res)
            return
        self.progress(job.name, f"building with {self.builder.name}")
        digest = self.builder.build(job, push=self.push, progress=self.progress, log=res.log)
        res.status, res.digest = "built", digest
        if self.push:
            confirm_and_tag(job, self.registry, digest, self.progress)
            res.pushed = True
            self._supply(job, res)

    def _supply(self, job: Job, res: ImageResult) -> None:
        """Record the pushed index's attestations; sign its digest unless it is signed already."""
        _, repo, _ = split_reference(f"{job.repository}@{res.digest}")
        found = attest.read(self.registry, repo, res.digest, bodies=attest.PROVENANCE_TYPES)
        res.attestations = found.digests()
        provenance = found.of_type(attest.PROVENANCE_TYPES)
        res.provenance = bool(provenance)
        # An unchanged image reused by a later commit was built from an earlier one.
        built_from = {attest.provenance_revision(s.predicate) for _, s in provenance} - {""}
        res.revision = built_from.pop() if len(built_from) == 1 else ""
        res.sbom = bool(found.of_type(attest.SPDX_TYPE))
        if self.signer is None:
            return
        res.signature, res.signed = self.signer.sign(self.registry, job.repository, res.digest)
        self.progress(job.name, "signed" if res.signed else "already signed")
