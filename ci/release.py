"""What a deploy put on the cluster, as ``release.json``: the record production deploys from.

Why a file: the staging deploy and its smoke checks run in one job, the production deploy in a
later one (after approval). ``release.json`` carries exactly what staging tested -- image
digests, chart version, git SHA, smoke result -- so the production deploy can take
those digests and nothing else, and refuse anything that was not tested.

Also here: reading ``images.json`` (the digests ``ci images build --push`` recorded) and who or
what triggered a run.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ci.artifacts import read_json, write_json
from ci.errors import ConfigError, Location
from ci.manifests import chart_metadata

RELEASE_FILE = "release.json"
SMOKE_PENDING = "pending"
SMOKE_PASSED = "passed"
SMOKE_FAILED = "failed"


@dataclass(frozen=True)
class ImageRef:
    """One deployable image: where it is and its immutable digest."""

    name: str
    repository: str
    digest: str
    values_key: str
    #: The cosign signature manifest and the attestation manifests a verification accepted.
    signature: str = ""
    attestations: tuple[str, ...] = ()
    #: The commit the image was built from (its provenance's), when the build recorded it.
    revision: str = ""

    @property
    def ref(self) -> str:
        return f"{self.repository}@{self.digest}"


@dataclass
class ReleaseRecord:
    """One deploy of one environment (the schema of ``release.json``)."""

    env: str
    namespace: str
    release: str
    revision: int
    previous_revision: int | None
    git_sha: str
    images: list[ImageRef]
    chart_name: str
    chart_version: str
    triggered_by: str
    time: str
    run_id: str
    smoke: dict[str, Any] = field(default_factory=lambda: {"result": SMOKE_PENDING})
    #: What ``ci deploy`` did: ``{"action": "upgraded" | "skipped", "reason": ...}``, plus
    #: ``superseded_by`` (the later commit that is live) when it skipped as superseded.
    deploy: dict[str, Any] = field(default_factory=lambda: {"action": "upgraded", "reason": ""})

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["images"] = {i.name: asdict(i) | {"ref": i.ref} for i in self.images}
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any], source: str) -> ReleaseRecord:
        """Parse a ``release.json``; a missing or mistyped key is a one-line ``ConfigError``."""
        try:
            images = [
                ImageRef(
                    name=name,
                    repository=str(i["repository"]),
                    digest=str(i["digest"]),
                    values_key=str(i.get("values_key", name)),
                    signature=str(i.get("signature") or ""),
                    attestations=tuple(str(a) for a in i.get("attestations") or ()),
                    revision=str(i.get("revision") or ""),
                )
                for name, i in dict(data["images"]).items()
            ]
            prev = data.get("previous_revision")
            return cls(
                env=str(data["env"]),
                namespace=str(data["namespace"]),
                release=str(data["release"]),
                revision=int(data["revision"]),
                previous_revision=int(prev) if prev is not None else None,
                git_sha=str(data["git_sha"]),
                images=images,
                chart_name=str(data["chart_name"]),
                chart_version=str(data["chart_version"]),
                triggered_by=str(data.get("triggered_by", "")),
                time=str(data.get("time", "")),
                run_id=str(data.get("run_id", "")),
                smoke=dict(data.get("smoke") or {"result": SMOKE_PENDING}),
                deploy=dict(data.get("deploy") or {"action": "upgraded", "reason": ""}),
            )
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise ConfigError(
                f"not a release manifest: missing or invalid key {exc}", location=Location(source)
            ) from None

    @property
    def smoke_result(self) -> str:
        return str(self.smoke.get("result", SMOKE_PENDING))


# ----------------------------------------------------------------------------- files


def write_release(record: ReleaseRecord, out_dir: Path) -> Path:
    return write_json(out_dir / RELEASE_FILE, record.to_json())


def read_release(path: Path) -> ReleaseRecord:
    data = read_json(path, hint="write it with `ci deploy --env staging`")
    if not isinstance(data, dict):
        raise ConfigError(
            "not a release manifest: expected a JSON object", location=Location(str(path))
        )
    return ReleaseRecord.from_json(data, str(path))


def load_images(path: Path) -> tuple[list[ImageRef], str]:
    """The pushed images' digests and the git SHA they were built from, from ``images.json``.

    An image that was built but not pushed has no digest a cluster could pull: refuse it
    rather than deploy a tag.
    """
    data = read_json(path, hint="build and push the images first: `ci images build --push`")
    refs: list[ImageRef] = []
    for item in data.get("images", []) if isinstance(data, dict) else []:
        digest = str(item.get("digest") or "")
        if not item.get("ref") or not digest.startswith("sha256:"):
            raise ConfigError(
                f"{path}: image '{item.get('name')}' has no pushed digest "
                "(run `ci images build --push`)"
            )
        refs.append(
            ImageRef(
                name=str(item["name"]),
                repository=str(item["repository"]),
                digest=digest,
                values_key=str(item.get("values_key") or item["name"]),
                signature=str(item.get("signature") or ""),
                attestations=tuple(str(a) for a in item.get("attestations") or ()),
                revision=str(item.get("revision") or ""),
            )
        )
    if not refs:
        raise ConfigError(f"{path}: no images recorded (run `ci images build --push`)")
    sha = str((data.get("git") or {}).get("sha") or "")
    return refs, sha


# ----------------------------------------------------------------------------- checks


def check_for_promotion(record: ReleaseRecord, *, chart_version: str, source: str) -> None:
    """Accept a release manifest for a production deploy only if staging tested exactly it."""
    where = Location(source)
    if record.smoke_result != SMOKE_PASSED:
        raise ConfigError(
            f"release manifest from '{record.env}' revision {record.revision} has smoke result "
            f"'{record.smoke_result}' (expected 'passed'); only a tested release can be promoted",
            location=where,
        )
    later = str(record.deploy.get("superseded_by") or "")
    if later:
        raise ConfigError(
            f"release manifest for commit {record.git_sha[:12]} was never deployed to "
            f"'{record.env}': commit {later[:12]} had superseded it there; release that one",
            location=where,
        )
    if record.chart_version != chart_version:
        raise ConfigError(
            f"release manifest has chart version {record.chart_version} but the chart here is "
            f"{chart_version}; deploy from the commit staging tested",
            location=where,
        )
    if not record.images:
        raise ConfigError("release manifest lists no images", location=where)


def missing_images(images: list[ImageRef], wanted: list[str]) -> list[str]:
    """Configured image names a list of digests does not cover."""
    have = {i.name for i in images}
    return [name for name in wanted if name not in have]


# ----------------------------------------------------------------------------- who and when


def triggered_by(env: Mapping[str, str] | None = None) -> str:
    """``actor (event)`` under Actions, else the local user."""
    if env is None:
        env = {"USER": _login(), **os.environ}
    actor = env.get("GITHUB_ACTOR")
    if actor:
        event = env.get("GITHUB_EVENT_NAME")
        return f"{actor} ({event})" if event else actor
    return env.get("USER") or env.get("LOGNAME") or "unknown"


def _login() -> str:
    """The account name when ``USER`` is unset (containers, cron, some CI shells)."""
    import getpass

    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


def run_id(env: Mapping[str, str] | None = None) -> str:
    """The Actions run (id and attempt), or ``local``: which run a release belongs to."""
    env = os.environ if env is None else env
    rid = env.get("GITHUB_RUN_ID")
    if not rid:
        return "local"
    return f"{rid}.{env.get('GITHUB_RUN_ATTEMPT', '1')}"


def now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def chart_meta(chart_dir: Path) -> tuple[str, str]:
    """``(name, version)`` from Chart.yaml."""
    meta = chart_metadata(chart_dir)
    return str(meta.get("name", chart_dir.name)), str(meta.get("version", ""))
