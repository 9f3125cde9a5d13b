"""Load ``ci.yaml``, validate it against the schema shipped in the package, resolve defaults.

Why a custom loader: a schema error is only useful if it says where. PyYAML's node tree keeps
line numbers, so the file is composed into nodes once and turned into plain data while
recording the line of every key path; each schema error then becomes one line
``FILE:LINE: key.path: what was expected``. Duplicate keys, which YAML parsers silently
collapse, are rejected the same way.
"""

from __future__ import annotations

import copy
import json
import os
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from ci.errors import ConfigError, ConfigInvalid, Location, format_path
from ci.manifests import chart_metadata

KeyPath = tuple[str | int, ...]
#: Where each key path was written: file and line (several files when one extends another).
Positions = dict[KeyPath, Location]

SCHEMA_RESOURCE = "config.schema.json"


# ----------------------------------------------------------------------------- data


@dataclass(frozen=True)
class Signing:
    """How pushed digests are signed: ``none``, ``key`` (a cosign key) or ``keyless`` (OIDC)."""

    mode: str = "none"
    key: Path | None = None
    key_env: str = "COSIGN_PRIVATE_KEY"
    password_env: str = "COSIGN_PASSWORD"


@dataclass(frozen=True)
class Retention:
    """What ``ci images prune`` keeps besides released digests."""

    keep_per_branch: int = 10
    keep_days: int = 14


@dataclass(frozen=True)
class Registry:
    host: str
    namespace: str
    insecure: bool
    username_env: str
    password_env: str
    cache: bool
    provenance: str = "max"
    sbom: bool = False
    sbom_generator: str = "docker/buildkit-syft-scanner:stable-1"
    sbom_generator_base: str | None = None
    signing: Signing = field(default_factory=Signing)
    retention: Retention = field(default_factory=Retention)

    def repository(self, image: str) -> str:
        """Full repository name of an image, without tag or digest."""
        parts = [self.host, self.namespace, image] if self.namespace else [self.host, image]
        return "/".join(parts)


@dataclass(frozen=True)
class Image:
    name: str
    dockerfile: Path
    context: Path
    build_args: dict[str, str]
    platforms: tuple[str, ...]
    values_key: str
    target: str | None = None


@dataclass(frozen=True)
class Chart:
    path: Path
    kubernetes_version: str
    crds: tuple[Path, ...]


@dataclass(frozen=True)
class Verify:
    """What ``ci deploy`` requires of every digest: a signature by this key or identity."""

    key: Path | None = None
    identity: str | None = None
    identity_regexp: str | None = None
    issuer: str | None = None
    provenance: bool = True
    sbom: bool = False


@dataclass(frozen=True)
class Environment:
    name: str
    namespace: str
    release: str
    values: tuple[Path, ...]
    timeout: int
    approval: bool
    rollback_on_smoke_failure: bool
    kube_context: str | None = None
    kubeconfig: Path | None = None
    kubeconfig_env: str | None = None
    base_url: str | None = None
    verify: Verify | None = None


@dataclass(frozen=True)
class SmokeCheck:
    name: str
    type: str
    method: str
    expect_status: int
    path: str | None = None
    json: Any = None
    expect_body: str | None = None
    expect_json: dict[str, Any] | None = None
    save: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Smoke:
    deadline: int
    interval: int
    checks: tuple[SmokeCheck, ...]


@dataclass(frozen=True)
class Config:
    """The validated configuration; paths are absolute, resolved against the file's folder."""

    path: Path
    root: Path
    project: str
    registry: Registry
    images: tuple[Image, ...]
    chart: Chart
    environments: dict[str, Environment]
    smoke: Smoke
    #: The file's data with every default filled in, as ``config show`` prints it.
    data: dict[str, Any]

    def environment(self, name: str) -> Environment:
        """The named environment, or a usage error that lists the known ones."""
        try:
            return self.environments[name]
        except KeyError:
            known = ", ".join(self.environments)
            raise ConfigError(
                f"unknown environment '{name}' (expected one of: {known})",
                location=Location(str(self.path)),
            ) from None

    def image(self, name: str) -> Image:
        """The named image, or a usage error that lists the known ones."""
        for image in self.images:
            if image.name == name:
                return image
        known = ", ".join(i.name for i in self.images)
        raise ConfigError(
            f"unknown image '{name}' (expected one of: {known})", location=Location(str(self.path))
        )


