"""``ci init``: the files a repository needs to use the toolkit, made from what it already has.

Why a scaffold: a team adopting the toolkit should not have to copy this repository's
configuration and edit it by hand. ``ci init`` reads the repository (its Dockerfiles, an
existing chart) and writes ``ci.yaml`` with one image per Dockerfile, a workflow that calls the
toolkit's reusable workflow, and, when there is no chart, a starter chart whose Deployment and
Service per image already pass ``ci chart check``. Files that exist are kept unless ``force``.
The templates are package data (``templates/``), so this works from an installed wheel; their
placeholders are ``@{name}``, and ``@@`` is a literal at sign.
"""

from __future__ import annotations

import os
import re
import string
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from ci import DISTRIBUTION, __version__

#: The repository whose reusable workflow the written workflow calls (``--toolkit``).
DEFAULT_TOOLKIT = os.environ.get("CI_TOOLKIT_REPO", f"{DISTRIBUTION}/{DISTRIBUTION}")
#: Folders never searched for Dockerfiles: tools, dependencies, build outputs.
SKIP_DIRS = {
    ".git",
    ".venv",
    ".tools",
    ".ci-out",
    "node_modules",
    "vendor",
    "target",
    "dist",
    "build",
    "__pycache__",
}
DEFAULT_PORT = 8080
_NAME = re.compile(r"[^a-z0-9-]+")


class _Template(string.Template):
    """``@{name}`` placeholders: Helm templates and ``${VAR}`` in ci.yaml stay as they are."""

    delimiter = "@"


@dataclass(frozen=True)
class Image:
    """One Dockerfile found: the image name, its Dockerfile and context (relative paths)."""

    name: str
    dockerfile: Path
    context: Path
    port: int = DEFAULT_PORT


@dataclass(frozen=True)
class Planned:
    """A file ``ci init`` would write (path relative to the repository)."""

    path: Path
    text: str


@dataclass
class InitResult:
    """What ``ci init`` did: each file created, overwritten (``force``) or kept."""

    root: Path
    images: list[Image]
    chart: Path
    chart_written: bool
    created: list[Path] = field(default_factory=list)
    overwritten: list[Path] = field(default_factory=list)
    kept: list[Path] = field(default_factory=list)


def dns_name(text: str) -> str:
    """``text`` as a DNS label (lowercase letters, digits, dashes), for names and namespaces."""
    name = _NAME.sub("-", text.lower()).strip("-")[:40].strip("-")
    return name or "app"


def find_dockerfiles(root: Path) -> list[Path]:
    """Every ``Dockerfile``, ``NAME.Dockerfile`` and ``Dockerfile.NAME`` below ``root``."""
    found = []
    for folder, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if d not in SKIP_DIRS)
        for name in sorted(files):
            if (
                name == "Dockerfile"
                or name.endswith(".Dockerfile")
                or name.startswith("Dockerfile.")
            ):
                found.append((Path(folder) / name).relative_to(root))
    return found


def image_for(root: Path, dockerfile: Path, project: str) -> Image:
    """The image of one Dockerfile: named after it (``web.Dockerfile``) or its folder."""
    name = dockerfile.name
    if name.endswith(".Dockerfile"):
        stem = name.removesuffix(".Dockerfile")
    elif name.startswith("Dockerfile."):
        stem = name.removeprefix("Dockerfile.")
    else:
        stem = dockerfile.parent.name or project
    context = dockerfile.parent
    return Image(dns_name(stem), dockerfile, context, exposed_port(root / dockerfile))


def exposed_port(dockerfile: Path) -> int:
    """The first port the Dockerfile's last stage EXPOSEs, else ``DEFAULT_PORT``."""
    import io

    from dockerfile_parse import DockerfileParser  # type: ignore[import-untyped]

    # A file object: given a path, the parser takes any name but "Dockerfile" for a folder.
    parser = DockerfileParser(fileobj=io.BytesIO(dockerfile.read_bytes()))
    ports: list[int] = []
    for instruction in parser.structure:
        if instruction["instruction"] == "FROM":
            ports = []
        elif instruction["instruction"] == "EXPOSE":
            ports += [int(p) for p in re.findall(r"\b(\d+)(?:/tcp)?\b", instruction["value"])]
    return ports[0] if ports else DEFAULT_PORT


def unique(images: list[Image]) -> list[Image]:
    """Images with distinct names: a second ``api`` becomes ``api-2``."""
    seen: dict[str, int] = {}
    out = []
    for image in images:
        count = seen.get(image.name, 0) + 1
        seen[image.name] = count
        name = image.name if count == 1 else f"{image.name}-{count}"
        out.append(Image(name, image.dockerfile, image.context, image.port))
    return out


def find_chart(root: Path) -> Path | None:
    """An existing chart: the first ``Chart.yaml`` below ``root`` (``charts/`` first)."""
    candidates = sorted(root.glob("charts/*/Chart.yaml")) + sorted(root.glob("**/Chart.yaml"))
    for chart in candidates:
        if not SKIP_DIRS.intersection(chart.relative_to(root).parts):
            return chart.parent.relative_to(root)
    return None


def _template(name: str) -> str:
    return resources.files("ci.scaffold").joinpath("templates", name).read_text(encoding="utf-8")


def _render(name: str, values: dict[str, str]) -> str:
    return _Template(_template(name)).substitute(values)


