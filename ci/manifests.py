"""Rendered Kubernetes objects and the problems found in them: the types every check shares.

Why a module of its own: the chart step, schema validation, the policy rules and the deploy
diff all read the same ``helm template`` / ``helm get manifest`` output. One parser turns it
into ``Manifest`` objects, and the problem types live next to it, so none of those modules has
to import another to share them. ``chart_metadata`` is the one reader of ``Chart.yaml``.
It imports nothing from ``ci`` but the errors, so any module can use it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from ci.errors import ChartError, ConfigError, Location

#: Severities; only errors make a check fail.
ERROR = "error"
WARNING = "warning"


@dataclass(frozen=True)
class Manifest:
    """One rendered object and the template it came from (``schedule-app/templates/x.yaml``)."""

    source: str
    obj: dict[str, Any]
    #: The document as Helm printed it (without the ``---`` line).
    text: str = ""

    @property
    def kind(self) -> str:
        return str(self.obj.get("kind", ""))

    @property
    def name(self) -> str:
        meta = self.obj.get("metadata") or {}
        return str(meta.get("name", "")) if isinstance(meta, dict) else ""

    @property
    def ref(self) -> str:
        """``Kind/name``, how messages name the object."""
        return f"{self.kind}/{self.name}"


@dataclass(frozen=True)
class Issue:
    """A problem with one rendered object, before it is tied to an environment and a file.

    ``needle`` is text to look for in the template to find the line (a container name, a key).
    """

    manifest: Manifest
    rule: str
    message: str
    severity: str = ERROR
    needle: str | None = None


@dataclass(frozen=True)
class Finding:
    """A problem a person fixes in ``file`` (relative to the project root)."""

    rule: str
    message: str
    file: str
    line: int | None = None
    env: str | None = None
    severity: str = ERROR

    @property
    def location(self) -> Location:
        return Location(self.file, self.line)


#: libyaml's loader where PyYAML was built with it (the wheels are): several times faster on
#: a chart's rendering, which a deploy reads a few times; the pure-Python one otherwise.
_LOADER: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def load_yaml(text: str) -> Any:
    """``yaml.safe_load`` with the fastest safe loader at hand."""
    return yaml.load(text, Loader=_LOADER)  # a safe loader, C or Python


def load_yaml_all(text: str) -> list[Any]:
    """Every document of ``text``, as ``yaml.safe_load_all`` with the fastest safe loader."""
    return list(yaml.load_all(text, Loader=_LOADER))  # a safe loader


_SOURCE = re.compile(r"^# Source: (\S+)\s*$", re.MULTILINE)
_DOC_SPLIT = re.compile(r"^---[ \t]*$", re.MULTILINE)


def parse_manifests(text: str) -> tuple[Manifest, ...]:
    """Split Helm's manifest output into objects, each with the template it came from.

    Empty documents are skipped; a document that does not parse or is not a mapping is an
    error naming its template, since Helm itself could not apply it.
    """
    out: list[Manifest] = []
    for chunk in _DOC_SPLIT.split(text):
        match = _SOURCE.search(chunk)
        try:
            obj = load_yaml(chunk)
        except yaml.YAMLError as exc:
            where = match.group(1) if match else "rendered output"
            raise ChartError(f"{where}: rendered YAML does not parse: {exc}") from None
        if obj is None:
            continue
        source = match.group(1) if match else "unknown"
        if not isinstance(obj, dict):
            raise ChartError(f"{source}: rendered document is not a mapping")
        out.append(Manifest(source, obj, chunk.strip("\n") + "\n"))
    return tuple(out)


def chart_metadata(chart_dir: Path) -> dict[str, Any]:
    """The chart's ``Chart.yaml`` as a mapping (name, version, appVersion...)."""
    path = chart_dir / "Chart.yaml"
    try:
        meta = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"cannot read {path}: {exc}") from None
    if not isinstance(meta, dict):
        raise ConfigError(f"cannot read {path}: not a mapping", location=Location(str(path)))
    return meta
