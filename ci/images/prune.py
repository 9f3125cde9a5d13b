"""``ci images prune``: delete old images from the registry by the retention rule in ``ci.yaml``.

Why a rule rather than "older than N days": a release that staging or production runs (or
would roll back to) must survive however old it is, and every branch keeps its newest few
images so a revert is a deploy, not a rebuild. An image is kept when any of these holds:

* a release record or ``images.json`` names its digest (the current and previous releases);
* it is among the newest ``retention.keep_per_branch`` of its branch (the ``ci.git.branch``
  label; images without it form one group);
* it is younger than ``retention.keep_days`` days.

Everything else goes, by digest: the index (which takes all its tags with it), its platform
and attestation manifests unless a kept index shares them, and its cosign signature. Dry run
by default: the result lists what would be deleted. BuildKit's cache tags are never touched.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ci.errors import RegistryError
from ci.images.credentials import registry_client
from ci.images.plan import BRANCH_LABEL, CACHE_TAG_PREFIX
from ci.images.sign import signature_tag
from ci.registry import Client, split_reference

if TYPE_CHECKING:
    from ci.config import Config, Retention


@dataclass
class Stored:
    """One image the registry holds: its digest, tags, branch, creation time and children."""

    repo: str
    digest: str
    tags: list[str]
    branch: str
    created: dt.datetime
    children: list[str] = field(default_factory=list)
    signature: str | None = None


@dataclass
class Deletion:
    """One image deleted (or to be deleted): the digest, the tags it had, what goes with it."""

    repo: str
    digest: str
    tags: list[str]
    branch: str
    created: dt.datetime
    also: list[str] = field(default_factory=list)


@dataclass
class PruneResult:
    dry_run: bool
    deletions: list[Deletion] = field(default_factory=list)
    kept: int = 0


def prune(
    cfg: Config,
    *,
    out_dir: Path,
    dry_run: bool = True,
    records: Sequence[Path] = (),
    now: dt.datetime | None = None,
) -> PruneResult:
    """Apply the retention rule to every configured image's repository."""
    registry = registry_client(cfg)
    keep = released_digests([*default_records(out_dir), *records])
    now = now or dt.datetime.now(dt.UTC)
    result = PruneResult(dry_run)
    for image in cfg.images:
        _, repo, _ = split_reference(cfg.registry.repository(image.name) + ":x")
        stored = inventory(registry, repo)
        doomed = select(stored, keep, cfg.registry.retention, now)
        result.kept += len(stored) - len(doomed)
        result.deletions += _delete(registry, stored, doomed, dry_run)
    return result


def default_records(out_dir: Path) -> list[Path]:
    """Release records and the image record in the output folder."""
    return [*sorted(out_dir.glob("release*.json")), out_dir / "images.json"]


def released_digests(paths: Iterable[Path]) -> set[str]:
    """Every digest a release record or ``images.json`` names (missing files are skipped)."""
    found: set[str] = set()
    for path in paths:
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        images = data.get("images") if isinstance(data, dict) else None
        items = images.values() if isinstance(images, dict) else images or []
        found |= {str(i["digest"]) for i in items if isinstance(i, dict) and i.get("digest")}
    return found


def inventory(registry: Client, repo: str) -> list[Stored]:
    """The images of one repository, grouped by digest (cache and signature tags aside)."""
    by_digest: dict[str, list[str]] = {}
    tags = registry.tags(repo)
    signatures = {t for t in tags if t.startswith("sha256-") and t.endswith(".sig")}
    for tag in tags:
        if tag.startswith(CACHE_TAG_PREFIX) or tag in signatures or tag.startswith("sha256-"):
            continue
        digest = registry.digest(repo, tag)
        if digest:
            by_digest.setdefault(digest, []).append(tag)
    stored = [_describe(registry, repo, d, sorted(t)) for d, t in by_digest.items()]
    for item in stored:
        if signature_tag(item.digest) in signatures:
            item.signature = registry.digest(repo, signature_tag(item.digest))
    return stored


def _describe(registry: Client, repo: str, digest: str, tags: list[str]) -> Stored:
    manifest = registry.manifest(repo, digest)
    if manifest is None:
        raise RegistryError(f"{registry.host}/{repo}@{digest} vanished during the inventory")
    data = manifest.json()
    children = [str(m["digest"]) for m in data.get("manifests", [])] if manifest.is_index else []
    image = data
    for entry in data.get("manifests", []):
        annotations = entry.get("annotations") or {}
        if annotations.get("vnd.docker.reference.type") != "attestation-manifest":
            child = registry.manifest(repo, str(entry["digest"]))
            image = child.json() if child else {}
            break
    config = _config(registry, repo, image)
    labels = (config.get("config") or {}).get("Labels") or {}
    created = _time(labels.get("org.opencontainers.image.created") or config.get("created"))
    return Stored(repo, digest, tags, str(labels.get(BRANCH_LABEL, "")), created, children)


def _config(registry: Client, repo: str, image: dict[str, Any]) -> dict[str, Any]:
    digest = (image.get("config") or {}).get("digest")
    if not digest:
        return {}
    try:
        data: dict[str, Any] = json.loads(registry.blob(repo, str(digest)))
    except (RegistryError, ValueError):
        return {}
    return data


def _time(text: Any) -> dt.datetime:
    """An RFC 3339 time; unknown counts as the epoch (oldest, so never kept for being young)."""
    try:
        parsed = dt.datetime.fromisoformat(str(text).replace("Z", "+00:00"))
    except ValueError:
        return dt.datetime.fromtimestamp(0, dt.UTC)
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)


def select(
    stored: Sequence[Stored], keep: set[str], rule: Retention, now: dt.datetime
) -> list[Stored]:
    """The images the rule does not keep (pure: unit tests check the rule)."""
    kept = {s.digest for s in stored if s.digest in keep}
    young = now - dt.timedelta(days=rule.keep_days)
    kept |= {s.digest for s in stored if s.created > young}
    branches: dict[str, list[Stored]] = {}
    for item in stored:
        branches.setdefault(item.branch, []).append(item)
    for items in branches.values():
        newest = sorted(items, key=lambda s: s.created, reverse=True)[: rule.keep_per_branch]
        kept |= {s.digest for s in newest}
    return sorted((s for s in stored if s.digest not in kept), key=lambda s: s.created)


def _delete(
    registry: Client, stored: Sequence[Stored], doomed: Sequence[Stored], dry_run: bool
) -> list[Deletion]:
    """Delete each doomed image with its signature and the children no kept image shares."""
    doomed_digests = {d.digest for d in doomed}
    shared = {c for s in stored if s.digest not in doomed_digests for c in s.children}
    out: list[Deletion] = []
    for item in doomed:
        also = [c for c in item.children if c not in shared]
        if item.signature:
            also.append(item.signature)
        if not dry_run:
            registry.delete(item.repo, item.digest)
            for digest in also:
                registry.delete(item.repo, digest)
        out.append(Deletion(item.repo, item.digest, item.tags, item.branch, item.created, also))
    return out
