"""Provenance and SBOM attestations: the buildx options that attach them, and reading them back.

Why BuildKit's own: ``--provenance`` and ``--sbom`` make BuildKit put in-toto statements
(SLSA provenance naming the build inputs, an SPDX SBOM of the image's file system) into the
pushed image index as attestation manifests, exactly what docker/build-push-action produces on
a hosted runner, so a verifier reads the same format locally and in CI. Reading them back goes
through the registry API: the index lists one attestation manifest per platform image
(``vnd.docker.reference.type: attestation-manifest``), whose layers are the statements.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ci.errors import RegistryError
from ci.registry import Client

if TYPE_CHECKING:
    from ci.config import Registry

PROVENANCE_TYPES = ("https://slsa.dev/provenance/v0.2", "https://slsa.dev/provenance/v1")
SPDX_TYPE = "https://spdx.dev/Document"
_PREDICATE_ANNOTATION = "in-toto.io/predicate-type"
_REF_TYPE = "vnd.docker.reference.type"
_REF_DIGEST = "vnd.docker.reference.digest"


def buildx_args(reg: Registry, *, push: bool, sbom_generator: str | None) -> list[str]:
    """``--provenance`` and ``--sbom`` options for a pushed build (none for a local one)."""
    if not push:
        return ["--provenance=false", "--sbom=false"]
    args = [
        "--provenance=false" if reg.provenance == "none" else f"--provenance=mode={reg.provenance}"
    ]
    if reg.sbom and sbom_generator:
        args.append(f"--sbom=generator={sbom_generator}")
    else:
        args.append("--sbom=false")
    return args


def describe(reg: Registry) -> str:
    """What a pushed index carries besides the image, for the content hash."""
    sbom = reg.sbom_generator if reg.sbom else "none"
    return f"provenance={reg.provenance};sbom={sbom}"


@dataclass
class Statement:
    """One in-toto statement of an attestation manifest, with the blob digest it came from."""

    predicate_type: str
    digest: str
    subjects: list[str]
    predicate: dict[str, Any] = field(repr=False)


@dataclass
class Attestations:
    """What an image index carries: per platform image, its attestation manifest and statements."""

    #: platform manifest digest -> attestation manifest digest
    manifests: dict[str, str] = field(default_factory=dict)
    statements: dict[str, list[Statement]] = field(default_factory=dict)

    def of_type(self, types: tuple[str, ...] | str) -> list[tuple[str, Statement]]:
        """(platform digest, statement) for every statement of one of ``types``."""
        wanted = (types,) if isinstance(types, str) else types
        return [
            (image, s)
            for image, found in self.statements.items()
            for s in found
            if s.predicate_type in wanted
        ]

    def digests(self) -> list[str]:
        """The attestation manifests' digests, in a stable order (recorded in images.json)."""
        return sorted(self.manifests.values())


def read(
    registry: Client, repo: str, digest: str, *, bodies: tuple[str, ...] | None = None
) -> Attestations:
    """The attestations inside the index ``repo@digest``; empty when it is a bare manifest.

    ``bodies`` names the predicate types whose statements are fetched (None: all of them;
    an SBOM can be megabytes, and the layer annotation already says what a statement is).
    """
    index = registry.manifest(repo, digest)
    if index is None:
        raise RegistryError(f"{registry.host}/{repo}@{digest} is not in the registry")
    found = Attestations()
    if not index.is_index:
        return found
    for entry in index.json().get("manifests", []):
        annotations = entry.get("annotations") or {}
        if annotations.get(_REF_TYPE) != "attestation-manifest":
            continue
        image = str(annotations.get(_REF_DIGEST, ""))
        found.manifests[image] = str(entry["digest"])
        found.statements[image] = _statements(registry, repo, str(entry["digest"]), bodies)
    return found


def _statements(
    registry: Client, repo: str, digest: str, bodies: tuple[str, ...] | None
) -> list[Statement]:
    manifest = registry.manifest(repo, digest)
    if manifest is None:
        raise RegistryError(f"attestation manifest {repo}@{digest} is missing")
    out: list[Statement] = []
    for layer in manifest.json().get("layers", []):
        kind = str((layer.get("annotations") or {}).get(_PREDICATE_ANNOTATION, ""))
        data: dict[str, Any] = {}
        if bodies is None or kind in bodies:
            data = json.loads(registry.blob(repo, str(layer["digest"])))
        subjects = [
            f"sha256:{s.get('digest', {}).get('sha256', '')}" for s in data.get("subject", [])
        ]
        out.append(
            Statement(
                predicate_type=str(data.get("predicateType") or kind),
                digest=str(layer["digest"]),
                subjects=subjects,
                predicate=dict(data.get("predicate") or {}),
            )
        )
    return out


def provenance_revision(predicate: dict[str, Any]) -> str:
    """The git commit a SLSA provenance names: BuildKit's VCS metadata or the VCS_REF build arg."""
    meta = (predicate.get("metadata") or {}).get("https://mobyproject.org/buildkit@v1#metadata")
    vcs = (meta or {}).get("vcs") or {}
    if vcs.get("revision"):
        return str(vcs["revision"])
    build = predicate.get("buildDefinition") or {}  # SLSA v1
    params = build.get("externalParameters") or (predicate.get("invocation") or {}).get(
        "parameters", {}
    )
    args = params.get("args") or (params.get("request") or {}).get("args") or {}
    return str(args.get("build-arg:VCS_REF", ""))
