"""Read ``ci.yaml`` with the line of every key, its ``extends:`` chain and ``${VAR}`` references.

Why a custom reader: a schema error is only useful if it says where. PyYAML's node tree keeps
line numbers, so the file is composed into nodes once and turned into plain data while
recording the line of every key path; each schema error then becomes one line
``FILE:LINE: key.path: what was expected``. Duplicate keys, which YAML parsers silently
collapse, are rejected the same way.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import yaml

from ci.errors import ConfigError, Location, format_path

KeyPath = tuple[str | int, ...]
#: Where each key path was written: file and line (several files when one extends another).
Positions = dict[KeyPath, Location]


def read_layers(path: Path, _seen: tuple[Path, ...] = ()) -> tuple[Any, Positions]:
    """Read a file and, through ``extends:``, the files it builds on, merged into one.

    Why overlays: the local pipeline deploys a staging-like environment with a few changes
    (local images, local cluster, an extra values file); an overlay that names only those keeps
    one source for everything else. Mappings merge key by key; any other value, lists included,
    replaces the one it overrides. Each key keeps the file and line it came from.
    """
    data, lines = read_yaml_with_lines(path)
    positions: Positions = {k: Location(str(path), n) for k, n in lines.items()}
    if not isinstance(data, dict) or "extends" not in data:
        return data, positions
    parent = data.pop("extends")
    where = positions.pop(("extends",))
    if not isinstance(parent, str) or not parent:
        raise ConfigError(
            "extends: expected the path of another configuration file", location=where
        )
    parent_path = path.parent / parent
    if parent_path.resolve() in _seen or parent_path.resolve() == path.resolve():
        raise ConfigError(f"extends: '{parent}' leads back to this file", location=where)
    if not parent_path.is_file():
        raise ConfigError(f"extends: file '{parent}' does not exist", location=where)
    base, base_positions = read_layers(parent_path, (*_seen, path.resolve()))
    if not isinstance(base, dict):
        raise ConfigError(f"extends: '{parent}' is not a mapping", location=where)
    merged = _merge_layers(base, data, base_positions, positions)
    return merged, {**base_positions, **positions}


def _merge_layers(
    base: dict[str, Any], over: dict[str, Any], base_pos: Positions, pos: Positions
) -> dict[str, Any]:
    """Overlay ``over`` on ``base``; forget the base's positions of every replaced value.

    ``pos`` (the overlay's positions) loses the entries of keys set to null, which are removed.
    """

    def forget(sub: KeyPath, value: Any) -> None:
        for stale in [k for k in base_pos if k[: len(sub)] == sub]:
            del base_pos[stale]
        if value is None:
            for gone in [k for k in pos if k[: len(sub)] == sub]:
                del pos[gone]

    return deep_merge(base, over, on_replace=forget)


def deep_merge(
    base: Mapping[str, Any],
    over: Mapping[str, Any],
    *,
    on_replace: Callable[[KeyPath, Any], None] | None = None,
    _here: KeyPath = (),
) -> dict[str, Any]:
    """Overlay ``over`` on ``base`` the way Helm merges values files; neither is changed.

    Mappings merge key by key; any other value, lists included, replaces the one below it;
    ``key: null`` removes the key (Helm's rule for values, and the rule for ``extends:``).
    ``on_replace`` hears the key path and new value of every key replaced or removed.
    """
    out = dict(base)
    for key, value in over.items():
        sub = (*_here, key)
        below = base.get(key)
        if isinstance(value, Mapping) and isinstance(below, Mapping):
            out[key] = deep_merge(below, value, on_replace=on_replace, _here=sub)
            continue
        if on_replace is not None:
            on_replace(sub, value)
        if value is None:
            out.pop(key, None)
        else:
            out[key] = value
    return out


def read_yaml_with_lines(path: Path) -> tuple[Any, dict[KeyPath, int]]:
    """Parse YAML into plain data plus a map from key path to 1-based line number."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError("configuration file not found", location=Location(str(path))) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(
            f"cannot read configuration: {exc}", location=Location(str(path))
        ) from None
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        line = exc.problem_mark.line + 1 if exc.problem_mark else None
        raise ConfigError(
            f"invalid YAML: {exc.problem}", location=Location(str(path), line)
        ) from None
    lines: dict[KeyPath, int] = {(): 1}
    if node is None:
        return None, lines
    return expand_env(_to_data(node, (), lines, path)), lines


_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}|\$\$")


def expand_env(data: Any, env: dict[str, str] | None = None) -> Any:
    """Expand ``${NAME}`` and ``${NAME:-default}`` in string values (``$$`` is a literal ``$``).

    This lets one file serve a laptop, a GitHub runner and the local pipeline: for example a
    base image build argument can be ``${BASE_JRE:-}``, empty (and so left out, keeping the
    Dockerfile's upstream default) unless the local pipeline sets ``BASE_JRE``.
    """
    source = os.environ if env is None else env

    def sub(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        value = source.get(match.group(1), "")
        return value if value else (match.group(2) or "")

    if isinstance(data, str):
        expanded = _ENV_REF.sub(sub, data)
        if expanded != data and _ENV_REF.fullmatch(data) and expanded:
            # A value that is one reference takes the type the text has in YAML,
            # so `insecure: ${FLAG:-false}` is a boolean, not the string "false".
            typed = yaml.safe_load(expanded)
            if isinstance(typed, bool | int | float):
                return typed
        return expanded
    if isinstance(data, dict):
        return {k: expand_env(v, env) for k, v in data.items()}
    if isinstance(data, list):
        return [expand_env(v, env) for v in data]
    return data


def _to_data(node: yaml.Node, here: KeyPath, lines: dict[KeyPath, int], path: Path) -> Any:
    """Turn a composed node into data, recording lines and rejecting duplicate keys."""
    if isinstance(node, yaml.MappingNode):
        out: dict[str, Any] = {}
        for key_node, value_node in node.value:
            key = _scalar(key_node)
            sub = (*here, str(key))
            if str(key) in out:
                raise ConfigError(
                    f"{format_path(sub)}: duplicate key (first given on line {lines[sub]})",
                    location=Location(str(path), key_node.start_mark.line + 1),
                )
            lines[sub] = key_node.start_mark.line + 1
            out[str(key)] = _to_data(value_node, sub, lines, path)
        return out
    if isinstance(node, yaml.SequenceNode):
        items = []
        for i, item in enumerate(node.value):
            lines[(*here, i)] = item.start_mark.line + 1
            items.append(_to_data(item, (*here, i), lines, path))
        return items
    return _scalar(node)


def _scalar(node: yaml.Node) -> Any:
    """Construct one scalar with YAML 1.1 core types, as ``yaml.safe_load`` would."""
    loader = yaml.SafeLoader("")
    try:
        return loader.construct_object(node, deep=True)
    finally:
        loader.dispose()
