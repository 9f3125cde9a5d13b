"""Turn validated, defaulted configuration data into the typed ``Config``."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from ci.config.model import (
    Build,
    Chart,
    Config,
    Endpoint,
    Environment,
    Image,
    Observability,
    Registry,
    Retention,
    Signing,
    Smoke,
    SmokeCheck,
    TagRule,
    Tags,
    Verify,
)
from ci.config.validation import fill_defaults, schema
from ci.errors import ConfigError
from ci.manifests import chart_metadata

_DURATION = re.compile(r"^(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?$")

#: Unless ``deploy.lease_wait`` says otherwise, a deploy waits for the one holding the
#: environment's Lease as long as that one's Helm may wait (``timeout``) plus this margin: its
#: recovery, rendering and drift checks before Helm starts, and the handover of the Lease.
LEASE_MARGIN = 300


def seconds(value: int | str) -> int:
    """A schema-valid duration (``600``, ``"10m"``, ``"1h30m"``) in seconds."""
    if isinstance(value, int):
        return value
    match = _DURATION.match(value)
    if not match:
        raise ValueError(f"not a duration: {value!r}")
    h, m, s = (int(g) if g else 0 for g in match.groups())
    return h * 3600 + m * 60 + s


def build_config(path: Path, d: dict[str, Any]) -> Config:
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
            tag_rules=_tag_rules(i["tags"]) if "tags" in i else None,
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
        build=Build(**d.get("build", {})),
        tags=_tags(d.get("tags") or fill_defaults({}, schema()["properties"]["tags"])),
    )


def _tags(t: dict[str, Any]) -> Tags:
    return Tags(default_branch=t["default_branch"], rules=_tag_rules(t["rules"]))


def _tag_rules(rules: list[dict[str, Any]]) -> tuple[TagRule, ...]:
    """Rules as typed objects; the keys are the schema's, which mirror ``TagRule``."""
    return tuple(TagRule(**r) for r in rules)


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
        lease_wait=_lease_wait(e),
        interrupt_grace=seconds(e.get("deploy", {}).get("interrupt_grace", 60)),
        max_restarts=int(e.get("deploy", {}).get("max_restarts", 3)),
        observability=_observability(e.get("observability")),
        promote_from=e.get("promote_from"),
        default_branch=e.get("default_branch", "main"),
    )


def _lease_wait(e: dict[str, Any]) -> int:
    """``deploy.lease_wait``, else ``timeout`` plus ``LEASE_MARGIN``: the workflows no longer
    queue deploys of one environment, so the Lease is what makes a deploy wait for the one in
    progress, and it must wait long enough for that one to finish."""
    given = e.get("deploy", {}).get("lease_wait")
    return seconds(given) if given is not None else seconds(e["timeout"]) + LEASE_MARGIN


def _observability(o: dict[str, Any] | None) -> Observability:
    """The endpoints; those left out take the schema's defaults (the local cluster's Services)."""
    props = schema()["properties"]["environments"]["additionalProperties"]["properties"]
    o = fill_defaults(dict(o or {}), props["observability"])
    return Observability(**{name: Endpoint(**o[name]) for name in ("prometheus", "jaeger", "logs")})


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
        query=c.get("query"),
        min=c.get("min"),
        max=c.get("max"),
        request=c.get("request"),
        expect_spans=tuple(c.get("expect_spans", ())),
        since=seconds(c.get("since", 900)),
        environments=tuple(c.get("environments", ())),
    )
