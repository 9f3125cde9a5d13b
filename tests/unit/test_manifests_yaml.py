"""The one YAML loader of rendered manifests: fast where libyaml is there, always safe."""

from __future__ import annotations

import pytest
import yaml

from ci import manifests


def test_the_fast_loader_reads_what_the_safe_loader_reads() -> None:
    text = "a: 1\nb: [x, 'y', 2.5]\nc: {d: null, e: true}\nf: '0123'\ng: 0123\n"
    assert manifests.load_yaml(text) == yaml.safe_load(text)
    assert manifests.load_yaml_all("a: 1\n---\nb: 2\n") == [{"a": 1}, {"b": 2}]


def test_the_fast_loader_is_safe() -> None:
    with pytest.raises(yaml.YAMLError):
        manifests.load_yaml("!!python/object/apply:os.system ['true']")


def test_libyaml_is_used_where_pyyaml_has_it() -> None:
    expected = yaml.CSafeLoader if yaml.__with_libyaml__ else yaml.SafeLoader
    assert manifests._LOADER is expected
