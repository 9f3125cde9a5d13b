"""CustomResourceDefinition -> strict JSON Schema, one per served version; pure functions.

Why its own module: the chart's own CRD files (``chart.crds``, read when validating) and the
upstream CRDs converted once by ``ci tools install`` (``ci.tools.crds``) must become the same
schemas, and the two callers sit in different layers. The output is a standalone JSON Schema
in kubeconform's layout (``GROUP/KIND_VERSION.json``, ``metadata`` a plain object), so the
cached files also work with ``kubeconform -strict -schema-location``; the in-process validator
swaps ``metadata`` for the Kubernetes ``ObjectMeta`` definition when it loads one.

Strict as ``kubeconform -strict`` is: every object that lists ``properties`` rejects unknown
fields unless it says ``x-kubernetes-preserve-unknown-fields`` or sets ``additionalProperties``.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable
from typing import Any

#: (apiVersion, kind) -> its JSON Schema.
Schemas = dict[tuple[str, str], dict[str, Any]]


class NotACrd(ValueError):
    """A document that is not a CustomResourceDefinition, or one without any schema."""


def strict_openapi(node: Any) -> Any:
    """OpenAPI v3 structural schema -> JSON Schema that rejects unknown fields.

    ``x-kubernetes-int-or-string`` becomes a string-or-integer type; ``nullable`` adds
    ``null`` to the type; objects that list ``properties`` (and do not preserve unknown
    fields) get ``additionalProperties: false``.
    """
    if isinstance(node, list):
        return [strict_openapi(n) for n in node]
    if not isinstance(node, dict):
        return node
    out = {k: strict_openapi(v) for k, v in node.items()}
    if out.pop("x-kubernetes-int-or-string", False):
        out.pop("type", None)
        out["anyOf"] = [{"type": "string"}, {"type": "integer"}]
    if out.get("nullable"):
        kind = out.get("type")
        if isinstance(kind, str):
            out["type"] = [kind, "null"]
    preserve = out.get("x-kubernetes-preserve-unknown-fields")
    if "properties" in out and not preserve and "additionalProperties" not in out:
        out["additionalProperties"] = False
    return out


def object_schema(raw: dict[str, Any], api_version: str, kind: str) -> dict[str, Any]:
    """A whole object's schema: the strict ``openAPIV3Schema``, apiVersion and kind fixed."""
    schema: dict[str, Any] = strict_openapi(copy.deepcopy(raw))
    props = schema.setdefault("properties", {})
    props["apiVersion"] = {"type": "string", "enum": [api_version]}
    props["kind"] = {"type": "string", "enum": [kind]}
    props["metadata"] = {"type": "object"}
    schema["additionalProperties"] = False
    return schema


def crd_schemas(docs: Iterable[Any]) -> Schemas:
    """The schema of every served version of every CRD in ``docs`` (parsed YAML documents).

    Raises ``NotACrd`` for a document of another kind, or when no version has a schema.
    """
    out: Schemas = {}
    for doc in docs:
        if not doc:
            continue
        if not isinstance(doc, dict) or doc.get("kind") != "CustomResourceDefinition":
            got = doc.get("kind") if isinstance(doc, dict) else type(doc).__name__
            raise NotACrd(f"not a CustomResourceDefinition (kind {got!r})")
        spec = doc.get("spec") or {}
        group = str(spec.get("group"))
        kind = str((spec.get("names") or {}).get("kind"))
        for version in spec.get("versions") or []:
            raw = (version.get("schema") or {}).get("openAPIV3Schema") or None
            if raw is None:
                continue
            api_version = f"{group}/{version['name']}"
            out[(api_version, kind)] = object_schema(raw, api_version, kind)
    if not out:
        raise NotACrd("no versions with openAPIV3Schema")
    return out


def catalog_name(api_version: str, kind: str) -> str:
    """kubeconform's CRD file layout: ``monitoring.coreos.com/servicemonitor_v1.json``.

    That is ``{{.Group}}/{{.ResourceKind}}_{{.ResourceAPIVersion}}.json`` for
    ``-schema-location``.
    """
    group, _, version = api_version.rpartition("/")
    return f"{group}/{kind.lower()}_{version}.json"
