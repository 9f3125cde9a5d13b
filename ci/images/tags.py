"""Image tags from git facts: the commit, the branch, and a release's semver family.

Why a module of its own: the tag scheme is a promise to whoever deploys (``1.2`` follows the
newest 1.2.x release, an ``-rc`` never moves it, ``0.x`` never gets a bare ``0``), so the rules
live in one place, pure and tested.
"""

from __future__ import annotations

import re

from ci.images.gitinfo import GitInfo, release

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
    version = release(ref)
    if version is None:
        return []
    full = ref.removeprefix("v").replace("+", "_")
    if version.prerelease:
        return [full]
    tags = [full, f"{version.major}.{version.minor}"]
    if version.major:
        tags.append(str(version.major))
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
