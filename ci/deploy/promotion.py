"""Promotion checks: a release manifest is deployed only from its environment, commit and branch.

Why: smoke results and digests in ``release.json`` say what was tested, not where. An
environment with ``promote_from`` (prod: ``staging``) takes a manifest only when it was written
by that environment, for the commit checked out here (so the chart and values that render are
the ones staging rendered), and that commit is on the default branch (so a branch or fork run
that reached staging cannot be promoted). All three are checked from files and git alone,
before anything talks to the cluster; a failure is one line saying what was expected and found.

The same ancestry question guards every deploy against going backwards (``later``): a deploy
whose commit is an ancestor of the live release's is superseded, and skipped.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from ci import proc
from ci.config import Environment
from ci.errors import ConfigError, Location, ProcessError, ToolError
from ci.release import ReleaseRecord

#: Set by the workflows from the repository's default branch; wins over ``default_branch``.
BRANCH_VARIABLE = "CI_DEFAULT_BRANCH"


def default_branch(env: Environment, environ: Mapping[str, str] | None = None) -> str:
    """The branch a promoted commit must be on: ``CI_DEFAULT_BRANCH``, else the configured one."""
    environ = os.environ if environ is None else environ
    return environ.get(BRANCH_VARIABLE) or env.default_branch


def check(
    env: Environment,
    record: ReleaseRecord,
    *,
    repo: Path,
    source: str,
    environ: Mapping[str, str] | None = None,
) -> None:
    """Refuse (exit 2) a manifest from another environment, commit or branch than expected.

    Applies only when ``env.promote_from`` is set; the cheapest check (no git) comes first.
    """
    if env.promote_from is None:
        return
    where = Location(source)
    if record.env != env.promote_from:
        raise ConfigError(
            f"release manifest is from environment '{record.env}', expected "
            f"'{env.promote_from}' (environments.{env.name}.promote_from)",
            location=where,
        )
    found = _git(repo, "rev-parse", "--verify", "HEAD", check=False)
    if not found.ok:
        raise ConfigError(
            f"release manifest is for commit {record.git_sha}, expected a git checkout of it "
            f"in {repo}; git says: {proc.tail(found.stderr, 1) or 'nothing'}",
            location=where,
        )
    head = found.stdout.strip()
    if record.git_sha != head:
        raise ConfigError(
            f"release manifest is for commit {record.git_sha or '(none)'}, expected the "
            f"checked-out commit {head}; check out the commit staging tested",
            location=where,
        )
    branch = default_branch(env, environ)
    _check_on_branch(repo, head, branch, where)


def _check_on_branch(repo: Path, sha: str, branch: str, where: Location) -> None:
    """``git merge-base --is-ancestor``: 0 is on the branch, 1 is not, anything else is no ref."""
    remote = f"origin/{branch}"
    found = _git(repo, "merge-base", "--is-ancestor", sha, remote, check=False)
    if found.returncode == 1:
        raise ConfigError(
            f"commit {sha} is not on the default branch: expected an ancestor of {remote}",
            location=where,
        )
    if not found.ok:
        raise ConfigError(
            f"cannot tell whether commit {sha} is on the default branch: expected {remote} in "
            f"{repo} (fetch it, e.g. a checkout with fetch-depth: 0); git says: "
            f"{proc.tail(found.stderr, 1) or 'nothing'}",
            location=where,
        )


#: A commit as git names it in full or abbreviated; anything else is not asked about.
_SHA = re.compile(r"^[0-9a-f]{7,64}$")


@dataclass(frozen=True)
class Lineage:
    """Whether the live commit descends from this run's: ``True``, ``False`` or ``None``
    (git cannot tell), and in the last case why, for one progress line."""

    later: bool | None
    why: str = ""


def later(repo: Path, this: str, live: str) -> Lineage:
    """Is ``live`` a later commit than ``this`` (``git merge-base --is-ancestor THIS LIVE``)?

    The same commit is not later (a re-run deploys, or skips as unchanged). Exit 1 of a
    shallow clone is "cannot tell": the history that links them may be cut off. A missing
    commit, no repository or no git is "cannot tell" too, never an error: the deploy then
    goes ahead as it would without the check.
    """
    if not this or not live or this == live:
        return Lineage(False)
    if not (_SHA.match(this) and _SHA.match(live)):
        return Lineage(None, f"not a commit SHA: {this if not _SHA.match(this) else live}")
    try:
        found = _git(repo, "merge-base", "--is-ancestor", this, live, check=False)
        if found.returncode == 1 and _shallow(repo):
            return Lineage(None, f"{repo} is a shallow clone")
    except (ToolError, ProcessError) as exc:
        return Lineage(None, exc.message)
    if found.returncode in (0, 1):
        return Lineage(found.returncode == 0)
    return Lineage(None, proc.tail(found.stderr, 1) or f"git exited {found.returncode}")


def _shallow(repo: Path) -> bool:
    found = _git(repo, "rev-parse", "--is-shallow-repository", check=False)
    return found.stdout.strip() != "false"


def _git(repo: Path, *args: str, check: bool) -> proc.Result:
    return proc.run(("git", "-C", str(repo), *args), timeout=30, check=check, what="git")