def _images_block(images: list[Image], starter: bool) -> str:
    if not images:
        return "  []\n"
    lines = []
    for image in images:
        lines += [
            f"  - name: {image.name}",
            f"    dockerfile: {image.dockerfile.as_posix()}",
            f"    context: {image.context.as_posix() or '.'}",
        ]
        if starter:
            lines.append(f"    values_key: services.{image.name}")
    return "\n".join(lines) + "\n"


def _checks_block(images: list[Image], starter: bool) -> str:
    if starter and images:
        first = images[0].name
        return f"    - name: {first}\n      path: /"
    return "    - name: home\n      path: /"


def _services_block(images: list[Image], project: str) -> str:
    if not images:
        return "  {}\n"
    lines = []
    for image in images:
        lines += [
            f"  {image.name}:",
            "    image:",
            f"      repository: ghcr.io/{project}/{image.name}",
            '      tag: ""',
            "      # -- sha256:... set by `ci deploy`; wins over the tag.",
            '      digest: ""',
            f"    port: {image.port}",
            "    probePath: /",
        ]
    return "\n".join(lines) + "\n"


def _paths_block(images: list[Image]) -> str:
    if not images:
        return "    []"
    return f"    - path: /\n      service: {images[0].name}"


def plan(
    root: Path,
    *,
    project: str | None = None,
    toolkit: str = DEFAULT_TOOLKIT,
    ref: str | None = None,
    branch: str = "main",
) -> tuple[list[Planned], list[Image], Path, bool]:
    """The files to write, the images found, the chart path and whether the chart is new."""
    root = root.resolve()
    name = dns_name(project or root.name)
    images = unique([image_for(root, d, name) for d in find_dockerfiles(root)])
    existing = find_chart(root)
    starter = existing is None
    chart = existing or Path("charts") / name
    staging = _values_file(root, chart, "staging", starter)
    prod = _values_file(root, chart, "prod", starter)
    keyed = starter or _has_services(root / chart / "values.yaml")
    values = {
        "project": name,
        "images": _images_block(images, keyed),
        "chart": chart.as_posix(),
        "staging_values": staging.as_posix(),
        "prod_values": prod.as_posix(),
        "checks": _checks_block(images, starter),
        "toolkit": toolkit,
        "ref": ref or default_ref(),
        "pin_note": _pin_note(ref or default_ref()),
        "branch": branch,
        "services": _services_block(images, name),
        "paths": _paths_block(images),
    }
    files = [
        Planned(Path("ci.yaml"), _render("ci.yaml", values)),
        Planned(Path(".github/workflows/ci.yml"), _render("workflows/ci.yml", values)),
    ]
    if starter:
        files += [Planned(chart / rel, _render(f"chart/{rel}", values)) for rel in _chart_files()]
    return files, images, chart, starter


def _values_file(root: Path, chart: Path, env: str, starter: bool) -> Path:
    """``values-ENV.yaml`` of a starter chart or of a chart that has one, else values.yaml."""
    own = chart / f"values-{env}.yaml"
    return own if starter or (root / own).is_file() else chart / "values.yaml"


def _has_services(values: Path) -> bool:
    """Whether a chart's values follow the starter chart's layout (``services.NAME.image``),
    as one that ``ci init`` made earlier does; then images get ``values_key: services.NAME``."""
    import yaml

    try:
        data = yaml.safe_load(values.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError):
        return False
    return isinstance(data, dict) and isinstance(data.get("services"), dict)


def _chart_files() -> list[str]:
    """The starter chart's files, relative to the chart folder."""
    top = resources.files("ci.scaffold").joinpath("templates", "chart")
    names = [f.name for f in top.iterdir() if f.is_file()]
    names += [f"templates/{f.name}" for f in top.joinpath("templates").iterdir() if f.is_file()]
    return sorted(names)


def _pin_note(ref: str) -> str:
    """A release tag is a deliberate, first-party pin: say so to zizmor, which asks for SHAs."""
    if re.fullmatch(r"[0-9a-f]{40}", ref):
        return ""
    return " # zizmor: ignore[unpinned-uses] a release tag; `ci init --ref SHA` pins a commit"


def default_ref() -> str:
    """The toolkit's major version tag (``v1``), the ref the written workflow pins."""
    major = __version__.split(".", 1)[0]
    return f"v{major}" if major.isdigit() else "main"


def write(root: Path, files: list[Planned], result: InitResult, *, force: bool) -> InitResult:
    """Write ``files`` below ``root``; an existing file is kept unless ``force``."""
    for planned in files:
        target = root / planned.path
        if target.exists() and not force:
            result.kept.append(planned.path)
            continue
        existed = target.exists()
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(planned.text, encoding="utf-8")
        (result.overwritten if existed else result.created).append(planned.path)
    return result


def init(
    root: Path,
    *,
    project: str | None = None,
    toolkit: str = DEFAULT_TOOLKIT,
    ref: str | None = None,
    branch: str = "main",
    force: bool = False,
) -> InitResult:
    """Scaffold ``root``: ci.yaml, the workflow, and a starter chart when there is none."""
    files, images, chart, starter = plan(
        root, project=project, toolkit=toolkit, ref=ref, branch=branch
    )
    result = InitResult(root=root.resolve(), images=images, chart=chart, chart_written=starter)
    return write(root, files, result, force=force)
