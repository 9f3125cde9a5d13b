"""What each pinned tool is: its module, version, minimum, version output and build flags.

Why specs as data: discovery, ``ci doctor`` and the build all need the same facts about a tool
(the names it goes by, how to read its version, the oldest one that works, how ``go build``
stamps its version), so each tool is described once here and every part reads that record.
"""

from __future__ import annotations

from dataclasses import dataclass

#: The make target that installs the pinned tools; named in every "missing" message.
INSTALL_HINT = "run `make tools`"

#: Go toolchain needed to build the pinned versions (the newest ``go`` directive among them).
GO_MINIMUM = "1.26.8"

#: A version as tools print it (``v1.34.4``, ``0.17``); group 1 is it without the ``v``.
SEMVER = r"v?(\d+\.\d+(?:\.\d+)?)"


@dataclass(frozen=True)
class ToolSpec:
    """How to recognise, check and build one tool.

    ``binary`` is the file name in the project-local folder; ``path_names`` are the names
    looked up on PATH (helm 3 and helm 4 are both called ``helm`` there); ``built_name`` is
    what ``go build`` calls the output.
    """

    name: str
    module: str
    package: str
    version: str
    minimum: str
    version_args: tuple[str, ...]
    version_regex: str
    binary: str
    path_names: tuple[str, ...]
    built_name: str
    major: int | None = None
    ldflags: tuple[str, ...] = ()
    docker_plugin: bool = False
    #: Build through a wrapper module with ``replace`` lines (k8s.io/kubernetes staging modules).
    staging_replaces: bool = False
    #: Build inside the downloaded module: ``go install pkg@version`` refuses modules whose
    #: go.mod has ``replace`` or ``exclude`` directives (buildkit has excludes).
    from_source: bool = False
    #: The version the tool prints, where it differs from the module's (Prometheus 3.16.0 is
    #: module v0.316.0).
    reports: str | None = None

    @property
    def bare_version(self) -> str:
        return self.reports or self.version.removeprefix("v")


def _x(var: str, value: str) -> str:
    return f"-X {var}={value}"


K8S_VERSION = "v1.34.4"
_K8S_LD = tuple(
    _x(f"{pkg}.{key}", value)
    for pkg in ("k8s.io/component-base/version", "k8s.io/client-go/pkg/version")
    for key, value in (
        ("gitVersion", K8S_VERSION),
        ("gitMajor", "1"),
        ("gitMinor", K8S_VERSION.split(".")[1]),
        ("gitTreeState", "clean"),
        ("buildDate", "1970-01-01T00:00:00Z"),
    )
)
_BUILDKIT_VERSION = "v0.34.2"
_PROMETHEUS_MODULE = "v0.316.0"
_PROMETHEUS_VERSION = "3.16.0"
_POSTGRES_EXPORTER_VERSION = "v0.17.1"
_BUILDKIT_LD = (
    _x("github.com/moby/buildkit/version.Version", _BUILDKIT_VERSION),
    _x("github.com/moby/buildkit/version.Package", "github.com/moby/buildkit"),
)


def _helm(major: int, version: str, minimum: str, kube_minor: str) -> ToolSpec:
    pkg = f"helm.sh/helm/v{major}"
    ld = [_x(f"{pkg}/internal/version.version", version)]
    ld.append(_x(f"{pkg}/internal/version.gitTreeState", "clean"))
    if major == 3:  # helm 3 takes its default Kubernetes version from ldflags too
        for var in ("pkg/lint/rules", "pkg/chartutil"):
            ld += [_x(f"{pkg}/{var}.k8sVersionMajor", "1")]
            ld += [_x(f"{pkg}/{var}.k8sVersionMinor", kube_minor)]
    return ToolSpec(
        name=f"helm{major}",
        module=pkg,
        package=f"{pkg}/cmd/helm",
        version=version,
        minimum=minimum,
        version_args=("version", "--short"),
        version_regex=r"^" + SEMVER,
        binary=f"helm{major}",
        path_names=("helm",),
        built_name="helm",
        major=major,
        ldflags=tuple(ld),
    )


