"""Image tags from git facts through the ``tags`` rules: commit, branch, version, PR, latest.

Why a module of its own: the tag scheme is a promise to whoever deploys (``1.2`` follows the
newest 1.2.x release, an ``-rc`` never moves it, ``0.x`` never gets a bare ``0``, ``latest``
is the default branch), so the rules live in one place, pure and tested. The rules' defaults
live in the configuration schema, so the documented scheme and the applied one are one text.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from functools import cache

from ci.config import TagRule, fill_defaults, schema
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


_PLACEHOLDER = re.compile(r"\{\{(version|raw|major|minor|patch)\}\}")
#: The placeholders a pre-release fills: its other patterns would move a stable family.
_PRERELEASE_PLACEHOLDERS = {"version", "raw"}
_FALLBACK_DEFAULT_BRANCH = "main"


@cache
def default_rules() -> tuple[TagRule, ...]:
    """``tags.rules`` as the schema defaults it: today's SHA, branch and version tags."""
    data = fill_defaults({}, schema()["properties"]["tags"])
    return tuple(TagRule(**rule) for rule in data["rules"])


def image_tags(
    git: GitInfo,
    content_tag: str,
    rules: Sequence[TagRule] | None = None,
    default_branch: str | None = None,
) -> tuple[str, ...]:
    """Every tag of one image by the rules, once each, the content tag last (pushed last).

    ``default_branch`` is the configuration's; the environment's (in ``git``) wins over it.
    """
    main = git.default_branch or default_branch or _FALLBACK_DEFAULT_BRANCH
    tags: list[str] = []
    for rule in default_rules() if rules is None else rules:
        if _enabled(rule, git, main):
            tags += [t for v in _RENDER[rule.type](rule, git, main) if (t := _wrap(rule, v))]
    tags.append(content_tag)
    return tuple(dict.fromkeys(tags))


def _wrap(rule: TagRule, value: str) -> str | None:
    return sanitize_tag(f"{rule.prefix}{value}{rule.suffix}")


def _on_default_branch(git: GitInfo, main: str) -> bool:
    return git.pr is None and git.branch == main


def _enabled(rule: TagRule, git: GitInfo, main: str) -> bool:
    """The rule's ``enable`` condition: always, never, or one kind of build."""
    if isinstance(rule.enable, bool):
        return rule.enable
    return {
        "branch": git.pr is None and git.branch is not None,
        "default_branch": _on_default_branch(git, main),
        "tag": git.tag is not None,
        "pr": git.pr is not None,
    }[rule.enable]


def _sha(rule: TagRule, git: GitInfo, _main: str) -> list[str]:
    return [git.sha[: rule.length] if rule.length else git.sha]


def _branch(_rule: TagRule, git: GitInfo, _main: str) -> list[str]:
    return [git.branch] if git.branch else []


def _semver(rule: TagRule, git: GitInfo, _main: str) -> list[str]:
    """The pattern filled from the version tag at HEAD (like docker/metadata-action's)."""
    version = release(git.tag) if git.tag else None
    if git.tag is None or version is None:
        return []
    used = set(_PLACEHOLDER.findall(rule.pattern))
    if version.prerelease and not used & _PRERELEASE_PLACEHOLDERS:
        return []
    if used == {"major"} and version.major == 0 and not rule.major_zero:
        return []
    values = {
        "version": git.tag.removeprefix("v").replace("+", "_"),
        "raw": git.tag.replace("+", "_"),
        "major": str(version.major),
        "minor": str(version.minor),
        "patch": str(version.patch),
    }
    return [_PLACEHOLDER.sub(lambda m: values[m.group(1)], rule.pattern)]


def _tag(rule: TagRule, git: GitInfo, _main: str) -> list[str]:
    if git.tag is None or (release(git.tag) and not rule.include_versions):
        return []
    return [git.tag]


def _pr(_rule: TagRule, git: GitInfo, _main: str) -> list[str]:
    return [f"pr-{git.pr}"] if git.pr is not None else []


def _raw(rule: TagRule, _git: GitInfo, _main: str) -> list[str]:
    return [rule.value]


def _latest(_rule: TagRule, git: GitInfo, main: str) -> list[str]:
    """Only the default branch, and never a pre-release tagged there (an -rc is not latest)."""
    version = release(git.tag) if git.tag else None
    if not _on_default_branch(git, main) or (version is not None and version.prerelease):
        return []
    return ["latest"]


_RENDER: dict[str, Callable[[TagRule, GitInfo, str], list[str]]] = {
    "sha": _sha,
    "branch": _branch,
    "semver": _semver,
    "tag": _tag,
    "pr": _pr,
    "raw": _raw,
    "latest": _latest,
}
