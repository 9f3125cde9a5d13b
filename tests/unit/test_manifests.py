"""The one manifest parser, the shared problem types and the Chart.yaml reader."""

from __future__ import annotations

from pathlib import Path

import pytest

from ci.errors import ChartError, ConfigError
from ci.manifests import Finding, Manifest, chart_metadata, parse_manifests

RENDERED = """---
# Source: app/templates/service.yaml
apiVersion: v1
kind: Service
metadata:
  name: web
---
# Source: app/templates/empty.yaml
---
# Source: app/templates/deployment.yaml
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  replicas: 2
---
# Source: app/templates/service.yaml
apiVersion: v1
kind: Service
metadata:
  name: web-headless
"""


def test_objects_keep_their_template_and_text() -> None:
    found = parse_manifests(RENDERED)
    assert [(m.source, m.ref) for m in found] == [
        ("app/templates/service.yaml", "Service/web"),
        ("app/templates/deployment.yaml", "Deployment/web"),
        ("app/templates/service.yaml", "Service/web-headless"),
    ]
    assert found[1].obj["spec"] == {"replicas": 2}
    assert found[1].text.startswith("# Source: app/templates/deployment.yaml\napiVersion: apps/v1")
    assert found[1].text.endswith("replicas: 2\n")


def test_documents_without_a_source_comment_are_unknown() -> None:
    (only,) = parse_manifests("kind: ConfigMap\nmetadata: {name: c}\n")
    assert only.source == "unknown"
    assert only.ref == "ConfigMap/c"


def test_empty_output_is_no_objects() -> None:
    assert parse_manifests("") == ()
    assert parse_manifests("---\n# Source: a/templates/x.yaml\n---\n") == ()


def test_yaml_that_does_not_parse_names_the_template() -> None:
    with pytest.raises(ChartError, match=r"^app/templates/bad\.yaml: rendered YAML does not"):
        parse_manifests("---\n# Source: app/templates/bad.yaml\nkey: [unclosed\n")


def test_a_document_that_is_not_a_mapping_is_an_error() -> None:
    with pytest.raises(ChartError, match=r"app/templates/list\.yaml: .* not a mapping"):
        parse_manifests("---\n# Source: app/templates/list.yaml\n- a\n- b\n")


def test_names_of_objects_without_metadata() -> None:
    assert Manifest("x", {"kind": "Pod"}).ref == "Pod/"
    assert Manifest("x", {"kind": "Pod", "metadata": "odd"}).name == ""
    assert Manifest("x", {}).kind == ""


def test_a_finding_is_located_at_its_file_and_line() -> None:
    finding = Finding("K8S001", "bad", "charts/app/templates/x.yaml", 7, "staging")
    assert str(finding.location) == "charts/app/templates/x.yaml:7"
    assert str(Finding("LINT001", "bad", "charts/app").location) == "charts/app"


def test_chart_metadata(tmp_path: Path) -> None:
    (tmp_path / "Chart.yaml").write_text("apiVersion: v2\nname: app\nversion: 1.2.3\n")
    assert chart_metadata(tmp_path) == {"apiVersion": "v2", "name": "app", "version": "1.2.3"}
    (tmp_path / "Chart.yaml").write_text("")
    assert chart_metadata(tmp_path) == {}


@pytest.mark.parametrize("text", [None, "name: [unclosed\n", "- a list\n"])
def test_unreadable_chart_metadata_is_a_config_error(tmp_path: Path, text: str | None) -> None:
    if text is not None:
        (tmp_path / "Chart.yaml").write_text(text)
    with pytest.raises(ConfigError, match=r"cannot read .*Chart\.yaml"):
        chart_metadata(tmp_path)
