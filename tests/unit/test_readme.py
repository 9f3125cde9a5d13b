"""The README's configuration reference covers every key of the shipped schema."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ci import config

README = Path(__file__).parents[2] / "README.md"


def _keys(schema: dict[str, Any], prefix: str) -> list[str]:
    if "$ref" in schema:
        schema = config._resolve_ref(schema["$ref"])
    keys = []
    for name, sub in schema.get("properties", {}).items():
        path = f"{prefix}.{name}" if prefix else name
        children = _children(sub, path)
        keys += children or [path]
    return keys


def _children(sub: dict[str, Any], path: str) -> list[str]:
    if "$ref" in sub:
        sub = config._resolve_ref(sub["$ref"])
    if sub.get("type") == "array" and isinstance(sub.get("items"), dict):
        return _keys(sub["items"], path + "[]")
    if isinstance(sub.get("additionalProperties"), dict) and "properties" not in sub:
        return _keys(sub["additionalProperties"], path + ".NAME")
    return _keys(sub, path) if "properties" in sub else []


def test_every_schema_key_is_documented() -> None:
    text = README.read_text(encoding="utf-8")
    missing = [k for k in _keys(config.schema(), "") if f"| `{k}` |" not in text]
    assert missing == []
