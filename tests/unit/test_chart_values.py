"""The chart's values: every key typed in values.schema.json and documented in README.md.

Pure file checks (no helm), kept beside the chart tests because they guard the same files.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from ci.config import deep_merge

CHART = Path(__file__).resolve().parents[2] / "charts" / "schedule-app"
#: Maps whose keys are free-form (labels, env, ...): documented and typed as a whole.
FREE_FORM = {
    "resources",
    "env",
    "secretEnv",
    "commonLabels",
    "podAnnotations",
    "nodeSelector",
    "annotations",
    "labels",
    "affinity",
    "ingressNamespaceSelector",
    "monitoringNamespaceSelector",
}


def leaves(data: Any, prefix: str = "") -> Iterator[str]:
    """Dotted paths of the values a user sets (free-form maps count as one value)."""
    for key, value in data.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict) and value and key not in FREE_FORM:
            yield from leaves(value, path + ".")
        else:
            yield path


def values() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((CHART / "values.yaml").read_text())
    return data


def schema() -> dict[str, Any]:
    data: dict[str, Any] = json.loads((CHART / "values.schema.json").read_text())
    return data


def test_readme_documents_every_value() -> None:
    readme = (CHART / "README.md").read_text()
    missing = [p for p in leaves(values()) if f"`{p}`" not in readme]
    assert missing == []


def test_schema_types_every_value() -> None:
    root = schema()

    def lookup(path: str) -> Any:
        node = root
        for key in path.split("."):
            if "$ref" in node:
                node = root["definitions"][node["$ref"].rsplit("/", 1)[-1]]
            node = node.get("properties", {}).get(key)
            if node is None:
                return None
        return node

    assert [p for p in leaves(values()) if lookup(p) is None] == []


def merged(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """Helm's merge of a values file over the defaults."""
    return deep_merge(base, over)


@pytest.mark.parametrize("name", ["values.yaml", "values-staging.yaml", "values-prod.yaml"])
def test_values_files_match_the_schema(name: str) -> None:
    data = merged(values(), yaml.safe_load((CHART / name).read_text()))
    jsonschema.Draft7Validator(schema()).validate(data)


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("backend.replicaCount", "two"),
        ("backend.image.digest", "latest"),
        ("backend.unknownKey", 1),
        ("logging.level", "LOUD"),
    ],
)
def test_schema_rejects_wrong_values(key: str, value: Any) -> None:
    data = values()
    node = data
    *parents, last = key.split(".")
    for part in parents:
        node = node[part]
    node[last] = value
    errors = list(jsonschema.Draft7Validator(schema()).iter_errors(data))
    assert errors, f"{key}={value!r} was accepted"
