"""Everything that decides an image's content, hashed: Dockerfile, context, args, base images.

Why: the hash becomes the content tag ``inputs-<hash>``, and an image whose content tag the
registry already holds is not built again. So the hash must change with everything the build
can see and with nothing else: the context files ``.dockerignore`` keeps (matched by the Docker
SDK's own rules, as the build matches them), build args, target, platforms and the base images
the Dockerfile's ``FROM`` lines name -- not timestamps, ownership or the commit.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from docker.utils.build import exclude_paths
from dockerfile_parse import DockerfileParser  # type: ignore[import-untyped]
from dockerfile_parse.parser import image_from  # type: ignore[import-untyped]
from dockerfile_parse.util import WordSplitter  # type: ignore[import-untyped]

if TYPE_CHECKING:
    from ci.config import Image


#: Bump when the hash recipe changes, so old content tags stop matching.
HASH_SCHEME = "ci-images-v1"


_VAR = re.compile(
    r"\$(?:\{([A-Za-z_][A-Za-z0-9_]*)(?::?([-+])([^}]*))?\}|([A-Za-z_][A-Za-z0-9_]*))"
)


def substitute(text: str, values: Mapping[str, str]) -> str:
    """Dockerfile variable substitution: ``$X``, ``${X}``, ``${X:-default}``, ``${X:+alt}``."""

    def sub(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(4)
        value = values.get(name, "")
        if match.group(2) == "-":
            return value or match.group(3)
        if match.group(2) == "+":
            return match.group(3) if value else ""
        return value

    return _VAR.sub(sub, text)


def base_images(dockerfile: str, build_args: Mapping[str, str]) -> list[str]:
    """The images the ``FROM`` lines name after ``ARG`` substitution, without stage names.

    Part of the input hash: changing ``BUILD_IMAGE`` from one base to another must rebuild.
    ``dockerfile-parse`` reads the instructions (continuations, comments, quoting, the escape
    directive); ``substitute`` expands the image names, as that library knows no
    ``${X:-default}``.
    """
    args: dict[str, str] = {}
    stages: set[str] = set()
    refs: list[str] = []
    seen_from = False
    for instruction in DockerfileParser(fileobj=io.BytesIO(dockerfile.encode())).structure:
        kind, value = instruction["instruction"], instruction["value"]
        if kind == "ARG" and not seen_from:
            for decl in WordSplitter(value).split():
                name, eq, default = decl.partition("=")
                args[name] = build_args.get(name, default if eq else "")
        elif kind == "FROM":
            seen_from = True
            image, stage = image_from(value)
            if image is None:
                continue
            ref = substitute(image, args)
            if ref.lower() != "scratch" and ref not in stages and ref not in refs:
                refs.append(ref)
            if stage:
                stages.add(stage)
    return refs


def ignore_patterns(context: Path, dockerfile: Path) -> list[str]:
    """The ``.dockerignore`` patterns BuildKit would use for this Dockerfile.

    ``<Dockerfile>.dockerignore`` next to the Dockerfile wins over the context's own file,
    as in BuildKit; lines are parsed exactly as the Docker SDK parses them.
    """
    for candidate in (Path(f"{dockerfile}.dockerignore"), context / ".dockerignore"):
        if candidate.is_file():
            lines = candidate.read_text(encoding="utf-8").splitlines()
            return [ln.strip() for ln in lines if ln.strip() and not ln.strip().startswith("#")]
    return []


def dockerfile_in_context(context: Path, dockerfile: Path) -> str | None:
    """The Dockerfile's path relative to the context, or None when it lives elsewhere."""
    try:
        return dockerfile.resolve().relative_to(context.resolve()).as_posix()
    except ValueError:
        return None


def context_files(context: Path, dockerfile: Path) -> list[str]:
    """Every context path the build can see, through the Docker SDK's own ignore matching."""
    inside = dockerfile_in_context(context, dockerfile)
    patterns = ignore_patterns(context, dockerfile)
    return sorted(exclude_paths(str(context), patterns, dockerfile=inside or ".dockerfile"))


def _file_digest(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def input_hash(
    image: Image,
    *,
    base_refs: Sequence[str],
    files: Sequence[str] | None = None,
    attestations: str = "",
) -> str:
    """SHA-256 of everything that decides an image's content, as hex.

    File contents, names, types and the executable bit go in (``COPY`` keeps the mode);
    timestamps and ownership do not, so a fresh checkout hashes the same as an old one.
    ``attestations`` says what the pushed index carries besides the image (provenance mode,
    SBOM generator): an image pushed without an SBOM is not the one a run with SBOMs wants.
    """
    h = hashlib.sha256()

    def feed(*parts: object) -> None:
        h.update(json.dumps(parts, separators=(",", ":")).encode() + b"\n")

    feed(HASH_SCHEME)
    feed("dockerfile", hashlib.sha256(image.dockerfile.read_bytes()).hexdigest())
    feed("args", sorted(image.build_args.items()))
    feed("target", image.target or "")
    feed("platforms", list(image.platforms))
    feed("bases", list(base_refs))
    if attestations:
        feed("attestations", attestations)
    for rel in files if files is not None else context_files(image.context, image.dockerfile):
        path = image.context / rel
        if path.is_symlink():
            feed("link", rel, os.readlink(path))
        elif path.is_dir():
            feed("dir", rel)
        elif path.is_file():
            feed("file", rel, os.access(path, os.X_OK), _file_digest(path))
    return h.hexdigest()