# ----------------------------------------------------------------------------- loading


def load(path: Path | str) -> Config:
    """Read, validate and resolve a configuration file; raise ``ConfigError`` on any problem."""
    path = Path(path)
    data, positions = read_layers(path)
    problems = list(validate(data, positions, path.parent))
    if problems:
        raise ConfigInvalid(problems)
    resolved = fill_defaults(copy.deepcopy(data), schema())
    return _build(path, resolved)


def _semantic_problems(data: dict[str, Any]) -> Iterator[tuple[KeyPath, str]]:
    """Rules a JSON Schema cannot express: names that other steps look up must be unique."""
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


def read_layers(path: Path, _seen: tuple[Path, ...] = ()) -> tuple[Any, Positions]:
    """Read a file and, through ``extends:``, the files it builds on, merged into one.

    Why overlays: the local pipeline deploys a staging-like environment with a few changes
    (local images, local cluster, an extra values file); an overlay that names only those keeps
    one source for everything else. Mappings merge key by key; any other value, lists included,
    replaces the one it overrides. Each key keeps the file and line it came from.
    """
    data, lines = read_yaml_with_lines(path)
    positions: Positions = {k: Location(str(path), n) for k, n in lines.items()}
    if not isinstance(data, dict) or "extends" not in data:
        return data, positions
    parent = data.pop("extends")
    where = positions.pop(("extends",))
    if not isinstance(parent, str) or not parent:
        raise ConfigError(
            "extends: expected the path of another configuration file", location=where
        )
    parent_path = path.parent / parent
    if parent_path.resolve() in _seen or parent_path.resolve() == path.resolve():
        raise ConfigError(f"extends: '{parent}' leads back to this file", location=where)
    if not parent_path.is_file():
        raise ConfigError(f"extends: file '{parent}' does not exist", location=where)
    base, base_positions = read_layers(parent_path, (*_seen, path.resolve()))
    if not isinstance(base, dict):
        raise ConfigError(f"extends: '{parent}' is not a mapping", location=where)
    merged = _merge_layers(base, data, base_positions, positions)
    return merged, {**base_positions, **positions}


def _merge_layers(
    base: dict[str, Any], over: dict[str, Any], base_pos: Positions, pos: Positions
) -> dict[str, Any]:
    """Overlay ``over`` on ``base``; forget the base's positions of every replaced value.

    ``pos`` (the overlay's positions) loses the entries of keys set to null, which are removed.
    """

    def forget(sub: KeyPath, value: Any) -> None:
        for stale in [k for k in base_pos if k[: len(sub)] == sub]:
            del base_pos[stale]
        if value is None:
            for gone in [k for k in pos if k[: len(sub)] == sub]:
                del pos[gone]

    return deep_merge(base, over, on_replace=forget)


def deep_merge(
    base: Mapping[str, Any],
    over: Mapping[str, Any],
    *,
    on_replace: Callable[[KeyPath, Any], None] | None = None,
    _here: KeyPath = (),
) -> dict[str, Any]:
    """Overlay ``over`` on ``base`` the way Helm merges values files; neither is changed.

    Mappings merge key by key; any other value, lists included, replaces the one below it;
    ``key: null`` removes the key (Helm's rule for values, and the rule for ``extends:``).
    ``on_replace`` hears the key path and new value of every key replaced or removed.
    """
    out = dict(base)
    for key, value in over.items():
        sub = (*_here, key)
        below = base.get(key)
        if isinstance(value, Mapping) and isinstance(below, Mapping):
            out[key] = deep_merge(below, value, on_replace=on_replace, _here=sub)
            continue
        if on_replace is not None:
            on_replace(sub, value)
        if value is None:
            out.pop(key, None)
        else:
            out[key] = value
    return out


