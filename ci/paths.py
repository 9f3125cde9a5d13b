"""Where the toolkit keeps its caches and run-time state, after the XDG base directory rules.

Why this module: built tools, base-image root file systems and BuildKit's socket are shared by
every project on a machine that uses the toolkit, so their folders are named after the toolkit
(``APP``), not after one project, and follow ``XDG_CACHE_HOME``/``XDG_RUNTIME_DIR`` like other
tools do. ``CI_CACHE`` and ``CI_RUN_DIR`` override them. Folders made under the toolkit's former
name (``schedule-ci``) are kept in use while the new one does not exist, so an existing cache is
not rebuilt (``hack/dirs.sh`` applies the same rules to the shell scripts).
"""

from __future__ import annotations

import os
from pathlib import Path

#: The toolkit's name in folder names: the distribution name.
APP = "ci-delivery-steps"
#: The name of those folders before the toolkit had its own name.
LEGACY_APP = "schedule-ci"
#: Where root's run-time folders live (the FHS ``/run``).
RUN_ROOT = Path("/run")


def prefer_legacy(new: Path, legacy: Path) -> Path:
    """``new``, unless only ``legacy`` exists (a cache made before the rename)."""
    if not new.exists() and legacy.is_dir():
        return legacy
    return new


def cache_home() -> Path:
    """Caches shared by every clone: ``$CI_CACHE``, else ``$XDG_CACHE_HOME/APP`` (~/.cache/APP)."""
    env = os.environ.get("CI_CACHE")
    if env:
        return Path(env)
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg) if xdg and Path(xdg).is_absolute() else Path.home() / ".cache"
    return prefer_legacy(base / APP, Path.home() / ".cache" / LEGACY_APP)


def run_dir() -> Path:
    """Sockets and pid files of local daemons: ``$CI_RUN_DIR``, else /run/APP as root, else
    ``$XDG_RUNTIME_DIR/APP`` (or ``~/.local/state/APP`` without a runtime dir)."""
    env = os.environ.get("CI_RUN_DIR")
    if env:
        return Path(env)
    if os.geteuid() == 0:
        return prefer_legacy(RUN_ROOT / APP, RUN_ROOT / LEGACY_APP)
    xdg = os.environ.get("XDG_RUNTIME_DIR")
    if xdg and Path(xdg).is_absolute():
        return Path(xdg) / APP
    return Path.home() / ".local" / "state" / APP
