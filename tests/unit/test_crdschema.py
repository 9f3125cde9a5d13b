"""CRD -> strict JSON Schema conversion, and the cached upstream CRD sets, on local files only."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import jsonschema
import pytest
import yaml

from ci import crdschema, tools
from ci.errors import ProcessError, ToolError
from ci.tools import crds

ROOT = Path(__file__).resolve().parents[2]

ROUTE_CRD = """
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {name: httproutes.gateway.networking.k8s.io}
spec:
  group: gateway.networking.k8s.io
  names: {kind: HTTPRoute, plural: httproutes}
  versions:
    - name: v1
      schema:
        openAPIV3Schema:
          type: object
          properties:
            apiVersion: {type: string}
            kind: {type: string}
            metadata: {type: object}
            spec:
              type: object
              properties:
                parentRefs:
                  type: array
                  items:
                    type: object
                    required: [name]
                    properties:
                      name: {type: string}
                      port: {type: integer, format: int32}
    - name: v1beta1
      schema:
        openAPIV3Schema: {type: object, properties: {spec: {type: object}}}
"""


# ----------------------------------------------------------------------------- conversion


def test_strict_openapi_rejects_unknown_fields_unless_preserved() -> None:
    schema = crdschema.strict_openapi(
        {
            "type": "object",
            "properties": {
                "port": {"x-kubernetes-int-or-string": True, "type": "string"},
                "name": {"type": "string", "nullable": True},
                "free": {"properties": {}, "x-kubernetes-preserve-unknown-fields": True},
                "open": {"properties": {}, "additionalProperties": True},
            },
        }
    )
    assert schema["additionalProperties"] is False
    props = schema["properties"]
    assert props["port"] == {"anyOf": [{"type": "string"}, {"type": "integer"}]}
    assert props["name"]["type"] == ["string", "null"]
    assert "additionalProperties" not in props["free"]
    assert props["open"]["additionalProperties"] is True


def test_every_version_becomes_a_standalone_object_schema() -> None:
    found = crdschema.crd_schemas(yaml.safe_load_all(ROUTE_CRD))
    assert list(found) == [
        ("gateway.networking.k8s.io/v1", "HTTPRoute"),
        ("gateway.networking.k8s.io/v1beta1", "HTTPRoute"),
    ]
    schema = found["gateway.networking.k8s.io/v1", "HTTPRoute"]
    assert schema["properties"]["apiVersion"] == {
        "type": "string",
        "enum": ["gateway.networking.k8s.io/v1"],
    }
    assert schema["properties"]["metadata"] == {"type": "object"}  # no reference outside it
    assert schema["additionalProperties"] is False
    item = schema["properties"]["spec"]["properties"]["parentRefs"]["items"]
    assert item["additionalProperties"] is False


def test_converted_schema_rejects_what_the_api_server_would() -> None:
    schema = crdschema.crd_schemas(yaml.safe_load_all(ROUTE_CRD))[
        "gateway.networking.k8s.io/v1", "HTTPRoute"
    ]
    route = {
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "HTTPRoute",
        "metadata": {"name": "r"},
        "spec": {"parentRefs": [{"name": "public", "port": 443}]},
    }
    validator = jsonschema.Draft202012Validator(schema)
    assert list(validator.iter_errors(route)) == []
    route["spec"] = {"parentRefs": [{"name": "public", "port": "https", "gateway": "x"}]}
    messages = sorted(e.message for e in validator.iter_errors(route))
    assert messages == [
        "'https' is not of type 'integer'",
        "Additional properties are not allowed ('gateway' was unexpected)",
    ]


@pytest.mark.parametrize(
    ("docs", "message"),
    [
        ([{"kind": "ConfigMap"}], "not a CustomResourceDefinition"),
        (["text"], "not a CustomResourceDefinition"),
        ([{"kind": "CustomResourceDefinition", "spec": {"versions": []}}], "no versions"),
        ([None], "no versions"),
    ],
)
def test_documents_that_are_not_crds_are_refused(docs: list[object], message: str) -> None:
    with pytest.raises(crdschema.NotACrd, match=message):
        crdschema.crd_schemas(docs)


@pytest.mark.parametrize(
    ("api_version", "kind", "name"),
    [
        (
            "gateway.networking.k8s.io/v1",
            "HTTPRoute",
            "gateway.networking.k8s.io/httproute_v1.json",
        ),
        (
            "monitoring.coreos.com/v1",
            "PrometheusRule",
            "monitoring.coreos.com/prometheusrule_v1.json",
        ),
    ],
)
def test_catalog_names_follow_kubeconform(api_version: str, kind: str, name: str) -> None:
    assert crdschema.catalog_name(api_version, kind) == name


# ----------------------------------------------------------------------------- pinned sets


def _versions_sh() -> dict[str, str]:
    text = (ROOT / "hack" / "cluster" / "versions.sh").read_text()
    return dict(re.findall(r"^(\w+_VERSION)=\$\{\w+:-(v[\w.]+)\}", text, flags=re.MULTILINE))


def test_pins_are_the_versions_the_local_cluster_installs() -> None:
    pinned = _versions_sh()
    assert tools.CRDS["gateway-api-crds"].version == pinned["GATEWAY_API_VERSION"]
    assert tools.CRDS["monitoring-crds"].version == pinned["PROM_OPERATOR_VERSION"]


def test_names_aliases_and_groups() -> None:
    assert [s.name for s in crds.crd_names(["kubeconform", "crds", "monitoring-crds"])] == [
        "gateway-api-crds",
        "monitoring-crds",
    ]
    assert crds.is_crd_name("crds")
    assert not crds.is_crd_name("helm")
    found = crds.for_api_version("monitoring.coreos.com/v1")
    assert found is not None
    assert found.name == "monitoring-crds"
    assert crds.for_api_version("apps/v1") is None
    assert crds.for_api_version("v1") is None


def test_module_paths_use_gos_case_encoding() -> None:
    assert crds.escape_module("github.com/BurntSushi/toml") == "github.com/!burnt!sushi/toml"
    assert crds.escape_module("sigs.k8s.io/gateway-api") == "sigs.k8s.io/gateway-api"


def test_go_mod_download_report_is_read_or_its_error_named() -> None:
    spec = tools.CRDS["gateway-api-crds"]
    assert crds._downloaded_dir(spec, '{"Dir": "/m/gw@v1.4.1"}', 0) == Path("/m/gw@v1.4.1")
    bad = '{"Path": "x", "Error": "sigs.k8s.io/gateway-api@v1.4.1: 404 Not Found\\nmore"}'
    with pytest.raises(
        ProcessError, match=r"^go mod download sigs.k8s.io/gateway-api@v1\.4\.1: .*404 Not Found$"
    ):
        crds._downloaded_dir(spec, bad, 1)
    with pytest.raises(ProcessError, match="exit 1"):
        crds._downloaded_dir(spec, "", 1)


@pytest.fixture
def caches(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, Path]]:
    """Empty tools and Go module caches, and no Go to download with."""
    dirs = {"tools": tmp_path / "tools", "gomod": tmp_path / "gomod"}
    monkeypatch.setenv("CI_TOOLS_CACHE", str(dirs["tools"]))
    monkeypatch.setenv("GOMODCACHE", str(dirs["gomod"]))
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    monkeypatch.setattr(tools.discovery, "GO_FALLBACK", tmp_path / "no-go" / "go")
    yield dirs
    crds._load.cache_clear()


def _fake_module(gomod: Path, spec: tools.CrdSpec, crd_text: str) -> Path:
    folder = gomod / f"{crds.escape_module(spec.module)}@{spec.version}" / spec.folder
    folder.mkdir(parents=True)
    (folder / "crd.yaml").write_text(crd_text)
    return folder


def test_missing_set_fails_in_one_line_naming_module_version_and_fix(
    caches: dict[str, Path],
) -> None:
    spec = tools.CRDS["gateway-api-crds"]
    with pytest.raises(ToolError) as err:
        crds.load("gateway.networking.k8s.io/v1", "HTTPRoute")
    message = err.value.message
    assert "\n" not in message
    assert message.startswith("schemas of sigs.k8s.io/gateway-api v1.4.1 (gateway.networking")
    assert str(caches["tools"] / f"{spec.name}-{spec.version}") in message
    assert message.endswith("run `make tools` (or `ci tools install gateway-api-crds`)")


def test_install_without_go_or_module_says_go_is_needed(caches: dict[str, Path]) -> None:
    with pytest.raises(ToolError, match=r"^monitoring-crds: fetching github\.com/.*needs Go"):
        tools.install(["monitoring-crds"])


def test_schemas_are_made_from_gos_module_cache_without_a_download(
    caches: dict[str, Path],
) -> None:
    spec = tools.CRDS["gateway-api-crds"]
    _fake_module(caches["gomod"], spec, ROUTE_CRD)
    [result] = tools.install(["gateway-api-crds"])
    assert (result.name, result.action) == ("gateway-api-crds", "converted")
    written = result.path / "gateway.networking.k8s.io" / "httproute_v1.json"
    assert json.loads(written.read_text())["properties"]["kind"]["enum"] == ["HTTPRoute"]
    assert crds.load("gateway.networking.k8s.io/v1", "HTTPRoute") is not None
    assert crds.load("gateway.networking.k8s.io/v1", "GRPCRoute") is None  # not in this set
    [again] = tools.install(["gateway-api-crds"])
    assert again.action == "skipped"


def test_a_folder_of_an_older_conversion_is_converted_again(caches: dict[str, Path]) -> None:
    spec = tools.CRDS["gateway-api-crds"]
    _fake_module(caches["gomod"], spec, ROUTE_CRD)
    folder = crds.require(spec)
    (folder / crds.MARKER).write_text("crdschema 0\n")
    (folder / "stale.json").write_text("{}")
    assert not crds.is_installed(spec)
    assert crds.require(spec) == folder
    assert crds.is_installed(spec)
    assert not (folder / "stale.json").exists()


def test_a_bare_equals_sign_in_a_crd_is_read_as_text(caches: dict[str, Path]) -> None:
    """AlertmanagerConfig's matchers list ``=`` as an enum value, unquoted."""
    spec = tools.CRDS["monitoring-crds"]
    text = ROUTE_CRD.replace("port: {type: integer, format: int32}", "op: {enum: [=, '!=']}")
    _fake_module(caches["gomod"], spec, text)
    schema = json.loads(
        (crds.require(spec) / "gateway.networking.k8s.io" / "httproute_v1.json").read_text()
    )
    item = schema["properties"]["spec"]["properties"]["parentRefs"]["items"]
    assert item["properties"]["op"]["enum"] == ["=", "!="]


