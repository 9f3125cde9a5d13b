"""Schema validation with kubernetes-validate's schemas and CRD files, offline."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from packaging.version import Version

from ci import validate
from ci.errors import ConfigError
from ci.manifests import Issue, Manifest

CRD = """
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {name: widgets.example.com}
spec:
  group: example.com
  names: {kind: Widget, plural: widgets}
  scope: Namespaced
  versions:
    - name: v1
      served: true
      storage: true
      schema:
        openAPIV3Schema:
          type: object
          properties:
            spec:
              type: object
              properties:
                size: {x-kubernetes-int-or-string: true}
                note: {type: string, nullable: true}
                extra: {type: object, x-kubernetes-preserve-unknown-fields: true}
    - name: v2alpha1
      served: false
      storage: false
"""


def deployment(**spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web"},
        "spec": {
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{"name": "web", "image": "web:1"}]},
            },
            **spec,
        },
    }


@pytest.fixture(scope="module")
def schemas(tmp_path_factory: pytest.TempPathFactory) -> validate.SchemaSet:
    crd = tmp_path_factory.mktemp("crds") / "widget.yaml"
    crd.write_text(CRD)
    return validate.SchemaSet.load("1.30.0", [crd])


def check(schemas: validate.SchemaSet, obj: dict[str, Any]) -> list[Issue]:
    return validate.validate([Manifest("app/templates/x.yaml", obj)], schemas)


# ----------------------------------------------------------------------------- versions


def test_available_versions_are_in_version_order() -> None:
    found = validate.available_versions()
    assert "1.30.0" in found
    assert found == sorted(found, key=Version)
    assert len(found) == len(set(found))


@pytest.mark.parametrize("version", ["1.30.0", "1.30.4", "v1.30.0", "1.30"])
def test_a_patch_release_uses_its_minor_release_schemas(version: str) -> None:
    assert validate.schema_dir_for(version) == "v1.30.0-local-strict"


def test_an_unknown_release_lists_the_known_ones() -> None:
    with pytest.raises(ConfigError, match=r"1\.99\.0: no schemas .*\b1\.30\b") as info:
        validate.schema_dir_for("1.99.0")
    known = info.value.message.split("has ")[1].rstrip(")").split(", ")
    assert known == sorted(known, key=Version)


def test_a_version_that_is_no_version_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="not a Kubernetes version"):
        validate.schema_dir_for("latest")


@pytest.mark.parametrize(
    ("api_version", "kind", "name"),
    [
        ("v1", "Service", "service-v1.json"),
        ("apps/v1", "Deployment", "deployment-apps-v1.json"),
        ("networking.k8s.io/v1", "NetworkPolicy", "networkpolicy-networking-v1.json"),
    ],
)
def test_schema_file_names(api_version: str, kind: str, name: str) -> None:
    assert validate.schema_file_name(api_version, kind) == name


# ----------------------------------------------------------------------------- CRDs


def test_crd_schemas_per_served_version(tmp_path: Path) -> None:
    path = tmp_path / "crd.yaml"
    path.write_text(CRD)
    found = validate.crd_schemas(path)
    assert list(found) == [("example.com/v1", "Widget")]  # v2alpha1 has no schema
    schema = found["example.com/v1", "Widget"]
    assert schema["properties"]["kind"] == {"type": "string", "enum": ["Widget"]}
    assert schema["additionalProperties"] is False


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("kind: ConfigMap\n", "not a CustomResourceDefinition"),
        ("kind: CustomResourceDefinition\nspec: {group: g, versions: []}\n", "no versions"),
        ("kind: [unclosed\n", "cannot read CRD file"),
    ],
)
def test_bad_crd_files_are_config_errors(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "crd.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message):
        validate.crd_schemas(path)


# ----------------------------------------------------------------------------- validation


def test_a_valid_object_has_no_issues(schemas: validate.SchemaSet) -> None:
    assert check(schemas, deployment(replicas=2)) == []


def test_an_unknown_field_is_named_with_its_path(schemas: validate.SchemaSet) -> None:
    obj = deployment()
    obj["spec"]["template"]["spec"]["containers"][0]["imagePullPolicyy"] = "Always"
    (issue,) = check(schemas, obj)
    assert issue.rule == validate.RULE_SCHEMA
    assert issue.message == ("spec.template.spec.containers[0]: unknown field 'imagePullPolicyy'")
    assert issue.needle == "imagePullPolicyy:"


def test_a_wrong_type_says_what_was_expected(schemas: validate.SchemaSet) -> None:
    (issue,) = check(schemas, deployment(replicas="two"))
    assert issue.message.startswith("spec.replicas: expected ")
    assert 'got str: "two"' in issue.message
    assert issue.needle == "replicas:"


def test_objects_without_type_or_schema(schemas: validate.SchemaSet) -> None:
    (untyped,) = check(schemas, {"metadata": {"name": "x"}})
    assert untyped.rule == validate.RULE_NO_TYPE
    (unknown,) = check(schemas, {"apiVersion": "example.com/v9", "kind": "Gadget"})
    assert unknown.rule == validate.RULE_NO_SCHEMA
    assert "no schema for Gadget example.com/v9 in Kubernetes 1.30.0" in unknown.message


def test_custom_resources_follow_their_crd(schemas: validate.SchemaSet) -> None:
    good = {
        "apiVersion": "example.com/v1",
        "kind": "Widget",
        "metadata": {"name": "w"},
        "spec": {"size": "10", "note": None, "extra": {"anything": 1}},
    }
    assert check(schemas, good) == []
    assert check(schemas, {**good, "spec": {"size": 3}}) == []
    (issue,) = check(schemas, {**good, "spec": {"colour": "red"}})
    assert issue.message == "spec: unknown field 'colour'"
    (issue,) = check(schemas, {**good, "spec": {"size": True}})
    assert issue.message.startswith("spec.size: ")


def test_every_problem_of_an_object_is_reported_in_path_order(
    schemas: validate.SchemaSet,
) -> None:
    obj = deployment(replicas="two", paused="yes")
    messages = [i.message.split(":")[0] for i in check(schemas, obj)]
    assert messages == ["spec.paused", "spec.replicas"]
