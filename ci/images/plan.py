"""The build plan: one ``Job`` per selected image, with its repository, tags, labels and args.

Why a plan before any build: every image's tags and content hash follow from the configuration
and git alone, so each image's fate (reuse or build) is decided per image, and a mistyped
``--only`` name or a missing Dockerfile fails before any work. ``Job`` and ``Progress`` are the
vocabulary the builders, the publishing and the step share.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ci.errors import BuildError, Location
from ci.images.gitinfo import GitInfo
from ci.images.inputs import base_images, input_hash
from ci.images.tags import image_tags

if TYPE_CHECKING:
    from ci.config import Config, Image


CONTENT_TAG_PREFIX = "inputs-"
#: Hex digits of the input hash kept in the content tag (128 bits).
CONTENT_HASH_LEN = 32
CACHE_TAG_PREFIX = "buildcache-"
#: The branch an image was built from, as a label: ``ci images prune`` keeps the newest N per
#: branch, and an older image no longer carries the branch's (moving) tag.
BRANCH_LABEL = "ci.git.branch"

#: Build args every image receives (also written as OCI labels); not part of the input hash,
#: or every commit would rebuild everything.
AUTO_ARGS = ("VCS_REF", "VERSION", "BUILD_DATE")

#: Called with an image name and a short status ("building step 3/9", "pushing 2/5 layers").
Progress = Callable[[str, str], None]


def no_progress(_name: str, _status: str) -> None:
    """The default progress sink: steps stay quiet unless someone listens."""


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
    attestations: str = "",
) -> list[Job]:
    """One ``Job`` per selected image; raises ``BuildError`` for a missing Dockerfile/context.

    With ``resolve``, each base reference enters the input hash together with what it points
    to now, so a base rebuilt under the same tag rebuilds the images on top of it.
    """
    created = (now or dt.datetime.now(dt.UTC)).strftime("%Y-%m-%dT%H:%M:%SZ")
    return [
        _job(cfg, image, git, created, resolve, attestations=attestations)
        for image in select_images(cfg, only)
    ]


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


def _job(
    cfg: Config,
    image: Image,
    git: GitInfo,
    created: str,
    resolve: Resolver | None,
    *,
    attestations: str,
) -> Job:
    _check_paths(cfg, image)
    text = image.dockerfile.read_text(encoding="utf-8", errors="replace")
    bases = tuple(base_images(text, image.build_args))
    pinned = [f"{ref}={resolve(ref) or ''}" if resolve else ref for ref in bases]
    digest = input_hash(image, base_refs=pinned, attestations=attestations)
    labels = {
        "org.opencontainers.image.title": image.name,
        "org.opencontainers.image.revision": git.sha,
        "org.opencontainers.image.created": created,
        "org.opencontainers.image.version": git.version,
    }
    if git.source:
        labels["org.opencontainers.image.source"] = git.source
    if git.branch:
        labels[BRANCH_LABEL] = git.branch
    auto = dict(zip(AUTO_ARGS, (git.sha, git.version, created), strict=True))
    return Job(
        image=image,
        repository=cfg.registry.repository(image.name),
        tags=image_tags(
            git,
            CONTENT_TAG_PREFIX + digest[:CONTENT_HASH_LEN],
            cfg.tag_rules(image),
            cfg.tags.default_branch,
        ),
        input_hash=digest,
        build_args={**image.build_args, **auto},
        labels=labels,
        base_refs=bases,
    )
