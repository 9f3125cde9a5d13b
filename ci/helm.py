"""Helm command lines for Helm 3 and Helm 4, with every flag difference in one place.

Why: the pipeline supports both majors, and Helm 4 renamed or reshaped flags that deploys
depend on (``--atomic`` became ``--rollback-on-failure``, ``--force`` became
``--force-replace``, ``--wait`` takes a strategy, server-side apply is new). The functions here
are pure: they take a ``Helm`` (path + major) and return an argv tuple, so unit tests check
them without running anything and ``ci.proc.run`` executes them.
"""

from __future__ import annotations

import datetime
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from ci.errors import ToolError

Argv = tuple[str, ...]

SUPPORTED_MAJORS = (3, 4)
#: The last day of Helm 3's security fixes (helm.sh's support policy for the previous major).
HELM3_SECURITY_SUPPORT_ENDS = datetime.date(2027, 2, 10)


def support_warning(major: int, today: datetime.date | None = None) -> str | None:
    """What ``ci doctor`` says about the selected major: Helm 3 is kept for teams that still need
    it, but its security support ends, so choosing it should never go unnoticed."""
    if major != 3:
        return None
    day = HELM3_SECURITY_SUPPORT_ENDS.isoformat()
    ended = (today or datetime.date.today()) > HELM3_SECURITY_SUPPORT_ENDS
    when = f"ended on {day}" if ended else f"ends on {day}"
    return (
        f"Helm 3 is selected (CI_HELM_MAJOR=3 or --helm-major 3): its security support {when}; "
        "Helm 4 is the default, unset CI_HELM_MAJOR to use it"
    )


_VERSION = re.compile(r"v?(\d+)\.(\d+)\.(\d+)")


@dataclass(frozen=True)
class Helm:
    """One Helm binary: where it is and which major it speaks."""

    path: str
    version: str

    @property
    def major(self) -> int:
        return parse_version(self.version)[0]


def parse_version(text: str) -> tuple[int, int, int]:
    """``(major, minor, patch)`` from ``helm version`` output such as ``v3.22.0+g1a2b3c``."""
    match = _VERSION.search(text)
    if match is None:
        raise ToolError(f"cannot read a Helm version from {text.strip()!r}")
    major, minor, patch = (int(g) for g in match.groups())
    return major, minor, patch


def find(major: int | None = None) -> Helm:
    """The pinned (or installed) Helm of the wanted major (default: ``CI_HELM_MAJOR``, else 4)."""
    from ci import tools

    tool = tools.require("helm", major=major)  # runs and checks `helm version` already
    helm = Helm(str(tool.path), tool.version)
    if helm.major not in SUPPORTED_MAJORS:
        raise ToolError(f"{tool.path}: Helm {tool.version} is not supported (expected 3 or 4)")
    return helm


def error_message(output: str, *, limit: int = 400, default: str = "no output") -> str:
    """Helm's own error in one line: from its ``Error:`` line on.

    Helm prints one ``Error:`` line last; a schema error continues on the lines after it, so
    those are joined on. Without one, the last line of output stands in; without output,
    ``default``.
    """
    lines = [ln.strip() for ln in output.splitlines() if ln.strip()]
    for i, line in enumerate(lines):
        if line.startswith("Error:"):
            return " ".join([line.removeprefix("Error:").strip(), *lines[i + 1 :]])[:limit]
    return lines[-1][:limit] if lines else default


# ----------------------------------------------------------------------------- common flags


def _values_flags(values: Iterable[Path | str]) -> Argv:
    return tuple(arg for v in values for arg in ("--values", str(v)))


def escape_set(value: str) -> str:
    """Escape a value for ``--set``/``--set-string``: ``,`` separates pairs, ``\\`` escapes."""
    return value.replace("\\", "\\\\").replace(",", "\\,")


def _set_flags(
    set_values: Mapping[str, str] | Sequence[str], set_strings: Mapping[str, str] | None = None
) -> Argv:
    """``--set`` for each ``key=value`` (Helm infers the type) and ``--set-string`` for each
    value that must stay a string whatever it looks like: a tag or SHA made only of digits
    would otherwise reach the chart as a number and fail its schema.
    """
    pairs = (
        [f"{k}={v}" for k, v in set_values.items()]
        if isinstance(set_values, Mapping)
        else list(set_values)
    )
    strings = [f"{k}={escape_set(v)}" for k, v in (set_strings or {}).items()]
    return (
        *(arg for p in pairs for arg in ("--set", p)),
        *(arg for p in strings for arg in ("--set-string", p)),
    )


