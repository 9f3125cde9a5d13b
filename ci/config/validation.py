"""The configuration schema: validation with one-line, located messages, and its defaults.

Why the schema holds the defaults too: ``fill_defaults`` reads each ``default`` from the schema,
so the documented default and the applied one cannot drift apart.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable, Iterator
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

from ci.config.layers import KeyPath, Positions
from ci.errors import ConfigError, Location, format_path

SCHEMA_RESOURCE = "config.schema.json"

_COMMON_RULE_KEYS = ("type", "prefix", "suffix", "enable")
#: The options each tag rule type reads; another one set on it is a mistake, not a no-op.
TAG_RULE_KEYS: dict[str, tuple[str, ...]] = {
    "sha": (*_COMMON_RULE_KEYS, "length"),
    "branch": _COMMON_RULE_KEYS,
    "semver": (*_COMMON_RULE_KEYS, "pattern", "major_zero"),
    "tag": (*_COMMON_RULE_KEYS, "include_versions"),
    "pr": _COMMON_RULE_KEYS,
    "raw": (*_COMMON_RULE_KEYS, "value"),
    "latest": _COMMON_RULE_KEYS,
}


def _semantic_problems(data: dict[str, Any]) -> Iterator[tuple[KeyPath, str]]:
    """Rules a JSON Schema cannot express: names that other steps look up must be unique, and
    an environment promotes from another one that exists."""
    for key, items in (
        ("images", data.get("images", [])),
        ("checks", (data.get("smoke") or {}).get("checks", [])),
    ):
        seen: set[str] = set()
        base: KeyPath = ("images",) if key == "images" else ("smoke", "checks")
        for i, item in enumerate(items):
            name = item.get("name")
            if name in seen:
                yield (*base, i, "name"), f"duplicate name '{name}'"
            seen.add(name)
    yield from _tag_rule_problems(data)
    envs = data.get("environments") or {}
    for name, env in envs.items():
        source = (env or {}).get("promote_from")
        if source is not None and (source not in envs or source == name):
            others = ", ".join(sorted(set(envs) - {name})) or "none"
            yield (
                ("environments", name, "promote_from"),
                f"'{source}' is not another environment (expected one of: {others})",
            )
    for i, check in enumerate((data.get("smoke") or {}).get("checks", [])):
        for n, env_name in enumerate(check.get("environments", [])):
            if env_name not in envs:
                yield (
                    ("smoke", "checks", i, "environments", n),
                    f"'{env_name}' is not an environment (expected one of: "
                    f"{', '.join(sorted(envs)) or 'none'})",
                )


def _tag_rule_problems(data: dict[str, Any]) -> Iterator[tuple[KeyPath, str]]:
    """An option the rule's type ignores (``length`` on a ``branch`` rule) is refused."""
    lists: list[tuple[KeyPath, list[dict[str, Any]]]] = [
        (("tags", "rules"), (data.get("tags") or {}).get("rules", []))
    ]
    lists += [
        (("images", i, "tags"), image["tags"])
        for i, image in enumerate(data.get("images", []))
        if "tags" in image
    ]
    for base, rules in lists:
        for n, rule in enumerate(rules):
            allowed = TAG_RULE_KEYS[rule["type"]]
            for key in rule:
                if key not in allowed:
                    yield (
                        (*base, n, key),
                        f"not an option of a '{rule['type']}' rule "
                        f"(expected one of: {', '.join(allowed)})",
                    )


# ----------------------------------------------------------------------------- schema


@cache
def schema() -> dict[str, Any]:
    """The configuration schema shipped inside the package."""
    text = resources.files("ci.schemas").joinpath(SCHEMA_RESOURCE).read_text(encoding="utf-8")
    result: dict[str, Any] = json.loads(text)
    return result


def validate(data: Any, positions: Positions, base: Path) -> Iterator[ConfigError]:
    """Yield one ``ConfigError`` per problem, in file order; paths are relative to ``base``."""
    validator = _validator_for(base)

    def order(e: Any) -> tuple[str, int, str]:
        loc = locate(_error_path(e), positions)
        return loc.file, loc.line or 0, format_path(_error_path(e))

    errors = sorted(validator.iter_errors(data), key=order)
    for error in errors:
        where = _error_path(error)
        message = f"{format_path(where) or '(top level)'}: {describe(error)}"
        yield ConfigError(message, location=locate(where, positions))
    if not errors:
        for where, text in _semantic_problems(data):
            yield ConfigError(f"{format_path(where)}: {text}", location=locate(where, positions))


def _validator_for(base: Path) -> Any:
    """A Draft 2020-12 validator that also checks ``x-file``/``x-dir`` paths exist."""
    from jsonschema import ValidationError, validators

    def exists(kind: str) -> Any:
        def check(_v: Any, wanted: bool, instance: Any, _schema: Any) -> Iterator[Any]:
            if not wanted or not isinstance(instance, str):
                return
            target = (base / instance).resolve()
            ok = target.is_file() if kind == "file" else target.is_dir()
            if not ok:
                what = "file" if kind == "file" else "folder"
                yield ValidationError(f"{what} '{instance}' does not exist (looked for {target})")

        return check

    base_cls = validators.Draft202012Validator
    cls = validators.extend(  # type: ignore[no-untyped-call]
        base_cls, {"x-file": exists("file"), "x-dir": exists("dir")}
    )
    return cls(schema())


