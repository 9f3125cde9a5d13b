"""What a run produced, per image: status, digest and tags, written as ``images.json``.

Why a file: the deploy, the release manifest and the workflow's later jobs take the digests
from ``images.json``, so it is written atomically, with one build log per image beside it.
A run in which any image failed writes ``images.failed.json`` instead: the last good record
stays what a deploy reads, and the failed attempt is there to inspect.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ci import artifacts
from ci.errors import CiError
from ci.images.gitinfo import GitInfo
from ci.images.plan import Job


@dataclass
class ImageResult:
    """One image's outcome, as written to ``images.json``."""

    name: str
    repository: str
    values_key: str
    tags: list[str]
    input_hash: str
    content_tag: str
    status: str = "pending"  # built | cached | failed
    digest: str = ""
    pushed: bool = False
    duration: float = 0.0
    error: str = ""
    #: The cosign signature manifest's digest; ``signed`` when this run made it.
    signature: str = ""
    signed: bool = False
    #: Attestation manifests in the pushed index, and which statements they carry.
    attestations: list[str] = field(default_factory=list)
    provenance: bool = False
    #: The commit the image was built from, as its provenance says (an earlier one if reused).
    revision: str = ""
    sbom: bool = False
    log: list[str] = field(default_factory=list, repr=False)

    @property
    def ref(self) -> str:
        """``repository@digest`` when the registry has it: what a deploy should use."""
        in_registry = self.pushed or self.status == "cached"
        return f"{self.repository}@{self.digest}" if in_registry else ""

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data.pop("log")
        data["ref"] = self.ref
        data["duration"] = round(self.duration, 2)
        return data


@dataclass
class ImagesResult:
    builder: str
    push: bool
    git: GitInfo
    images: list[ImageResult]
    duration: float = 0.0
    path: Path | None = None
    errors: list[CiError] = field(default_factory=list)
    #: What ``builder`` is, in words, for the job summary.
    builder_description: str = ""
    #: What the run did not do as it should have, without failing: a fallback to the classic
    #: builder, a base image digest not resolved. The presenter shows them as warnings.
    warnings: list[str] = field(default_factory=list)

    @property
    def failed(self) -> list[ImageResult]:
        return [i for i in self.images if i.status == "failed"]

    def raise_first(self) -> None:
        """Raise the first image's error, saying how many others failed too."""
        if not self.errors:
            return
        first = self.errors[0]
        if len(self.errors) > 1:
            first.message += f" (and {len(self.errors) - 1} more image(s) failed)"
        raise first

    def to_json(self) -> dict[str, Any]:
        return {
            "builder": self.builder,
            "push": self.push,
            "git": asdict(self.git),
            "duration": round(self.duration, 2),
            "images": [i.to_json() for i in self.images],
        }


IMAGES_FILE = "images.json"
FAILED_FILE = "images.failed.json"


def write_result(result: ImagesResult, out_dir: Path) -> Path:
    """``images.json`` (atomically: a reader never sees half a file) and one log per image.

    A run with a failed image writes ``images.failed.json`` and leaves ``images.json`` alone;
    a good run removes a stale failed record.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    logs = out_dir / "logs" / "images"
    logs.mkdir(parents=True, exist_ok=True)
    for image in result.images:
        (logs / f"{image.name}.log").write_text("\n".join(image.log) + "\n", encoding="utf-8")
    failed = bool(result.errors or result.failed)
    path = artifacts.write_json(
        out_dir / (FAILED_FILE if failed else IMAGES_FILE), result.to_json()
    )
    if not failed:
        (out_dir / FAILED_FILE).unlink(missing_ok=True)
    result.path = path
    return path


def pending(job: Job) -> ImageResult:
    """A job's result before it runs: what the plan knows, filled in as the job goes."""
    return ImageResult(
        name=job.name,
        repository=job.repository,
        values_key=job.image.values_key,
        tags=list(job.tags),
        input_hash=job.input_hash,
        content_tag=job.content_tag,
    )
