"""Find the external tools the steps run, check their versions, and build pinned ones.

Why a package: every step needs helm, kubectl, kubeconform, docker buildx or buildkit, and a
wrong or missing one should stop the pipeline with one line that names the fix. The facts
about each tool (``specs``), finding a compatible one (``discovery``), the ``ci doctor`` report
(``status``) and building the pinned versions (``build``) each live in their own module; the
names the rest of the toolkit uses are all importable from ``ci.tools``.
"""

from __future__ import annotations

from ci.tools.build import (
    BUILD_TIMEOUT,
    InstallResult,
    Progress,
    cache_dir,
    expand_names,
    install,
    staging_replaces,
    wrapper_gomod,
)
from ci.tools.discovery import (
    DEFAULT_HELM_MAJOR,
    GO_FALLBACK,
    PROBE_TIMEOUT,
    SYSTEM_PLUGIN_DIRS,
    Tool,
    cache_root,
    clear_cache,
    docker_plugin_dir,
    find_go,
    helm_major,
    parse_version,
    probe_version,
    project_root,
    read_version,
    require,
    tools_dir,
)
from ci.tools.specs import (
    ALIASES,
    CRD_ALIASES,
    CRDS,
    GO_MINIMUM,
    INSTALL_HINT,
    K8S_VERSION,
    TOOLS,
    CrdSpec,
    ToolSpec,
)
from ci.tools.status import ToolStatus, doctor

__all__ = [
    "ALIASES",
    "BUILD_TIMEOUT",
    "CRDS",
    "CRD_ALIASES",
    "DEFAULT_HELM_MAJOR",
    "GO_FALLBACK",
    "GO_MINIMUM",
    "INSTALL_HINT",
    "K8S_VERSION",
    "PROBE_TIMEOUT",
    "SYSTEM_PLUGIN_DIRS",
    "TOOLS",
    "CrdSpec",
    "InstallResult",
    "Progress",
    "Tool",
    "ToolSpec",
    "ToolStatus",
    "cache_dir",
    "cache_root",
    "clear_cache",
    "docker_plugin_dir",
    "doctor",
    "expand_names",
    "find_go",
    "helm_major",
    "install",
    "parse_version",
    "probe_version",
    "project_root",
    "read_version",
    "require",
    "staging_replaces",
    "tools_dir",
    "wrapper_gomod",
]
