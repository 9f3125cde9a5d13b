"""The toolkit as another team gets it: a wheel built from a clean clone, installed in a fresh
virtualenv outside the repository, and run from a folder that has nothing of this checkout.

The clone takes the committed tree only (no .venv, no caches, nothing uncommitted) and gets a
release tag, so the version the wheel reports proves that it comes from git tags. Tests that
use ``installed_ci`` import the fixture from here (the adopter tests share the one install).
"""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
#: The tag the clone gets; the installed ``ci --version`` must report this version.
RELEASE_TAG = "v0.42.1"
TOOLS_BIN = Path(os.environ.get("TOOLS_DIR", ROOT / ".tools" / "bin"))


@dataclass(frozen=True)
class InstalledCi:
    """A virtualenv with only the wheel (and its dependencies) installed."""

    venv: Path
    wheel: Path

    @property
    def ci(self) -> Path:
        return self.venv / "bin" / "ci"

    @property
    def python(self) -> Path:
        return self.venv / "bin" / "python"

    def env(self, extra: Mapping[str, str] | None = None) -> dict[str, str]:
        """The virtualenv and the pinned tools first on PATH; nothing of the checkout's venv."""
        env = {k: v for k, v in os.environ.items() if k not in {"PYTHONPATH", "VIRTUAL_ENV"}}
        path = [str(self.venv / "bin"), str(TOOLS_BIN), "/usr/local/bin", "/usr/bin", "/bin"]
        env.update(PATH=os.pathsep.join(path), TOOLS_DIR=str(TOOLS_BIN), NO_COLOR="1")
        env.pop("GITHUB_ACTIONS", None)
        env.update(extra or {})
        return env

    def run(
        self,
        *args: str,
        cwd: Path,
        env: Mapping[str, str] | None = None,
        timeout: float = 600,
    ) -> subprocess.CompletedProcess[str]:
        """``ci ARGS`` in ``cwd``; the result is returned whatever the exit code."""
        return subprocess.run(
            [str(self.ci), *args],
            cwd=cwd,
            env=self.env(env),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )


def _run(argv: list[str], cwd: Path, timeout: float = 900) -> None:
    result = subprocess.run(
        argv, cwd=cwd, capture_output=True, text=True, timeout=timeout, check=False
    )
    if result.returncode != 0:
        pytest.fail(f"{' '.join(argv)} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")


def build_wheel(work: Path) -> Path:
    """A wheel of the committed tree, tagged ``RELEASE_TAG``, built with build isolation."""
    src = work / "src"
    _run(["git", "clone", "-q", "--no-hardlinks", str(ROOT), str(src)], cwd=work)
    _run(["git", "-c", "user.name=t", "-c", "user.email=t@localhost", "tag", RELEASE_TAG], src)
    dist = work / "dist"
    _run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(dist), "."], src)
    [wheel] = dist.glob("ci_delivery_steps-*.whl")
    return wheel


def install_wheel(wheel: Path, venv: Path) -> InstalledCi:
    """A new virtualenv of the system Python (not this one's) with the wheel installed."""
    base = Path(sysconfig.get_config_var("BINDIR") or "/usr/bin") / "python3"
    python = base if base.exists() else Path("/usr/bin/python3")
    _run([str(python), "-m", "venv", str(venv)], cwd=venv.parent)
    _run([str(venv / "bin" / "pip"), "install", "-q", str(wheel)], cwd=venv.parent)
    return InstalledCi(venv=venv, wheel=wheel)


@pytest.fixture(scope="session")
def installed_ci(tmp_path_factory: pytest.TempPathFactory) -> InstalledCi:
    """The wheel, installed once per session in a virtualenv outside the repository."""
    work = tmp_path_factory.mktemp("wheel")
    return install_wheel(build_wheel(work), work / "venv")
