"""Validate rendered objects against the Kubernetes JSON Schemas of one release, offline.

Why ``kubernetes-validate``: it ships the OpenAPI-derived JSON Schemas of every Kubernetes
release inside the wheel, including "strict" variants where every object rejects unknown
fields, so validation needs no network, no schema repository to mirror and nothing we
generate. We use its schema files directly with one cached jsonschema validator per kind
(its own ``validate()`` rebuilds the reference registry for every object, which is slower).

Custom resources are checked against the ``openAPIV3Schema`` of their CRDs, made strict the
same way (objects that list ``properties`` and do not say
``x-kubernetes-preserve-unknown-fields`` reject unknown fields): first the CRD files named in
``chart.crds``, then the upstream Gateway API and prometheus-operator CRDs at the versions the
cluster runs (``ci.tools.crds``, cached by ``ci tools install``). A kind with no schema is an
error: an unchecked object is how a typo reaches the cluster.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema
import yaml
from packaging.version import InvalidVersion, Version
from referencing import Registry, Resource

from ci import crdschema
from ci.errors import ConfigError, Location, format_path
from ci.manifests import ERROR, Issue, Manifest, load_yaml_all
from ci.tools import crds

#: Rule ids.
RULE_SCHEMA = "K8S001"
RULE_NO_SCHEMA = "K8S002"
RULE_NO_TYPE = "K8S003"

_PACKAGE = "kubernetes_validate"
_DEFINITIONS_ID = "https://kubernetes.io/api/_definitions.json"
_OBJECT_META = f"{_DEFINITIONS_ID}#/$defs/io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"


def available_versions() -> list[str]:
    """Kubernetes versions the installed kubernetes-validate has schemas for (``1.30.0``)."""
    root = resources.files(_PACKAGE).joinpath("kubernetes-json-schema")
    found = []
    for entry in root.iterdir():
        match = re.fullmatch(r"v(\d+\.\d+\.\d+)-local-strict", entry.name)
        if match:
            found.append(match.group(1))
    return sorted(found, key=Version)


def schema_dir_for(version: str) -> str:
    """The strict schema folder for ``version``: the newest release not newer than it.

    Schemas change only with minor releases, so ``1.30.4`` uses ``v1.30.0-local-strict``.
    """
    wanted = _minor(version)
    candidates = [v for v in available_versions() if _minor(v) <= wanted]
    if not candidates or _minor(candidates[-1]) != wanted:
        known = ", ".join(
            sorted({".".join(v.split(".")[:2]) for v in available_versions()}, key=Version)
        )
        raise ConfigError(
            f"chart.kubernetes_version {version}: no schemas for this release "
            f"(kubernetes-validate has {known})"
        )
    return f"v{candidates[-1]}-local-strict"


def _minor(version: str) -> tuple[int, int]:
    """``(major, minor)`` of ``1.30.4`` or ``v1.30``."""
    try:
        release = Version(version).release
    except InvalidVersion:
        raise ConfigError(
            f"chart.kubernetes_version {version}: not a Kubernetes version such as 1.30.0"
        ) from None
    return release[0], release[1] if len(release) > 1 else 0


def schema_file_name(api_version: str, kind: str) -> str:
    """kubernetes-validate's file name: ``deployment-apps-v1.json``, ``service-v1.json``.

    The group is cut at its first dot (``networking.k8s.io/v1`` -> ``networking-v1``).
    """
    if "/" in api_version:
        group, version = api_version.split("/", 1)
        return f"{kind.lower()}-{group.split('.')[0]}-{version}.json"
    return f"{kind.lower()}-{api_version}.json"


# ----------------------------------------------------------------------------- schema set


@dataclass
class SchemaSet:
    """Validators for built-in kinds of one Kubernetes release plus the CRDs given."""

    version: str
    directory: str
    crds: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    _validators: dict[tuple[str, str], Any] = field(default_factory=dict)

    @classmethod
    def load(cls, version: str, crd_files: Iterable[Path] = ()) -> SchemaSet:
        return _load_cached(version, tuple(crd_files))

    def validator(self, api_version: str, kind: str) -> Any | None:
        """A jsonschema validator for the kind, or None when no schema describes it."""
        key = (api_version, kind)
        if key not in self._validators:
            self._validators[key] = self._build(api_version, kind)
        return self._validators[key]

    def _build(self, api_version: str, kind: str) -> Any | None:
        schema = self.crds.get((api_version, kind))
        if schema is None:
            schema = _builtin_schema(self.directory, schema_file_name(api_version, kind))
        if schema is None:
            schema = _upstream_schema(api_version, kind)
        if schema is None:
            return None
        return jsonschema.Draft202012Validator(schema, registry=_registry(self.directory))


@cache
def _load_cached(version: str, crd_files: tuple[Path, ...]) -> SchemaSet:
    directory = schema_dir_for(version)
    crds: dict[tuple[str, str], dict[str, Any]] = {}
    for path in crd_files:
        crds.update(crd_schemas(path))
    return SchemaSet(version, directory, crds)


def _schema_root(directory: str) -> Any:
    return resources.files(_PACKAGE).joinpath("kubernetes-json-schema", directory)


@cache
def _builtin_schema(directory: str, name: str) -> dict[str, Any] | None:
    entry = _schema_root(directory).joinpath(name)
    if not entry.is_file():
        return None
    data: dict[str, Any] = json.loads(entry.read_text(encoding="utf-8"))
    return data


@cache
def _registry(directory: str) -> Registry[Any]:
    """The shared ``_definitions.json`` every kind's schema refers to."""
    text = _schema_root(directory).joinpath("_definitions.json").read_text(encoding="utf-8")
    definitions: Resource[Any] = Resource.from_contents(json.loads(text))
    registry: Registry[Any] = Registry().with_resource(_DEFINITIONS_ID, definitions)
    return registry


