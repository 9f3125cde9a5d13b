"""A release left pending or failed by an earlier run: recover it, or refuse to deploy.

Why: Helm refuses every later deploy of a release left ``pending-*`` by an interrupted run, so
an old pending release is rolled back (or uninstalled), while a young one is taken as a deploy
still in progress and refused.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any

PENDING = ("pending-install", "pending-upgrade", "pending-rollback")
GOOD = ("deployed", "superseded")
#: A pending release younger than the environment's timeout plus this may still be running.
STALE_MARGIN = 120


@dataclass(frozen=True)
class Recovery:
    """What to do about the release's current state before upgrading."""

    action: str  # "none", "rollback", "uninstall" or "refuse"
    revision: int | None = None
    message: str = ""


def parse_time(text: str) -> datetime | None:
    """Helm's timestamps (RFC 3339 with up to nanoseconds, or Go's default layout)."""
    text = text.strip()
    m = re.match(
        r"(\d{4}-\d{2}-\d{2})[T ](\d{2}:\d{2}:\d{2})(\.\d+)?\s*(Z|[+-]\d{2}:?\d{2})?", text
    )
    if not m:
        return None
    day, clock, frac, zone = m.groups()
    frac = (frac or ".0")[:7]
    zone = "+00:00" if zone in (None, "Z") else zone
    if len(zone) == 5:
        zone = zone[:3] + ":" + zone[3:]
    try:
        return datetime.fromisoformat(f"{day}T{clock}{frac}{zone}")
    except ValueError:
        return None


def decide_recovery(
    history: list[dict[str, Any]], *, now: datetime, stale_after: float, release_name: str
) -> Recovery:
    """Decide from ``helm history`` whether the release is usable, stuck, or busy.

    A pending revision older than ``stale_after`` seconds (longer than any deploy may run)
    was left by an interrupted run: roll back to the last good revision, or uninstall when
    there never was one. A younger one is another deploy still running: refuse. A release
    whose every revision failed cannot be upgraded by Helm: uninstall it first.
    """
    if not history:
        return Recovery("none")
    entries = sorted(history, key=lambda h: int(h["revision"]))
    last = entries[-1]
    status = str(last.get("status", ""))
    revision = int(last["revision"])
    good = [int(h["revision"]) for h in entries if h.get("status") in GOOD]
    if status in PENDING:
        started = parse_time(str(last.get("updated", "")))
        age = (now - started).total_seconds() if started else None
        if age is None or age < stale_after:
            seen = f"{age:.0f}s ago" if age is not None else "at an unknown time"
            return Recovery(
                "refuse",
                revision,
                f"release {release_name} revision {revision} is {status} (started {seen}): "
                f"another deploy is in progress; refusing to start a second one",
            )
        if good:
            return Recovery(
                "rollback",
                good[-1],
                f"release {release_name} revision {revision} was left {status} by an "
                f"interrupted run ({age:.0f}s ago); rolling back to revision {good[-1]}",
            )
        return Recovery(
            "uninstall",
            None,
            f"release {release_name} revision {revision} was left {status} by an interrupted "
            f"run and no revision was ever deployed; uninstalling it",
        )
    if not good and all(h.get("status") == "failed" for h in entries):
        return Recovery(
            "uninstall",
            None,
            f"release {release_name} has only failed revisions; uninstalling it so it can "
            f"be installed again",
        )
    return Recovery("none")


def previous_good(history: list[dict[str, Any]]) -> int | None:
    """The revision serving now: the newest ``deployed`` one (else newest ``superseded``)."""
    deployed = [int(h["revision"]) for h in history if h.get("status") == "deployed"]
    if deployed:
        return max(deployed)
    good = [int(h["revision"]) for h in history if h.get("status") in GOOD]
    return max(good) if good else None
