"""The validated configuration as typed objects: what every step reads from ``ci.yaml``.

Paths are absolute (resolved against the file's folder) and durations are seconds, so a step
never re-interprets the file; ``Config.data`` keeps the defaulted data ``config show`` prints.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ci.errors import ConfigError, Location


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
class Build:
    """``build``: which builder runs, and whether base image digests must resolve."""

    builder: str = "auto"
    require_base_digests: bool = False


@dataclass(frozen=True)
class TagRule:
    """One ``tags.rules`` entry: which git fact becomes a tag, and how it is written.

    Every option sits on one type so a rule reads like the file; the schema's semantic check
    refuses an option that its ``type`` does not use.
    """

    type: str
    prefix: str = ""
    suffix: str = ""
    length: int | None = None
    pattern: str = ""
    major_zero: bool = False
    include_versions: bool = False
    value: str = ""
    enable: bool | str = True


@dataclass(frozen=True)
class Tags:
    """``tags``: the rules every image follows (unless it has its own), and the default branch."""

    default_branch: str = "main"
    rules: tuple[TagRule, ...] | None = None


@dataclass(frozen=True)
class Image:
    name: str
    dockerfile: Path
    context: Path
    build_args: dict[str, str]
    platforms: tuple[str, ...]
    values_key: str
    target: str | None = None
    #: ``images[].tags``: this image's own rules, in place of ``tags.rules``.
    tag_rules: tuple[TagRule, ...] | None = None


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
class Endpoint:
    """An observability API: its URL, else an in-cluster Service through the API server's proxy.

    ``service`` is ``NAMESPACE/NAME:PORT``; ``kind`` says which log store answers (LogsQL for
    ``victorialogs``, LogQL for ``loki``).
    """

    url: str | None = None
    service: str | None = None
    token_env: str | None = None
    kind: str = ""


@dataclass(frozen=True)
class Observability:
    """Where the metrics, trace and logs checks and ``ci observe`` reach their APIs."""

    prometheus: Endpoint = field(
        default_factory=lambda: Endpoint(service="monitoring/prometheus:9090")
    )
    jaeger: Endpoint = field(default_factory=lambda: Endpoint(service="monitoring/jaeger:16686"))
    logs: Endpoint = field(
        default_factory=lambda: Endpoint(
            service="monitoring/victorialogs:9428", kind="victorialogs"
        )
    )


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
    #: ``deploy.lease_wait``, ``deploy.interrupt_grace`` (seconds), ``deploy.max_restarts``.
    lease_wait: int = 600
    interrupt_grace: int = 60
    max_restarts: int = 3
    observability: Observability = field(default_factory=Observability)
    #: The environment whose release manifests this one deploys, and the branch they must be on.
    promote_from: str | None = None
    default_branch: str = "main"


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
    #: metrics (PromQL) and logs (LogsQL/LogQL) checks
    query: str | None = None
    min: float | None = None
    max: float | None = None
    #: trace and logs checks: the HTTP check whose trace id ``{trace_id}`` is (default: the last)
    request: str | None = None
    expect_spans: tuple[dict[str, str], ...] = ()
    since: int = 900
    #: the environments this check runs in; empty: every environment
    environments: tuple[str, ...] = ()

    def runs_in(self, env: str) -> bool:
        """Observability checks need an environment's Prometheus, Jaeger and log store, which
        not every environment has (or lets the pipeline reach): they can be limited."""
        return not self.environments or env in self.environments


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
    build: Build = field(default_factory=Build)
    tags: Tags = field(default_factory=Tags)

    def tag_rules(self, image: Image) -> tuple[TagRule, ...] | None:
        """The image's own rules, else the file's; None means the schema's defaults."""
        return image.tag_rules if image.tag_rules is not None else self.tags.rules

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