def read_yaml_with_lines(path: Path) -> tuple[Any, dict[KeyPath, int]]:
    """Parse YAML into plain data plus a map from key path to 1-based line number."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError("configuration file not found", location=Location(str(path))) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(
            f"cannot read configuration: {exc}", location=Location(str(path))
        ) from None
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        line = exc.problem_mark.line + 1 if exc.problem_mark else None
        raise ConfigError(
            f"invalid YAML: {exc.problem}", location=Location(str(path), line)
        ) from None
    lines: dict[KeyPath, int] = {(): 1}
    if node is None:
        return None, lines
    return expand_env(_to_data(node, (), lines, path)), lines


_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}|\$\$")


def expand_env(data: Any, env: dict[str, str] | None = None) -> Any:
    """Expand ``${NAME}`` and ``${NAME:-default}`` in string values (``$$`` is a literal ``$``).

    This lets one file serve a laptop, a GitHub runner and the local pipeline: for example a
    base image build argument can be ``${BASE_JRE:-}``, empty (and so left out, keeping the
    Dockerfile's upstream default) unless the local pipeline sets ``BASE_JRE``.
    """
    source = os.environ if env is None else env

    def sub(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        value = source.get(match.group(1), "")
        return value if value else (match.group(2) or "")

    if isinstance(data, str):
        expanded = _ENV_REF.sub(sub, data)
        if expanded != data and _ENV_REF.fullmatch(data) and expanded:
            # A value that is one reference takes the type the text has in YAML,
            # so `insecure: ${FLAG:-false}` is a boolean, not the string "false".
            typed = yaml.safe_load(expanded)
            if isinstance(typed, bool | int | float):
                return typed
        return expanded
    if isinstance(data, dict):
        return {k: expand_env(v, env) for k, v in data.items()}
    if isinstance(data, list):
        return [expand_env(v, env) for v in data]
    return data


def _to_data(node: yaml.Node, here: KeyPath, lines: dict[KeyPath, int], path: Path) -> Any:
    """Turn a composed node into data, recording lines and rejecting duplicate keys."""
    if isinstance(node, yaml.MappingNode):
        out: dict[str, Any] = {}
        for key_node, value_node in node.value:
            key = _scalar(key_node)
            sub = (*here, str(key))
            if str(key) in out:
                raise ConfigError(
                    f"{format_path(sub)}: duplicate key (first given on line {lines[sub]})",
                    location=Location(str(path), key_node.start_mark.line + 1),
                )
            lines[sub] = key_node.start_mark.line + 1
            out[str(key)] = _to_data(value_node, sub, lines, path)
        return out
    if isinstance(node, yaml.SequenceNode):
        items = []
        for i, item in enumerate(node.value):
            lines[(*here, i)] = item.start_mark.line + 1
            items.append(_to_data(item, (*here, i), lines, path))
        return items
    return _scalar(node)


def _scalar(node: yaml.Node) -> Any:
    """Construct one scalar with YAML 1.1 core types, as ``yaml.safe_load`` would."""
    loader = yaml.SafeLoader("")
    try:
        return loader.construct_object(node, deep=True)
    finally:
        loader.dispose()


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
        f"expected one of: {', '.join(map(str, e.schema['enum']))}; got {_show(e.instance)}"
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


_DURATION = re.compile(r"^(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?$")


def seconds(value: int | str) -> int:
    """A schema-valid duration (``600``, ``"10m"``, ``"1h30m"``) in seconds."""
    if isinstance(value, int):
        return value
    match = _DURATION.match(value)
    if not match:
        raise ValueError(f"not a duration: {value!r}")
    h, m, s = (int(g) if g else 0 for g in match.groups())
    return h * 3600 + m * 60 + s


# ----------------------------------------------------------------------------- building


def _build(path: Path, d: dict[str, Any]) -> Config:
    """Turn validated, defaulted data into typed objects with absolute paths."""
    root = path.parent.resolve()
    reg = d["registry"]
    registry = Registry(
        host=reg["host"],
        namespace=reg.get("namespace", ""),
        insecure=reg["insecure"],
        username_env=reg["username_env"],
        password_env=reg["password_env"],
        cache=reg["cache"],
        provenance=reg["provenance"],
        sbom=reg["sbom"],
        sbom_generator=reg["sbom_generator"],
        sbom_generator_base=reg.get("sbom_generator_base"),
        signing=_signing(reg["signing"], root),
        retention=Retention(**reg["retention"]),
    )
    images = tuple(
        Image(
            name=i["name"],
            dockerfile=root / i["dockerfile"],
            context=root / i["context"],
            build_args={k: _arg(v) for k, v in i["build_args"].items() if _arg(v) != ""},
            platforms=tuple(i["platforms"]),
            values_key=i.get("values_key", i["name"]),
            target=i.get("target"),
        )
        for i in d["images"]
    )
    ch = d["chart"]
    chart = Chart(
        path=root / ch["path"],
        kubernetes_version=ch["kubernetes_version"],
        crds=tuple(root / c for c in ch["crds"]),
    )
    chart_name = _chart_name(chart.path)
    envs = {name: _environment(name, e, root, chart_name) for name, e in d["environments"].items()}
    sm = d.get("smoke") or fill_defaults({}, schema()["properties"]["smoke"])
    smoke = Smoke(
        deadline=seconds(sm["deadline"]),
        interval=seconds(sm["interval"]),
        checks=tuple(_check(c) for c in sm["checks"]),
    )
    return Config(
        path=path,
        root=root,
        project=d.get("project", chart_name),
        registry=registry,
        images=images,
        chart=chart,
        environments=envs,
        smoke=smoke,
        data=d,
    )


def _arg(value: Any) -> str:
    """Build args are strings to Docker; YAML booleans become ``true``/``false``."""
    return str(value).lower() if isinstance(value, bool) else str(value)


def _chart_name(chart_dir: Path) -> str:
    """The chart's name from Chart.yaml, used as the default release name."""
    try:
        meta = chart_metadata(chart_dir)
    except ConfigError:
        return chart_dir.name
    return str(meta.get("name") or chart_dir.name)


def _environment(name: str, e: dict[str, Any], root: Path, chart_name: str) -> Environment:
    kube = e.get("kube", {})
    return Environment(
        name=name,
        namespace=e["namespace"],
        release=e.get("release", chart_name),
        values=tuple(root / v for v in e["values"]),
        timeout=seconds(e["timeout"]),
        approval=e["approval"],
        rollback_on_smoke_failure=e["rollback_on_smoke_failure"],
        kube_context=kube.get("context"),
        kubeconfig=root / kube["kubeconfig"] if "kubeconfig" in kube else None,
        kubeconfig_env=kube.get("kubeconfig_env"),
        base_url=e.get("base_url"),
        verify=_verify(e["verify"], root) if "verify" in e else None,
    )


def _signing(s: dict[str, Any], root: Path) -> Signing:
    key = s.get("key")
    return Signing(s["mode"], root / key if key else None, s["key_env"], s["password_env"])


def _verify(v: dict[str, Any], root: Path) -> Verify:
    return Verify(
        key=root / v["key"] if "key" in v else None,
        identity=v.get("identity"),
        identity_regexp=v.get("identity_regexp"),
        issuer=v.get("issuer"),
        provenance=v["provenance"],
        sbom=v["sbom"],
    )


def _check(c: dict[str, Any]) -> SmokeCheck:
    return SmokeCheck(
        name=c["name"],
        type=c["type"],
        method=c["method"],
        expect_status=c["expect_status"],
        path=c.get("path"),
        json=c.get("json"),
        expect_body=c.get("expect_body"),
        expect_json=c.get("expect_json"),
        save=c.get("save", {}),
    )


def dump(cfg: Config, *, as_json: bool = False) -> str:
    """The resolved configuration as text, defaults included."""
    if as_json:
        return json.dumps(cfg.data, indent=2) + "\n"
    return yaml.safe_dump(cfg.data, sort_keys=False, default_flow_style=False)
