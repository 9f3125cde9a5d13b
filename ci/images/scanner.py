"""The SBOM generator image BuildKit runs, built from the pinned syft where none can be pulled.

Why: BuildKit's ``--sbom`` runs a generator image (by default docker/buildkit-syft-scanner)
that scans the built file system and writes SPDX in-toto statements (BuildKit's SBOM scanning
protocol: ``$BUILDKIT_SCAN_SOURCE`` in, ``$BUILDKIT_SCAN_DESTINATION/<name>.spdx.json`` out).
Where that image cannot be pulled, ``registry.sbom_generator_base`` names a local base image
and this module builds the generator once -- the pinned syft and a small protocol script on
that base -- and pushes it under ``registry.sbom_generator``, so a local build attaches the
same attestation a hosted runner does. The image carries a label with the hash of what it was
made from (syft's version, the Dockerfile, the script): a changed pin or script rebuilds it.

syft scans with its image catalogers (``--override-default-catalogers image``): the target is
an image's root file system, and the directory catalogers would list every Debian package
twice and take four times as long.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from ci import proc, tools
from ci.errors import BuildError
from ci.images.buildkit import BUILDX_BUILDER
from ci.registry import Client, is_loopback, pick_platform, split_reference

if TYPE_CHECKING:
    from ci.config import Registry

DOCKERFILE = """\
ARG BASE
FROM ${BASE}
ARG RECIPE
LABEL ci.sbom-generator.recipe=${RECIPE}
COPY syft /usr/local/bin/syft
COPY scan.sh /usr/local/bin/buildkit-scan
ENV SYFT_CHECK_FOR_APP_UPDATE=false
ENTRYPOINT ["/bin/sh", "/usr/local/bin/buildkit-scan"]
"""

#: BuildKit's SBOM protocol around ``syft scan``: one SPDX in-toto statement per target.
SCAN_SH = """\
set -eu
scan() {
  /usr/local/bin/syft scan "dir:$1" --quiet --source-name "$2" \
    --override-default-catalogers image -o "spdx-json=/tmp/$2.spdx"
  {
    printf '{"_type":"https://in-toto.io/Statement/v0.1",'
    printf '"predicateType":"https://spdx.dev/Document","subject":[],"predicate":'
    cat "/tmp/$2.spdx"
    printf '}'
  } > "$BUILDKIT_SCAN_DESTINATION/$2.spdx.json"
}
scan "$BUILDKIT_SCAN_SOURCE" "$(basename "$BUILDKIT_SCAN_SOURCE")"
extras="${BUILDKIT_SCAN_SOURCE_EXTRAS:-}"
if [ -n "$extras" ] && [ -d "$extras" ]; then
  for dir in "$extras"/*; do
    if [ -d "$dir" ]; then scan "$dir" "$(basename "$dir")"; fi
  done
fi
"""


def ensure_generator(
    reg: Registry,
    registry: Client,
    buildx: Sequence[str],
    work: Path,
    builder: str = BUILDX_BUILDER,
) -> str:
    """The generator reference BuildKit should run; built and pushed first when needed."""
    ref = reg.sbom_generator
    if not reg.sbom_generator_base:
        return ref
    host, path, tag = split_reference(ref)
    client = registry if host == registry.host else Client(host, retries=1)
    wanted = recipe(tools.TOOLS["syft"].version)  # the pin: no syft run on the no-change path
    if _label(client, path, tag) == wanted:
        return ref
    syft = tools.require("syft").path
    insecure = is_loopback(host) or reg.insecure
    _build(
        ref,
        reg.sbom_generator_base,
        syft,
        wanted,
        buildx=(*buildx, "build", "--builder", builder),
        work=work,
        insecure=insecure,
    )
    return ref


def recipe(syft_version: str) -> str:
    """What the generator is made from, as a short hash (its label)."""
    text = "\0".join((syft_version, DOCKERFILE, SCAN_SH))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _label(client: Client, path: str, tag: str) -> str | None:
    """The recipe label of the generator in the registry; None when it is not there."""
    manifest = client.manifest(path, tag)
    if manifest is None:
        return None
    if manifest.is_index:
        child = pick_platform(manifest.json(), "linux/amd64")
        manifest = client.manifest(path, child) if child else None
        if manifest is None:
            return None
    config = json.loads(client.blob(path, str(manifest.json()["config"]["digest"])))
    labels = (config.get("config") or {}).get("Labels") or {}
    return labels.get("ci.sbom-generator.recipe")


def _build(
    ref: str,
    base: str,
    syft: Path,
    label: str,
    *,
    buildx: Sequence[str],
    work: Path,
    insecure: bool,
) -> None:
    """Build the generator on the run's BuildKit builder (``buildx``: its ``build --builder``
    argv) and push it."""
    work.mkdir(parents=True, exist_ok=True)
    shutil.copy2(syft, work / "syft")
    (work / "Dockerfile").write_text(DOCKERFILE, encoding="utf-8")
    (work / "scan.sh").write_text(SCAN_SH, encoding="utf-8")
    flag = ",registry.insecure=true" if insecure else ""
    argv = (
        *buildx,
        "--progress",
        "plain",
        "--provenance=false",
        "--sbom=false",
        "--build-arg",
        f"BASE={base}",
        "--build-arg",
        f"RECIPE={label}",
        "--output",
        f"type=image,name={ref},push=true{flag}",
        str(work),
    )
    result = proc.run(argv, timeout=900, check=False, what="build the SBOM generator")
    if not result.ok:
        raise BuildError(
            f"SBOM generator {ref}: build failed: {proc.tail(result.stderr or result.stdout, 1)}",
            detail=proc.tail(result.stderr + result.stdout),
        )
