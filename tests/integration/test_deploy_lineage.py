"""Whether the live release's commit is later than this run's, asked of real git in scratch
repositories: a deploy whose commit is an ancestor of the live one is superseded and skipped,
and whatever git cannot answer lets the deploy go ahead."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from ci import proc
from ci.deploy import promotion

GIT_ENV = {
    "GIT_AUTHOR_NAME": "t",
    "GIT_AUTHOR_EMAIL": "t@example.com",
    "GIT_COMMITTER_NAME": "t",
    "GIT_COMMITTER_EMAIL": "t@example.com",
    "GIT_CONFIG_GLOBAL": "/dev/null",
    "GIT_CONFIG_NOSYSTEM": "1",
}


def git(repo: Path, *args: str) -> str:
    assert shutil.which("git"), "git is needed for these tests (apt-get install git)"
    return proc.run(("git", "-C", str(repo), *args), env=GIT_ENV, timeout=30).stdout.strip()


def commit(repo: Path, name: str) -> str:
    (repo / name).write_text(name)
    git(repo, "add", name)
    git(repo, "commit", "-q", "-m", name)
    return git(repo, "rev-parse", "HEAD")


@pytest.fixture
def repo(tmp_path: Path) -> tuple[Path, str, str]:
    """Two commits on main: the first, then the second."""
    root = tmp_path / "repo"
    root.mkdir()
    git(root, "init", "-q", "-b", "main")
    first = commit(root, "a")
    return root, first, commit(root, "b")


def test_a_later_live_commit_is_later(repo: tuple[Path, str, str]) -> None:
    root, first, second = repo
    assert promotion.later(root, first, second) == promotion.Lineage(True)


def test_an_older_live_commit_is_not_later(repo: tuple[Path, str, str]) -> None:
    root, first, second = repo
    assert promotion.later(root, second, first) == promotion.Lineage(False)


def test_a_live_commit_on_another_branch_is_not_later(repo: tuple[Path, str, str]) -> None:
    """Neither descends from the other: this run's commit deploys, as without the check."""
    root, first, second = repo
    git(root, "checkout", "-q", "-b", "side", first)
    side = commit(root, "c")
    assert promotion.later(root, second, side) == promotion.Lineage(False)
    assert promotion.later(root, side, second) == promotion.Lineage(False)


def test_abbreviated_commits_are_compared_too(repo: tuple[Path, str, str]) -> None:
    root, first, second = repo
    assert promotion.later(root, first[:12], second).later is True


def test_a_commit_the_clone_does_not_have_cannot_be_told(repo: tuple[Path, str, str]) -> None:
    root, first, _second = repo
    unknown = "0123456789abcdef" * 2 + "01234567"
    lineage = promotion.later(root, first, unknown)
    assert lineage.later is None
    assert unknown in lineage.why, lineage.why
    assert "\n" not in lineage.why


def test_a_shallow_clone_cannot_tell(repo: tuple[Path, str, str], tmp_path: Path) -> None:
    """With only the tip fetched, the older commit is unknown; with both fetched shallow, git
    cannot walk from one to the other and says "not an ancestor": neither is an answer."""
    root, first, second = repo
    shallow = tmp_path / "shallow"
    git(tmp_path, "clone", "-q", "--depth", "1", f"file://{root}", str(shallow))
    assert git(shallow, "rev-parse", "--is-shallow-repository") == "true"
    assert promotion.later(shallow, first, second).later is None
    git(shallow, "fetch", "-q", "--depth", "1", "origin", first)
    lineage = promotion.later(shallow, first, second)
    assert lineage == promotion.Lineage(None, f"{shallow} is a shallow clone")
    assert promotion.later(shallow, second, second) == promotion.Lineage(False)


def test_no_repository_cannot_tell(repo: tuple[Path, str, str], tmp_path: Path) -> None:
    _root, first, second = repo
    elsewhere = tmp_path / "not-a-repo"
    elsewhere.mkdir()
    lineage = promotion.later(elsewhere, first, second)
    assert lineage.later is None
    assert "not a git repository" in lineage.why, lineage.why


def test_no_git_cannot_tell(
    repo: tuple[Path, str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root, first, second = repo
    empty = tmp_path / "bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    lineage = promotion.later(root, first, second)
    assert lineage.later is None
    assert "git: program not found" in lineage.why, lineage.why
