"""Inputs checked before anything talks to the cluster: digests exist, the chart renders and
validates with exactly this run's values, ``--set`` pairs and digests.

Why before: a digest missing from its registry or a value the chart's schema rejects would
otherwise be found by Helm mid-upgrade (or by a pod that never pulls, after the whole timeout).
Found here, they stop the deploy with one line and no revision.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence

from ci import helm as helmlib
from ci import proc
from ci.config import Config
from ci.deploy.plan import Plan, set_args, string_args
from ci.errors import ConfigError, DeployError
from ci.manifests import ERROR, Issue, Manifest, parse_manifests
from ci.registry import Client, split_reference
from ci.release import ImageRef

#: A registry client for a host (the configured registry's own client for its host).
ClientFor = Callable[[str], Client]
#: Kubernetes schema validation of rendered objects (``ci.validate``, given by the command).
Validator = Callable[[Sequence[Manifest]], list[Issue]]

_SCHEMA_LINE = re.compile(r"^-\s*at\s+'(?P<pointer>[^']*)':\s*(?P<message>.+)$")
_EXTRA_PROPS = re.compile(r"additional propert(?:y|ies)\s+'([^']+)'")


def missing_digests(images: Iterable[ImageRef], client_for: ClientFor) -> list[str]:
    """Every image whose digest its registry does not have (one manifest HEAD each)."""
    missing = []
    for image in images:
        host, repo, _ = split_reference(image.ref)
        found = client_for(host).digest(repo, image.digest)
        if found is None:
            missing.append(f"{image.name} {image.ref}")
    return missing


def check_digests(images: Iterable[ImageRef], client_for: ClientFor) -> None:
    """Refuse (exit 1) when a digest to deploy is not in its registry."""
    missing = missing_digests(images, client_for)
    if missing:
        more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
        raise DeployError(
            f"image {missing[0]}: digest not found in its registry{more}; refusing before "
            "Helm runs",
            detail="\n".join(missing),
        )


def schema_key(helm_error: str) -> tuple[str, str] | None:
    """``("backend.replicas", "additional property not allowed")`` from Helm's schema error.

    Helm reports ``- at '/backend': additional properties 'replicas' not allowed``; the key a
    person has to fix is the JSON pointer's path, plus the unknown property when there is one.
    """
    for raw in helm_error.splitlines():
        m = _SCHEMA_LINE.match(raw.strip())
        if not m:
            continue
        parts = [p for p in m.group("pointer").split("/") if p]
        message = m.group("message").strip()
        extra = _EXTRA_PROPS.search(message)
        if extra:
            names = [n.strip() for n in extra.group(1).split(",")]
            return ".".join([*parts, names[0]]), "not a key the chart's values schema allows"
        return ".".join(parts) or "(values)", message
    return None


def render(cfg: Config, helm: helmlib.Helm, plan: Plan) -> str:
    """``helm template`` offline with this run's values, ``--set`` pairs and digests."""
    argv = helmlib.template_argv(
        helm,
        plan.chart_dir,
        release=plan.env.release,
        namespace=plan.env.namespace,
        values=plan.values,
        set_values=set_args(plan),
        set_strings=string_args(plan),
        kube_version=cfg.chart.kubernetes_version,
        include_crds=False,
    )
    result = proc.run(argv, timeout=120, check=False, what="helm template")
    if result.ok:
        return result.stdout
    found = schema_key(result.stderr)
    if found:
        key, message = found
        raise ConfigError(f"environment '{plan.env.name}': values: {key}: {message}")
    reason = helmlib.error_message(result.stderr, limit=300, default="helm template failed")
    raise ConfigError(f"environment '{plan.env.name}': the chart does not render: {reason}")


def check_manifests(plan: Plan, manifests: Sequence[Manifest], validator: Validator) -> None:
    """Kubernetes schemas of the rendered objects; the first error is the one line."""
    errors = [i for i in validator(manifests) if i.severity == ERROR]
    if errors:
        first = errors[0]
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        raise ConfigError(
            f"environment '{plan.env.name}': {first.manifest.ref}: {first.message}{more}",
            detail="\n".join(f"{i.manifest.ref}: {i.message}" for i in errors),
        )


def check(
    cfg: Config,
    helm: helmlib.Helm,
    plan: Plan,
    client_for: ClientFor,
    validator: Validator | None = None,
) -> str:
    """Digests, render and (with a ``validator``) validation; returns the rendered manifests."""
    check_digests(plan.images, client_for)
    text = render(cfg, helm, plan)
    if validator is not None:
        check_manifests(plan, parse_manifests(text), validator)
    return text


def anonymous_clients(cfg: Config) -> ClientFor:
    """Registry clients without credentials (the command passes the configured ones)."""
    made: dict[str, Client] = {}

    def client_for(host: str) -> Client:
        if host not in made:
            own = host == cfg.registry.host
            made[host] = Client(host, insecure=cfg.registry.insecure and own, retries=1)
        return made[host]

    return client_for
