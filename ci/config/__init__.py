"""Load ``ci.yaml``, validate it against the schema shipped in the package, resolve defaults.

The parts: ``layers`` reads a file with the line of every key (and its ``extends:`` chain and
``${VAR}`` references); ``validation`` checks it against the schema with one-line, located
messages and fills in the schema's defaults; ``build`` turns the result into the typed objects
of ``model``. The names the rest of the toolkit uses are all importable from ``ci.config``.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import yaml

from ci.config.build import build_config, seconds
from ci.config.layers import (
    KeyPath,
    Positions,
    deep_merge,
    expand_env,
    read_layers,
    read_yaml_with_lines,
)
from ci.config.model import (
    Build,
    Chart,
    Config,
    Endpoint,
    Environment,
    Image,
    Registry,
    Retention,
    Signing,
    Smoke,
    SmokeCheck,
    TagRule,
    Tags,
    Verify,
)
from ci.config.validation import (
    SCHEMA_RESOURCE,
    _resolve_ref,
    describe,
    fill_defaults,
    locate,
    schema,
    validate,
)
from ci.errors import ConfigInvalid, format_path

__all__ = [
    "SCHEMA_RESOURCE",
    "Build",
    "Chart",
    "Config",
    "Endpoint",
    "Environment",
    "Image",
    "KeyPath",
    "Positions",
    "Registry",
    "Retention",
    "Signing",
    "Smoke",
    "SmokeCheck",
    "TagRule",
    "Tags",
    "Verify",
    "_resolve_ref",
    "deep_merge",
    "describe",
    "dump",
    "expand_env",
    "fill_defaults",
    "format_path",
    "load",
    "locate",
    "read_layers",
    "read_yaml_with_lines",
    "schema",
    "seconds",
    "validate",
]


def load(path: Path | str) -> Config:
    """Read, validate and resolve a configuration file; raise ``ConfigError`` on any problem."""
    path = Path(path)
    data, positions = read_layers(path)
    problems = list(validate(data, positions, path.parent))
    if problems:
        raise ConfigInvalid(problems)
    resolved = fill_defaults(copy.deepcopy(data), schema())
    return build_config(path, resolved)


def dump(cfg: Config, *, as_json: bool = False) -> str:
    """The resolved configuration as text, defaults included."""
    if as_json:
        return json.dumps(cfg.data, indent=2) + "\n"
    return yaml.safe_dump(cfg.data, sort_keys=False, default_flow_style=False)
