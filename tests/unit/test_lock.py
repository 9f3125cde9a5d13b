"""requirements/ci.lock, which the root action installs with ``pip install --require-hashes``,
against pyproject.toml: every dependency and build requirement is pinned (at a version the
specifier allows), with hashes, and nothing else is pinned without a reason (``# via``).

A stale lock would make the action's install fail (a dependency not pinned) or install what
pyproject.toml no longer allows; ``make lock`` regenerates it.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Callable
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[2]
LOCK = ROOT / "requirements" / "ci.lock"
PIN = re.compile(r"^(?P<name>[A-Za-z0-9][A-Za-z0-9._-]*)==(?P<version>\S+)\s*\\?$")


def pins(text: str) -> dict[str, tuple[Version, list[str], list[str]]]:
    """``name -> (version, hashes, via)`` of each ``name==version`` entry of a pip-compile file."""
    found: dict[str, tuple[Version, list[str], list[str]]] = {}
    current: str | None = None
    for raw in text.splitlines():
        line = raw.strip()
        match = PIN.match(line)
        if match:
            current = canonicalize_name(match["name"])
            assert current not in found, f"{current} pinned twice"
            found[current] = (Version(match["version"]), [], [])
        elif current and line.startswith("--hash="):
            found[current][1].append(line.removeprefix("--hash=").rstrip(" \\"))
        elif current and line.startswith("#"):
            found[current][2].append(line.lstrip("# ").removeprefix("via").strip())
        elif line and not line.startswith("#"):
            raise AssertionError(f"{LOCK.name}: unexpected line {line!r}")
    return found


def wanted() -> list[Requirement]:
    data = tomllib.loads((ROOT / "pyproject.toml").read_text())
    specs = [*data["project"]["dependencies"], *data["build-system"]["requires"]]
    return [Requirement(s) for s in specs]


def lock_problems(text: str) -> list[str]:
    locked = pins(text)
    problems = []
    for req in wanted():
        name = canonicalize_name(req.name)
        if name not in locked:
            problems.append(f"{req} is not pinned")
        elif not req.specifier.contains(locked[name][0], prereleases=True):
            problems.append(f"{req}: pinned {locked[name][0]} is outside the specifier")
    for pinned, (_, hashes, via) in locked.items():
        if not hashes or not all(h.startswith("sha256:") for h in hashes):
            problems.append(f"{pinned} has no sha256 hash")
        if not via:
            problems.append(f"{pinned} is pinned without a `# via` (not from pyproject.toml)")
    return problems


def test_the_lock_pins_every_dependency_of_pyproject_with_hashes() -> None:
    text = LOCK.read_text()
    assert lock_problems(text) == []
    assert "--find-links" not in text, "a local wheel folder leaked into the lock"
    assert "--index-url" not in text


@pytest.mark.parametrize(
    ("edit", "problem"),
    [
        (lambda t: re.sub(r"(?m)^click==.*\n(    .*\n)*", "", t), "click>=8.1 is not pinned"),
        (lambda t: re.sub(r"(?m)^click==\S+", "click==7.0", t), "pinned 7.0 is outside"),
        (
            lambda t: re.sub(r"(?m)^(semver==\S+) \\\n(    --hash=.*\n)+", r"\1\n", t),
            "semver has no",
        ),
    ],
    ids=["dependency missing", "version outside", "no hashes"],
)
def test_the_check_finds_a_stale_lock(edit: Callable[[str], str], problem: str) -> None:
    text = LOCK.read_text()
    broken = edit(text)
    assert broken != text, "the edit did not change the lock"
    assert any(problem in p for p in lock_problems(broken)), lock_problems(broken)