def _error_path(error: Any) -> KeyPath:
    """Where an error points: for unknown or invalid keys, the key itself, not its parent."""
    where: KeyPath = tuple(error.absolute_path)
    if "propertyNames" in error.relative_schema_path and isinstance(error.instance, str):
        return (*where, error.instance)
    if error.validator == "additionalProperties" and isinstance(error.instance, dict):
        allowed = set(error.schema.get("properties", {}))
        extra = sorted(k for k in error.instance if k not in allowed)
        if extra and error.schema.get("additionalProperties") is False:
            return (*where, extra[0])
    return where


def locate(where: KeyPath, positions: Positions) -> Location:
    """The file and line of the nearest recorded ancestor of a key path."""
    for n in range(len(where), -1, -1):
        if where[:n] in positions:
            return positions[where[:n]]
    return positions[()]


def _type_name(value: Any) -> str:
    if value is None:
        return "null"
    return {
        bool: "boolean",
        int: "integer",
        float: "number",
        str: "string",
        list: "array",
        dict: "mapping",
    }.get(type(value), type(value).__name__)


def _show(value: Any) -> str:
    """A short rendering of a value for a one-line message."""
    text = json.dumps(value, default=str)
    return text if len(text) <= 40 else text[:37] + "..."


def _enum_value(value: Any) -> str:
    """An allowed value as the file spells it (``true``, not Python's ``True``)."""
    return json.dumps(value) if isinstance(value, bool) else str(value)


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def _d_additional(e: Any) -> str:
    allowed = sorted(e.schema.get("properties", {}))
    extra = sorted(k for k in e.instance if k not in allowed)
    return f"unknown key '{extra[0]}' (expected one of: {', '.join(allowed)})"


def _d_required(e: Any) -> str:
    missing = [k for k in e.validator_value if k not in e.instance]
    return f"missing required key '{missing[0]}'"


def _d_type(e: Any) -> str:
    wanted = e.validator_value
    wanted = " or ".join(wanted) if isinstance(wanted, list) else wanted
    wanted = "mapping" if wanted == "object" else wanted
    inst = e.instance
    found = "nothing" if inst is None else f"{_type_name(inst)} {_show(inst)}"
    return f"expected {wanted}, got {found}"


def _d_pattern(e: Any) -> str:
    hint = f" ({e.schema['description']})" if "description" in e.schema else ""
    return f"invalid value {_show(e.instance)}: expected to match {e.schema['pattern']}{hint}"


def _d_one_of(e: Any) -> str:
    text = str(e.schema.get("description", "a valid value")).rstrip(".")
    return f"expected {text[0].lower()}{text[1:]}; got {_show(e.instance)}"


def _d_bound(e: Any) -> str:
    bound = "at least" if e.validator == "minimum" else "at most"
    return f"expected {bound} {e.validator_value}, got {_show(e.instance)}"


_DESCRIBE: dict[str, Callable[[Any], str]] = {
    "additionalProperties": _d_additional,
    "required": _d_required,
    "type": _d_type,
    "pattern": _d_pattern,
    "oneOf": _d_one_of,
    "minimum": _d_bound,
    "maximum": _d_bound,
    "enum": lambda e: (
        f"expected one of: {', '.join(map(_enum_value, e.schema['enum']))}; got {_show(e.instance)}"
    ),
    "const": lambda e: f"expected {_show(e.schema['const'])}, got {_show(e.instance)}",
    "minItems": lambda e: (
        f"expected at least {_plural(e.validator_value, 'entry')}, got {len(e.instance)}"
    ).replace("entrys", "entries"),
    "minLength": lambda e: "expected a non-empty string",
    "maxLength": lambda e: (
        f"expected at most {e.validator_value} characters, got {len(e.instance)}"
    ),
}
_DESCRIBE["minProperties"] = _DESCRIBE["minItems"]


def describe(error: Any) -> str:
    """What was expected and what was found, for one jsonschema error."""
    if "propertyNames" in error.relative_schema_path:
        return (
            f"invalid key {_show(error.instance)}: expected to match {error.schema.get('pattern')}"
        )
    handler = _DESCRIBE.get(error.validator)
    return handler(error) if handler else str(error.message)


def fill_defaults(data: Any, sch: dict[str, Any]) -> Any:
    """Fill in the schema's ``default`` values so defaults live in one place, the schema."""
    if "$ref" in sch:
        sch = _resolve_ref(sch["$ref"])
    if isinstance(data, dict):
        for key, sub in sch.get("properties", {}).items():
            if key not in data and "default" in sub:
                data[key] = copy.deepcopy(sub["default"])
            if key in data:
                data[key] = fill_defaults(data[key], sub)
        extra = sch.get("additionalProperties")
        if isinstance(extra, dict):
            for key in data:
                if key not in sch.get("properties", {}):
                    data[key] = fill_defaults(data[key], extra)
    elif isinstance(data, list) and isinstance(sch.get("items"), dict):
        data = [fill_defaults(item, sch["items"]) for item in data]
    return data


def _resolve_ref(ref: str) -> dict[str, Any]:
    node: Any = schema()
    for part in ref.removeprefix("#/").split("/"):
        node = node[part]
    result: dict[str, Any] = node
    return result
