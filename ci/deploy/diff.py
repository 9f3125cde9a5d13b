"""What an upgrade would change: object-by-object diffs of the live and the rendered manifest.

Secrets' values never show: both sides are redacted, a changed value still shows as changed.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from typing import Any

import yaml

from ci import manifests

REDACTED = "(redacted)"


Key = tuple[str, str, str]


def index_manifests(text: str, namespace: str, *, skip_hooks: bool = True) -> dict[Key, Any]:
    """Objects by ``(kind, namespace, name)``; hooks are left out as ``helm get manifest`` does."""
    out: dict[Key, Any] = {}
    for doc in (m.obj for m in manifests.parse_manifests(text)):
        if "kind" not in doc:
            continue
        meta = doc.get("metadata") or {}
        if skip_hooks and "helm.sh/hook" in (meta.get("annotations") or {}):
            continue
        key = (str(doc["kind"]), str(meta.get("namespace") or namespace), str(meta.get("name")))
        out[key] = doc
    return out


def redact_pair(old: Any, new: Any) -> tuple[Any, Any]:
    """Secrets' values replaced on both sides; a changed value still shows as changed."""
    old_r, new_r = _redact(old), _redact(new)
    if not (isinstance(old, dict) and isinstance(new, dict)) or new.get("kind") != "Secret":
        return old_r, new_r
    for section in ("data", "stringData"):
        before = old.get(section) or {}
        after = new.get(section) or {}
        for k in after:
            if k in before and before[k] != after[k]:
                new_r[section][k] = REDACTED + " changed"
    return old_r, new_r


def _redact(obj: Any) -> Any:
    if not isinstance(obj, dict) or obj.get("kind") != "Secret":
        return obj
    copy = dict(obj)
    for section in ("data", "stringData"):
        if isinstance(copy.get(section), dict):
            copy[section] = dict.fromkeys(copy[section], REDACTED)
    return copy


@dataclass(frozen=True)
class ObjectChange:
    kind: str
    namespace: str
    name: str
    change: str  # "added", "removed" or "changed"
    diff: str

    @property
    def ref(self) -> str:
        return f"{self.kind}/{self.name} ({self.namespace})"


@dataclass
class DiffResult:
    changes: list[ObjectChange] = field(default_factory=list)
    unchanged: int = 0
    live_revision: int | None = None

    def summary_line(self) -> str:
        counts = {c: sum(1 for x in self.changes if x.change == c) for c in ("added", "changed")}
        removed = sum(1 for x in self.changes if x.change == "removed")
        base = f"revision {self.live_revision}" if self.live_revision else "nothing (new release)"
        return (
            f"diff against {base}: {counts['added']} added, {counts['changed']} changed, "
            f"{removed} removed, {self.unchanged} unchanged"
        )

    def text(self) -> str:
        parts = [self.summary_line()]
        for c in self.changes:
            parts.append(f"--- {c.change}: {c.ref}")
            if c.diff:
                parts.append(c.diff.rstrip("\n"))
        return "\n".join(parts) + "\n"


def _dump(obj: Any) -> list[str]:
    if obj is None:
        return []
    return yaml.safe_dump(obj, sort_keys=True, default_flow_style=False).splitlines(keepends=True)


def diff_manifests(live: str, new: str, namespace: str) -> DiffResult:
    """Object-by-object unified diffs between the live manifest and the rendered one."""
    before = index_manifests(live, namespace)
    after = index_manifests(new, namespace)
    result = DiffResult()
    for key in sorted(set(before) | set(after)):
        old, cur = redact_pair(before.get(key), after.get(key))
        if old == cur:
            result.unchanged += 1
            continue
        change = "added" if old is None else "removed" if cur is None else "changed"
        kind, ns, name = key
        text = "".join(
            difflib.unified_diff(
                _dump(old), _dump(cur), f"live/{kind}/{name}", f"new/{kind}/{name}", n=3
            )
        )
        result.changes.append(ObjectChange(kind, ns, name, change, text))
    return result