# ----------------------------------------------------------------------------- CRDs


def crd_schemas(path: Path) -> dict[tuple[str, str], dict[str, Any]]:
    """Strict JSON Schemas from a CRD file, keyed by (apiVersion, kind), one per version."""
    try:
        docs = load_yaml_all(path.read_text(encoding="utf-8"))
        found = crdschema.crd_schemas(docs)
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"cannot read CRD file: {exc}", location=Location(str(path))) from None
    except crdschema.NotACrd as exc:
        raise ConfigError(f"CRD file: {exc}", location=Location(str(path))) from None
    return {key: with_object_meta(schema) for key, schema in found.items()}


def with_object_meta(schema: dict[str, Any]) -> dict[str, Any]:
    """``metadata`` checked as the Kubernetes ``ObjectMeta`` (the converted files say object)."""
    props = {**schema.get("properties", {}), "metadata": {"$ref": _OBJECT_META}}
    return {**schema, "properties": props}


def _upstream_schema(api_version: str, kind: str) -> dict[str, Any] | None:
    """The pinned upstream CRD's schema (Gateway API, prometheus-operator), if one defines it."""
    schema = crds.load(api_version, kind)
    return with_object_meta(schema) if schema is not None else None


# ----------------------------------------------------------------------------- validation


def validate(manifests: Iterable[Manifest], schemas: SchemaSet) -> list[Issue]:
    """Every problem of every object; objects with no schema are problems too."""
    issues: list[Issue] = []
    for manifest in manifests:
        issues += list(validate_one(manifest, schemas))
    return issues


def validate_one(manifest: Manifest, schemas: SchemaSet) -> Iterator[Issue]:
    obj = manifest.obj
    api_version, kind = obj.get("apiVersion"), obj.get("kind")
    if not isinstance(api_version, str) or not isinstance(kind, str) or not api_version or not kind:
        yield Issue(manifest, RULE_NO_TYPE, "object has no apiVersion or kind")
        return
    validator = schemas.validator(api_version, kind)
    if validator is None:
        yield Issue(
            manifest,
            RULE_NO_SCHEMA,
            f"no schema for {kind} {api_version} in Kubernetes {schemas.version} "
            "(add its CRD file to chart.crds in ci.yaml)",
        )
        return
    errors = sorted(validator.iter_errors(obj), key=lambda e: list(e.absolute_path))
    for error in errors:
        where = _json_path(error.absolute_path)
        yield Issue(
            manifest, RULE_SCHEMA, f"{where}: {_message(error)}", ERROR, needle=_needle(error)
        )


def _json_path(path: Iterable[Any]) -> str:
    return format_path(tuple(path)) or "(object)"


def _message(error: jsonschema.ValidationError) -> str:
    """jsonschema's message, shortened: unknown fields and type mismatches read plainly."""
    if error.validator == "additionalProperties":
        match = re.search(r"\((.*) (?:was|were) unexpected\)", error.message)
        if match:
            return f"unknown field {match.group(1)}"
    if error.validator == "type":
        return (
            f"expected {error.validator_value}, got {type(error.instance).__name__}: "
            f"{json.dumps(error.instance)[:60]}"
        )
    return error.message[:300]


def _needle(error: jsonschema.ValidationError) -> str | None:
    """Text to find the line in the template: the unknown field, else the last key."""
    if error.validator == "additionalProperties":
        match = re.search(r"'([^']+)'", error.message)
        if match:
            return f"{match.group(1)}:"
    keys = [p for p in error.absolute_path if isinstance(p, str)]
    return f"{keys[-1]}:" if keys else None