def _scope_flags(namespace: str | None, kube_context: str | None, kubeconfig: str | None) -> Argv:
    out: list[str] = []
    if namespace:
        out += ["--namespace", namespace]
    if kube_context:
        out += ["--kube-context", kube_context]
    if kubeconfig:
        out += ["--kubeconfig", kubeconfig]
    return tuple(out)


# ----------------------------------------------------------------------------- chart checks


def lint_argv(
    helm: Helm,
    chart: Path | str,
    values: Iterable[Path | str] = (),
    *,
    strict: bool = True,
    kube_version: str | None = None,
    set_values: Mapping[str, str] | Sequence[str] = (),
    set_strings: Mapping[str, str] | None = None,
) -> Argv:
    """``helm lint`` (values.schema.json is always applied by lint in both majors)."""
    argv = [
        helm.path,
        "lint",
        str(chart),
        *_values_flags(values),
        *_set_flags(set_values, set_strings),
    ]
    if strict:
        argv.append("--strict")
    if kube_version:
        argv += ["--kube-version", kube_version]
    return tuple(argv)


def template_argv(
    helm: Helm,
    chart: Path | str,
    *,
    release: str,
    namespace: str,
    values: Iterable[Path | str] = (),
    kube_version: str | None = None,
    api_versions: Iterable[str] = (),
    output_dir: Path | str | None = None,
    include_crds: bool = True,
    set_values: Mapping[str, str] | Sequence[str] = (),
    set_strings: Mapping[str, str] | None = None,
) -> Argv:
    """``helm template``: render offline, as the release would be installed in ``namespace``.

    ``api_versions`` tells the chart which optional APIs (ServiceMonitor, HTTPRoute) the
    cluster offers, since ``.Capabilities`` is otherwise only the built-in set offline.
    """
    argv = [
        helm.path,
        "template",
        release,
        str(chart),
        "--namespace",
        namespace,
        *_values_flags(values),
        *_set_flags(set_values, set_strings),
    ]
    if kube_version:
        argv += ["--kube-version", kube_version]
    for api in api_versions:
        argv += ["--api-versions", api]
    if include_crds:
        argv.append("--include-crds")
    if output_dir is not None:
        argv += ["--output-dir", str(output_dir)]
    return tuple(argv)


# ----------------------------------------------------------------------------- releases


def _wait_flags(helm: Helm, wait: bool) -> Argv:
    """Helm 4's ``--wait`` takes a strategy: ``watcher`` waits like Helm 3's ``--wait``."""
    if not wait:
        return ()
    return ("--wait=watcher",) if helm.major >= 4 else ("--wait",)


def upgrade_argv(
    helm: Helm,
    release: str,
    chart: Path | str,
    *,
    namespace: str,
    values: Iterable[Path | str] = (),
    set_values: Mapping[str, str] | Sequence[str] = (),
    set_strings: Mapping[str, str] | None = None,
    install: bool = True,
    wait: bool = True,
    wait_for_jobs: bool = True,
    timeout: str | None = None,
    rollback_on_failure: bool = False,
    server_side: bool | None = None,
    force_conflicts: bool = False,
    create_namespace: bool = False,
    history_max: int | None = None,
    description: str | None = None,
    kube_context: str | None = None,
    kubeconfig: str | None = None,
) -> Argv:
    """``helm upgrade [--install]`` with the flags spelled the way ``helm`` expects.

    ``rollback_on_failure`` is ``--atomic`` in Helm 3 and ``--rollback-on-failure`` in Helm 4.
    ``server_side`` and ``force_conflicts`` exist only in Helm 4; asking for server-side
    apply from Helm 3 is an error rather than a silent client-side apply.
    """
    argv = [helm.path, "upgrade", release, str(chart)]
    if install:
        argv.append("--install")
    argv += _scope_flags(namespace, kube_context, kubeconfig)
    argv += [*_values_flags(values), *_set_flags(set_values, set_strings)]
    argv += _wait_flags(helm, wait)
    if wait and wait_for_jobs:
        argv.append("--wait-for-jobs")
    if timeout:
        argv += ["--timeout", timeout]
    if rollback_on_failure:
        argv.append("--rollback-on-failure" if helm.major >= 4 else "--atomic")
    argv += _server_side_flags(helm, server_side, force_conflicts)
    if create_namespace:
        argv.append("--create-namespace")
    if history_max is not None:
        argv += ["--history-max", str(history_max)]
    if description:
        argv += ["--description", description]
    return tuple(argv)