TOOLS: dict[str, ToolSpec] = {
    spec.name: spec
    for spec in (
        _helm(3, "v3.22.0", "3.14", kube_minor="37"),
        _helm(4, "v4.3.1", "4.0", kube_minor="37"),
        ToolSpec(
            name="kubectl",
            module="k8s.io/kubernetes",
            package="k8s.io/kubernetes/cmd/kubectl",
            version=K8S_VERSION,
            minimum="1.33",  # the cluster is 1.34; kubectl supports one minor of skew
            version_args=("version", "--client"),
            version_regex=r'Client Version: (?:version\.Info\{.*?GitVersion:")?' + SEMVER,
            binary="kubectl",
            path_names=("kubectl",),
            built_name="kubectl",
            ldflags=_K8S_LD,
            staging_replaces=True,
        ),
        ToolSpec(
            name="kubeconform",
            module="github.com/yannh/kubeconform",
            package="github.com/yannh/kubeconform/cmd/kubeconform",
            version="v0.8.0",
            minimum="0.6",
            version_args=("-v",),
            version_regex=r"^" + SEMVER,
            binary="kubeconform",
            path_names=("kubeconform",),
            built_name="kubeconform",
            ldflags=(_x("main.version", "v0.8.0"),),
        ),
        ToolSpec(
            name="actionlint",
            module="github.com/rhysd/actionlint",
            package="github.com/rhysd/actionlint/cmd/actionlint",
            version="v1.7.12",
            minimum="1.7",
            version_args=("-version",),
            version_regex=r"^" + SEMVER,
            binary="actionlint",
            path_names=("actionlint",),
            built_name="actionlint",
        ),
        ToolSpec(
            name="buildx",
            module="github.com/docker/buildx",
            package="github.com/docker/buildx/cmd/buildx",
            version="v0.38.2",
            minimum="0.17",
            version_args=("version",),
            version_regex=r"buildx\S*\s+" + SEMVER,
            binary="docker-buildx",
            path_names=("docker-buildx",),
            built_name="buildx",
            ldflags=(
                _x("github.com/docker/buildx/version.Version", "v0.38.2"),
                _x("github.com/docker/buildx/version.Package", "github.com/docker/buildx"),
            ),
            docker_plugin=True,
        ),
        ToolSpec(
            name="buildkitd",
            module="github.com/moby/buildkit",
            package="github.com/moby/buildkit/cmd/buildkitd",
            version=_BUILDKIT_VERSION,
            minimum="0.13",
            version_args=("--version",),
            version_regex=r"buildkit\s+" + SEMVER,
            binary="buildkitd",
            path_names=("buildkitd",),
            built_name="buildkitd",
            ldflags=_BUILDKIT_LD,
            from_source=True,
        ),
        ToolSpec(
            name="cosign",
            module="github.com/sigstore/cosign/v2",
            package="github.com/sigstore/cosign/v2/cmd/cosign",
            version="v2.6.5",
            minimum="2.2",
            version_args=("version", "--json"),
            version_regex=r'"gitVersion":\s*"' + SEMVER,
            binary="cosign",
            path_names=("cosign",),
            built_name="cosign",
            ldflags=(_x("sigs.k8s.io/release-utils/version.gitVersion", "v2.6.5"),),
        ),
        ToolSpec(
            name="syft",
            module="github.com/anchore/syft",
            package="github.com/anchore/syft/cmd/syft",
            version="v1.57.1",
            minimum="1.0",
            version_args=("version",),
            version_regex=r"Version:\s+" + SEMVER,
            binary="syft",
            path_names=("syft",),
            built_name="syft",
            ldflags=(_x("main.version", "1.57.1"),),
        ),
        # The module's v0.3XX.Y is Prometheus 3.XX.Y: the same pin as the local cluster's
        # Prometheus (hack/cluster/versions.sh), so rules are checked by the parser that runs them.
        ToolSpec(
            name="promtool",
            module="github.com/prometheus/prometheus",
            package="github.com/prometheus/prometheus/cmd/promtool",
            version=_PROMETHEUS_MODULE,
            minimum="3.0",
            version_args=("--version",),
            version_regex=r"promtool, version " + SEMVER,
            binary="promtool",
            path_names=("promtool",),
            built_name="promtool",
            reports=_PROMETHEUS_VERSION,
            ldflags=tuple(
                _x(f"github.com/prometheus/common/version.{key}", value)
                for key, value in (
                    ("Version", _PROMETHEUS_VERSION),
                    ("Revision", "release"),
                    ("Branch", "release"),
                )
            ),
        ),
        # The chart's PostgreSQL metrics sidecar (hack/cluster/images/postgres-exporter): built
        # here once, so the image and the tests use the same pinned binary.
        ToolSpec(
            name="postgres_exporter",
            module="github.com/prometheus-community/postgres_exporter",
            package="github.com/prometheus-community/postgres_exporter/cmd/postgres_exporter",
            version=_POSTGRES_EXPORTER_VERSION,
            minimum="0.15",
            version_args=("--version",),
            version_regex=r"postgres_exporter, version " + SEMVER,
            binary="postgres_exporter",
            path_names=("postgres_exporter",),
            built_name="postgres_exporter",
            # ``go install pkg@version`` asks the proxy for the module's version list (for its
            # deprecation notice), which the proxy refuses for this module; a build inside the
            # downloaded module needs only the pinned version.
            from_source=True,
            ldflags=tuple(
                _x(f"github.com/prometheus/common/version.{key}", value)
                for key, value in (
                    ("Version", _POSTGRES_EXPORTER_VERSION.removeprefix("v")),
                    ("Revision", "release"),
                    ("Branch", "release"),
                )
            ),
        ),
    )
}

