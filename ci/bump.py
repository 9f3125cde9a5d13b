"""``ci chart bump``: set the chart's version, appVersion and an image tag, changing nothing else.

Why splice text rather than dump YAML: a release bump should be a one-line diff per value, so
reviewers see exactly what changed. ruamel.yaml's round-trip parser says where each scalar sits
(line and column); the new value is written over the old one in the original text, and only a
key that does not exist yet goes through ruamel's dump.
"""

from __future__ import annotations

import io
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from ci.errors import ConfigError, Location

_SEMVER = re.compile(
    r"^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)(-[0-9A-Za-z.-]+)?(\+[0-9A-Za-z.-]+)?$"
)
_TAG = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")


@dataclass(frozen=True)
class Change:
    """One edited value: file, key path, old and new value."""

    file: str
    key: str
    old: str | None
    new: str


def bump(
    chart_dir: Path,
    *,
    version: str,
    app_version: str | None = None,
    values_file: Path | None = None,
    image: str | None = None,
    tag: str | None = None,
) -> list[Change]:
    """Set Chart.yaml ``version``/``appVersion`` and an image tag, changing nothing else.

    ruamel.yaml's round-trip mode keeps comments, order and quoting; only the edited scalars
    change, which ``tests/integration/test_chart_bump.py`` checks line by line.
    """
    if not _SEMVER.match(version):
        raise ConfigError(f"--version {version!r}: expected a semantic version such as 1.2.3")
    if (image is None) != (tag is None) or (image is not None and values_file is None):
        raise ConfigError("--image and --tag go together, with --values naming the file")
    if tag is not None and not _TAG.match(tag):
        raise ConfigError(f"--tag {tag!r}: not a valid image tag")
    chart_yaml = chart_dir / "Chart.yaml"
    edits: list[tuple[Path, tuple[str, ...], str, bool, bool]] = [
        (chart_yaml, ("version",), version, False, False)
    ]
    if app_version is not None:
        edits.append((chart_yaml, ("appVersion",), app_version, True, False))
    if values_file is not None and image is not None and tag is not None:
        known = _has_image(chart_dir / "values.yaml", image)
        edits.append((values_file, (image, "image", "tag"), tag, True, known))
    # Every edit is worked out before anything is written: a failing one leaves no file changed.
    texts: dict[Path, str] = {}
    changes = []
    for path, keys, value, quote, create in edits:
        if path not in texts:
            texts[path] = _read(path)
        texts[path], change = _edit(path, texts[path], keys, value, quote=quote, create=create)
        changes.append(change)
    for path, text in texts.items():
        path.write_text(text, encoding="utf-8")
    return changes


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(
            f"cannot read {path}: {exc.strerror}", location=Location(str(path))
        ) from None


def _has_image(values: Path, image: str) -> bool:
    """True when the chart's values.yaml has ``<image>.image`` (so a tag may be added)."""
    try:
        data = yaml.safe_load(values.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError):
        return False
    block = data.get(image) if isinstance(data, dict) else None
    return isinstance(block, dict) and isinstance(block.get("image"), dict)


def _roundtrip() -> Any:
    from ruamel.yaml import YAML

    rt = YAML(typ="rt")
    rt.preserve_quotes = True
    rt.width = 4096
    rt.indent(mapping=2, sequence=4, offset=2)
    return rt


def _edit(
    path: Path,
    text: str,
    keys: tuple[str, ...],
    value: str,
    *,
    quote: bool = False,
    create: bool = False,
) -> tuple[str, Change]:
    """``text`` with one scalar set, everything else byte for byte, and what changed.

    ruamel.yaml finds the value's line and column; the new scalar is spliced into the
    original text there, so not even the indentation of untouched lines can change. Only a
    key that does not exist yet makes the text go through ruamel's round-trip dump.
    """
    rt = _roundtrip()
    data = rt.load(text)
    node = data
    for key in keys[:-1]:
        if not isinstance(node, dict) or (key not in node and not create):
            raise ConfigError(f"{'.'.join(keys)}: key not found", location=Location(str(path)))
        if key not in node:
            node[key] = {}
        node = node[key]
    last = keys[-1]
    if not isinstance(node, dict):
        raise ConfigError(f"{'.'.join(keys)}: not a mapping", location=Location(str(path)))
    old = node.get(last)
    change = Change(str(path), ".".join(keys), None if old is None else str(old), value)
    where = _value_position(node, last)
    if where is not None:
        return _splice(text, *where, value, quote), change
    if not create and last not in node:
        raise ConfigError(f"{'.'.join(keys)}: key not found", location=Location(str(path)))
    from ruamel.yaml.scalarstring import DoubleQuotedScalarString

    node[last] = DoubleQuotedScalarString(value) if quote else value
    return _dump(rt, data, text), change


def _value_position(node: Any, key: str) -> tuple[int, int] | None:
    """0-based (line, column) of a scalar value in the original text, if ruamel kept it."""
    if key not in node or isinstance(node[key], dict | list):
        return None
    try:
        line, col = node.lc.value(key)
    except (AttributeError, KeyError, TypeError):
        return None
    return int(line), int(col)


def _splice(text: str, line: int, col: int, value: str, quote: bool) -> str:
    """Replace the scalar starting at (line, col) with ``value`` in the same quoting style."""
    lines = text.splitlines(keepends=True)
    current = lines[line]
    rest = current[col:]
    if rest[:1] in ("'", '"'):
        mark = rest[0]
        end = rest.index(mark, 1) + 1
        new = f"{mark}{value}{mark}"
    else:
        comment = re.search(r"\s+#", rest)
        stop = comment.start() if comment else len(rest.rstrip("\r\n"))
        end = len(rest[:stop].rstrip())
        new = f'"{value}"' if quote else value
    lines[line] = current[:col] + new + rest[end:]
    return "".join(lines)


def _dump(rt: Any, data: Any, original: str) -> str:
    """``data`` as YAML, keeping the original's leading document marker if it had one."""
    buffer = io.StringIO()
    if original.startswith("---"):
        rt.explicit_start = True
    rt.dump(data, buffer)
    return buffer.getvalue()