def test_a_broken_crd_file_names_the_file(caches: dict[str, Path]) -> None:
    spec = tools.CRDS["monitoring-crds"]
    folder = _fake_module(caches["gomod"], spec, "kind: ConfigMap\n")
    with pytest.raises(ToolError, match=rf"^{re.escape(str(folder))}/crd\.yaml: not a Custom"):
        crds.require(spec)


def test_doctor_reports_each_set_and_where_it_comes_from(caches: dict[str, Path]) -> None:
    rows = {s.name: s for s in tools.doctor()}
    missing = rows["monitoring-crds"]
    assert (missing.status, missing.required) == ("missing", True)
    assert missing.hint == (
        "schemas of github.com/prometheus-operator/prometheus-operator v0.85.0 not cached; "
        "run `make tools`"
    )
    spec = tools.CRDS["gateway-api-crds"]
    _fake_module(caches["gomod"], spec, ROUTE_CRD)
    found = {s.name: s for s in tools.doctor()}["gateway-api-crds"]
    assert (found.status, found.source, found.version) == ("ok", "go module cache", "v1.4.1")
    crds.require(spec)
    found = {s.name: s for s in tools.doctor()}["gateway-api-crds"]
    assert (found.source, found.path) == ("pinned", crds.schema_dir(spec))


def test_an_unreadable_cached_schema_names_the_file_and_the_fix(caches: dict[str, Path]) -> None:
    spec = tools.CRDS["gateway-api-crds"]
    _fake_module(caches["gomod"], spec, ROUTE_CRD)
    broken = crds.require(spec) / "gateway.networking.k8s.io" / "httproute_v1.json"
    broken.write_text("{half")
    with pytest.raises(
        ToolError, match=r"httproute_v1\.json: unreadable schema .*run `make tools`$"
    ):
        crds.load("gateway.networking.k8s.io/v1", "HTTPRoute")