def _server_side_flags(helm: Helm, server_side: bool | None, force_conflicts: bool) -> Argv:
    if server_side is None and not force_conflicts:
        return ()
    if helm.major < 4:
        raise ToolError(
            f"{helm.path}: server-side apply needs Helm 4 (this is Helm {helm.version})"
        )
    out: list[str] = []
    if server_side is not None:
        out.append(f"--server-side={'true' if server_side else 'false'}")
    if force_conflicts:
        out.append("--force-conflicts")
    return tuple(out)


def rollback_argv(
    helm: Helm,
    release: str,
    revision: int | None = None,
    *,
    namespace: str,
    wait: bool = True,
    timeout: str | None = None,
    kube_context: str | None = None,
    kubeconfig: str | None = None,
) -> Argv:
    """``helm rollback`` to ``revision`` (the previous one when None)."""
    argv = [helm.path, "rollback", release]
    if revision is not None:
        argv.append(str(revision))
    argv += _scope_flags(namespace, kube_context, kubeconfig)
    argv += _wait_flags(helm, wait)
    if timeout:
        argv += ["--timeout", timeout]
    return tuple(argv)


def helm_test_argv(
    helm: Helm,
    release: str,
    *,
    namespace: str,
    timeout: str | None = None,
    logs: bool = True,
    kube_context: str | None = None,
    kubeconfig: str | None = None,
) -> Argv:
    """``helm test`` showing the test pods' logs."""
    argv = [helm.path, "test", release, *_scope_flags(namespace, kube_context, kubeconfig)]
    if timeout:
        argv += ["--timeout", timeout]
    if logs:
        argv.append("--logs")
    return tuple(argv)


def status_argv(
    helm: Helm,
    release: str,
    *,
    namespace: str,
    kube_context: str | None = None,
    kubeconfig: str | None = None,
) -> Argv:
    """``helm status -o json``."""
    scope = _scope_flags(namespace, kube_context, kubeconfig)
    return (helm.path, "status", release, *scope, "--output", "json")


def history_argv(
    helm: Helm,
    release: str,
    *,
    namespace: str,
    max_revisions: int = 20,
    kube_context: str | None = None,
    kubeconfig: str | None = None,
) -> Argv:
    """``helm history -o json``."""
    scope = _scope_flags(namespace, kube_context, kubeconfig)
    return (helm.path, "history", release, *scope, "--max", str(max_revisions), "--output", "json")


def uninstall_argv(
    helm: Helm,
    release: str,
    *,
    namespace: str,
    wait: bool = True,
    kube_context: str | None = None,
    kubeconfig: str | None = None,
) -> Argv:
    """``helm uninstall`` (Helm 4's ``--wait`` takes a strategy here too)."""
    argv = [helm.path, "uninstall", release, *_scope_flags(namespace, kube_context, kubeconfig)]
    argv += _wait_flags(helm, wait)
    return tuple(argv)


def get_manifest_argv(
    helm: Helm,
    release: str,
    *,
    namespace: str,
    revision: int | None = None,
    kube_context: str | None = None,
    kubeconfig: str | None = None,
) -> Argv:
    """``helm get manifest``: the live release's objects (hooks excluded), for a diff."""
    argv = [
        helm.path,
        "get",
        "manifest",
        release,
        *_scope_flags(namespace, kube_context, kubeconfig),
    ]
    if revision is not None:
        argv += ["--revision", str(revision)]
    return tuple(argv)


def get_values_argv(
    helm: Helm,
    release: str,
    *,
    namespace: str,
    kube_context: str | None = None,
    kubeconfig: str | None = None,
) -> Argv:
    """``helm get values -o json``: the values the live release was deployed with (those set
    by files and flags, not the chart's defaults), e.g. its ``deployInfo.gitSha``."""
    scope = _scope_flags(namespace, kube_context, kubeconfig)
    return (helm.path, "get", "values", release, *scope, "--output", "json")
