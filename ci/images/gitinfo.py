"""What the source says about itself: commit, branch, version tag, pull request, repository URL.

Why two sources: under GitHub Actions the checkout may be shallow or detached, so the
environment is the exact answer; elsewhere ``git`` in the project folder gives it. The facts
become the image tags, the OCI labels and the ``VCS_REF``/``VERSION`` build args. One place
reads them, so the tag rules, the labels and the build args never disagree about the source.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import semver

from ci import proc
from ci.errors import CiError, ConfigError


def release(ref: str) -> semver.Version | None:
    """The SemVer version a tag names (``v1.2.3``, ``1.2.3-rc.1+build.7``), or None.

    SemVer, not PEP 440: ``1.2.3-1`` is a pre-release and ``1.2.3-beta.x`` is a version.
    """
    try:
        return semver.Version.parse(ref.removeprefix("v"))
    except ValueError:
        return None


@dataclass(frozen=True)
class GitInfo:
    """What the tags and labels say about the source: commit, branch, version tag, URL.

    ``pr`` is the pull request's number in a pull request build; ``default_branch`` is the
    repository's default branch when the environment says it (else the configuration's).
    """

    sha: str
    branch: str | None = None
    tag: str | None = None
    source: str | None = None
    pr: int | None = None
    default_branch: str | None = None

    @property
    def short_sha(self) -> str:
        return self.sha[:7]

    @property
    def version(self) -> str:
        """The release version on a version tag (``v1.2.3`` -> ``1.2.3``), else the short SHA."""
        if self.tag and release(self.tag):
            return self.tag.removeprefix("v")
        return self.short_sha


#: Set by the workflows from the repository's default branch (``ci deploy`` reads it too).
DEFAULT_BRANCH_VARIABLE = "CI_DEFAULT_BRANCH"
_PULL_REF = re.compile(r"^refs/pull/(\d+)/(?:merge|head)$")
_PULL_EVENTS = ("pull_request", "pull_request_target")


def git_info(root: Path, env: Mapping[str, str] | None = None) -> GitInfo:
    """Git facts from the Actions environment when present, else from ``git`` in ``root``."""
    env = os.environ if env is None else env
    if env.get("GITHUB_SHA"):
        return _git_info_actions(env)
    return _git_info_local(root, env)


def _git_info_local(root: Path, env: Mapping[str, str]) -> GitInfo:
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
        default_branch=env.get(DEFAULT_BRANCH_VARIABLE) or None,
    )


def _git_info_actions(env: Mapping[str, str]) -> GitInfo:
    """Under Actions the checkout may be shallow or detached; the environment is exact."""
    ref_type = env.get("GITHUB_REF_TYPE", "branch")
    name = env.get("GITHUB_HEAD_REF") or env.get("GITHUB_REF_NAME") or None
    server = env.get("GITHUB_SERVER_URL", "https://github.com")
    repo = env.get("GITHUB_REPOSITORY")
    event = _event_payload(env)
    repository = event.get("repository")
    default = repository.get("default_branch") if isinstance(repository, dict) else None
    return GitInfo(
        sha=env["GITHUB_SHA"],
        branch=name if ref_type != "tag" else None,
        tag=name if ref_type == "tag" else None,
        source=f"{server}/{repo}" if repo else None,
        pr=pull_number(env, event),
        default_branch=env.get(DEFAULT_BRANCH_VARIABLE) or (default if default else None),
    )


def pull_number(env: Mapping[str, str], event: Mapping[str, object] | None = None) -> int | None:
    """The pull request of this build: ``refs/pull/N/merge``, else the event's ``number``.

    ``pull_request_target`` runs on the base branch's ref, so only the payload knows N there.
    """
    match = _PULL_REF.match(env.get("GITHUB_REF", ""))
    if match:
        return int(match.group(1))
    if env.get("GITHUB_EVENT_NAME") not in _PULL_EVENTS:
        return None
    number = (event if event is not None else _event_payload(env)).get("number")
    return number if isinstance(number, int) and not isinstance(number, bool) else None


def _event_payload(env: Mapping[str, str]) -> dict[str, object]:
    """The webhook payload Actions writes to ``GITHUB_EVENT_PATH``; empty when unreadable.

    Best effort on purpose: the payload only adds facts (PR number, default branch) that have
    a fallback, so a missing or odd file must not stop a build.
    """
    path = env.get("GITHUB_EVENT_PATH")
    if not path:
        return {}
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


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