#: Names ``install`` accepts besides the tool names.
ALIASES: dict[str, tuple[str, ...]] = {
    "helm": ("helm3", "helm4"),
    "buildkit": ("buildkitd",),
    "docker-buildx": ("buildx",),
}


@dataclass(frozen=True)
class CrdSpec:
    """Upstream CustomResourceDefinitions taken from a Go module, kept as JSON Schemas.

    A data artifact, not a binary: ``ci tools install`` downloads ``module@version`` (the
    same pin as the local cluster, hack/cluster/versions.sh), converts the CRDs in ``folder``
    and caches the schemas beside the built tools, so ``ci chart validate`` needs no Go and
    no network. ``group`` is the API group the CRDs define: how a kind finds its set.
    """

    name: str
    module: str
    version: str
    folder: str
    group: str


#: The CRD sets ``ci chart validate`` checks custom resources against, by name.
CRDS: dict[str, CrdSpec] = {
    spec.name: spec
    for spec in (
        # Gateway API's standard channel (HTTPRoute, Gateway, GRPCRoute, ...).
        CrdSpec(
            name="gateway-api-crds",
            module="sigs.k8s.io/gateway-api",
            version="v1.4.1",
            folder="config/crd/standard",
            group="gateway.networking.k8s.io",
        ),
        # prometheus-operator's monitoring CRDs (ServiceMonitor, PodMonitor, PrometheusRule, ...).
        CrdSpec(
            name="monitoring-crds",
            module="github.com/prometheus-operator/prometheus-operator",
            version="v0.85.0",
            folder="example/prometheus-operator-crd",
            group="monitoring.coreos.com",
        ),
    )
}

#: ``ci tools install crds`` installs every CRD set.
CRD_ALIASES: dict[str, tuple[str, ...]] = {"crds": tuple(CRDS)}
