"""Deploy only what changed: an upgrade whose manifests equal the live release's is skipped.

Why a drift check guards the skip: the release's manifest says what Helm applied, not what
runs now. A ``kubectl scale`` or ``kubectl edit`` since then changes a field the chart owns;
an upgrade repairs it, so the skip is taken only when every field the chart sets still has
the chart's value on the live object.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any

from ci.deploy.diff import Key

#: Fields the API server owns or rewrites: never drift.
_SERVER_OWNED = {
    ("metadata", "annotations", "deployment.kubernetes.io/revision"),
}
#: Sections whose keys the API server folds into others (a Secret's stringData into data).
_WRITE_ONLY = {"stringData"}


@dataclass
class Decision:
    """Whether to upgrade, and why (recorded in release.json and the step summary)."""

    upgrade: bool
    reason: str
    drift: list[str] = field(default_factory=list)
    #: The later commit the live release runs, when it supersedes this run's.
    superseded_by: str = ""


def _quantity(value: Any) -> Decimal | None:
    """A Kubernetes quantity (``100m``, ``1Gi``, ``2``) as a number, else None."""
    import importlib

    parse: Any = importlib.import_module("kubernetes.utils").parse_quantity
    try:
        return Decimal(parse(value))
    except (ValueError, TypeError, InvalidOperation):
        return None


def _same(want: Any, have: Any) -> bool:
    if want == have:
        return True
    if isinstance(want, bool) or isinstance(have, bool):
        return False
    if isinstance(want, (str, int, float)) and isinstance(have, (str, int, float)):
        if str(want) == str(have):
            return True
        a, b = _quantity(want), _quantity(have)
        return a is not None and a == b
    return False


def _empty(value: Any) -> bool:
    """What the API server leaves out of an object (Go's ``omitempty``): nothing, an empty
    mapping, list or string, ``false`` and ``0``."""
    if value is None or value is False or (isinstance(value, int) and value == 0):
        return True
    return isinstance(value, (dict, list, str)) and len(value) == 0


def field_drift(want: Any, have: Any, path: tuple[str, ...] = ()) -> list[str]:  # noqa: PLR0911
    """Paths where ``have`` (the live object) differs from what ``want`` (the chart) sets.

    Only fields the chart sets are compared: the API server's defaults and status are not
    drift. An empty value the chart sets and the server drops is not drift either.
    """
    if path in _SERVER_OWNED or (path and path[-1] in _WRITE_ONLY):
        return []
    if isinstance(want, dict):
        if have is None and all(_empty(v) for v in want.values()):
            return []
        if not isinstance(have, dict):
            return [] if _empty(want) and _empty(have) else [".".join(path)]
        out: list[str] = []
        for k, v in want.items():
            out += field_drift(v, have.get(k), (*path, str(k)))
        return out
    if isinstance(want, list):
        if not isinstance(have, list):
            return [] if _empty(want) and _empty(have) else [".".join(path)]
        if len(want) != len(have):
            return [".".join(path)]
        out = []
        for i, (w, h) in enumerate(zip(want, have, strict=True)):
            out += field_drift(w, h, (*path, str(i)))
        return out
    if have is None and _empty(want):
        return []
    return [] if _same(want, have) else [".".join(path)]


def drift(release: Mapping[Key, Any], live: Mapping[Key, Any]) -> list[str]:
    """``Deployment/x (ns): spec.replicas`` for every chart-owned field that differs live."""
    found = []
    for key in sorted(release):
        kind, ns, name = key
        want = release[key]
        have = live.get(key)
        where = f"{kind}/{name} ({ns})"
        if have is None:
            found.append(f"{where}: missing")
            continue
        paths = field_drift(
            {k: v for k, v in want.items() if k not in ("status",)},
            {k: v for k, v in have.items() if k not in ("status",)},
        )
        found += [f"{where}: {p}" for p in paths]
    return found


def index_live(items: Iterable[dict[str, Any]], namespace: str) -> dict[Key, Any]:
    """Live objects (``kubectl get -o json`` items) by ``(kind, namespace, name)``."""
    out: dict[Key, Any] = {}
    for obj in items:
        meta = obj.get("metadata") or {}
        key = (str(obj.get("kind")), str(meta.get("namespace") or namespace), str(meta.get("name")))
        out[key] = obj
    return out


#: The status lines' prefixes (``deployment/x 1/2 ready``) as the manifest's kinds.
_STATUS_KINDS = {
    "deployment": "Deployment",
    "statefulset": "StatefulSet",
    "pvc": "PersistentVolumeClaim",
}


def unready(status: Iterable[tuple[str, bool]], release: Mapping[Key, Any]) -> list[str]:
    """The release's own workloads and claims that are not ready, as their status lines.

    Only what the release's manifest holds counts, as for Helm's ``--wait``: a hook's claim
    (the backup volume, kept across uninstalls) stays ``Pending`` until its first consumer
    runs on a ``WaitForFirstConsumer`` class, and another release's Deployment in the same
    namespace is not this release's health. Jobs never count: hooks are deleted when done.
    """
    names = {(kind, name) for kind, _namespace, name in release}
    out = []
    for line, done in status:
        short, _, name = line.split(" ", 1)[0].partition("/")
        kind = _STATUS_KINDS.get(short)
        if not done and kind is not None and (kind, name) in names:
            out.append(line)
    return out


def decide(  # noqa: PLR0911 -- one return per reason, in the order they are checked
    *,
    force: bool,
    status: str | None,
    changes: int,
    not_ready: list[str],
    drifted: list[str],
    live_is_later: str = "",
) -> Decision:
    """Upgrade, or skip with the reason; pure, so every rule has a unit test.

    The order of the reasons is the order a person would check them in: asked to, nothing
    deployed yet, a later commit already live, something changed, something unhealthy,
    something edited by hand. ``live_is_later`` is the live release's commit when git says it
    descends from this run's: the older commit must not replace it, whatever else differs
    (its changes are in the later commit). A release that is not ``deployed`` is repaired
    first, as before: what is live then is not what the later commit deployed.
    """
    if force:
        return Decision(True, "--force")
    if status is None:
        return Decision(True, "no release yet")
    if status != "deployed":
        return Decision(True, f"the release is {status}")
    if live_is_later:
        return Decision(
            False,
            f"superseded: the release runs {live_is_later[:12]}, a later commit",
            superseded_by=live_is_later,
        )
    if changes:
        return Decision(True, f"{changes} object(s) differ from the live release")
    if not_ready:
        return Decision(True, "not healthy: " + ", ".join(not_ready[:3]))
    if drifted:
        more = f" (and {len(drifted) - 1} more)" if len(drifted) > 1 else ""
        return Decision(True, f"drift repaired: {drifted[0]}{more}", drifted)
    return Decision(False, "unchanged: manifests equal the live release, which is healthy")
