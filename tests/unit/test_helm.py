"""Helm argv building for both majors: the flag differences live in ci.helm only."""

from __future__ import annotations

import pytest

from ci import helm
from ci.errors import ToolError

H3 = helm.Helm("/bin/helm3", "3.22.0")
H4 = helm.Helm("/bin/helm4", "v4.3.1")


@pytest.mark.parametrize(
    ("text", "expected"),
    [("v3.22.0+g1a2b3c", (3, 22, 0)), ("4.3.1", (4, 3, 1)), ("version v4.0.0-rc.1", (4, 0, 0))],
)
def test_parse_version(text: str, expected: tuple[int, int, int]) -> None:
    assert helm.parse_version(text) == expected


def test_parse_version_rejects_garbage() -> None:
    with pytest.raises(ToolError, match="cannot read a Helm version"):
        helm.parse_version("Error: unknown command")


def test_major_from_version() -> None:
    assert (H3.major, H4.major) == (3, 4)


def test_lint_argv_strict_with_values_and_kube_version() -> None:
    argv = helm.lint_argv(H3, "charts/app", ["a.yaml", "b.yaml"], kube_version="1.30.0")
    assert argv == (
        "/bin/helm3",
        "lint",
        "charts/app",
        "--values",
        "a.yaml",
        "--values",
        "b.yaml",
        "--strict",
        "--kube-version",
        "1.30.0",
    )


def test_template_argv_output_dir_and_sets() -> None:
    argv = helm.template_argv(
        H4,
        "charts/app",
        release="rel",
        namespace="ns",
        values=["v.yaml"],
        kube_version="1.30.0",
        output_dir="out",
        set_values={"backup.enabled": "true"},
        api_versions=["monitoring.coreos.com/v1"],
    )
    assert argv[:6] == ("/bin/helm4", "template", "rel", "charts/app", "--namespace", "ns")
    assert argv[argv.index("--set") : argv.index("--set") + 2] == ("--set", "backup.enabled=true")
    assert argv[-2:] == ("--output-dir", "out")
    assert "--api-versions" in argv
    assert "--include-crds" in argv


@pytest.mark.parametrize(
    ("h", "atomic_flag", "wait_flag"),
    [(H3, "--atomic", "--wait"), (H4, "--rollback-on-failure", "--wait=watcher")],
)
def test_upgrade_argv_translates_flags(h: helm.Helm, atomic_flag: str, wait_flag: str) -> None:
    argv = helm.upgrade_argv(
        h,
        "rel",
        "charts/app",
        namespace="ns",
        values=["v.yaml"],
        timeout="10m",
        rollback_on_failure=True,
        kube_context="kind",
    )
    assert argv[:5] == (h.path, "upgrade", "rel", "charts/app", "--install")
    assert atomic_flag in argv
    assert wait_flag in argv
    assert "--wait-for-jobs" in argv
    other = "--rollback-on-failure" if atomic_flag == "--atomic" else "--atomic"
    assert other not in argv
    assert argv[argv.index("--timeout") + 1] == "10m"
    assert argv[argv.index("--kube-context") + 1] == "kind"


def test_server_side_only_in_helm4() -> None:
    argv = helm.upgrade_argv(H4, "r", "c", namespace="n", server_side=True, force_conflicts=True)
    assert "--server-side=true" in argv
    assert "--force-conflicts" in argv
    with pytest.raises(ToolError, match="server-side apply needs Helm 4"):
        helm.upgrade_argv(H3, "r", "c", namespace="n", server_side=True)


def test_no_wait_means_no_wait_flags() -> None:
    argv = helm.upgrade_argv(H4, "r", "c", namespace="n", wait=False)
    assert not [a for a in argv if a.startswith("--wait")]


def test_rollback_and_uninstall_wait_per_major() -> None:
    assert helm.rollback_argv(H3, "r", 3, namespace="n", timeout="5m") == (
        "/bin/helm3",
        "rollback",
        "r",
        "3",
        "--namespace",
        "n",
        "--wait",
        "--timeout",
        "5m",
    )
    assert helm.uninstall_argv(H4, "r", namespace="n")[-1] == "--wait=watcher"


def test_status_history_test_argv() -> None:
    assert helm.status_argv(H3, "r", namespace="n")[-2:] == ("--output", "json")
    assert "--max" in helm.history_argv(H4, "r", namespace="n", max_revisions=5)
    assert helm.helm_test_argv(H3, "r", namespace="n", timeout="2m")[-1] == "--logs"


def test_get_manifest_argv() -> None:
    assert helm.get_manifest_argv(H4, "r", namespace="n", kubeconfig="/k") == (
        "/bin/helm4",
        "get",
        "manifest",
        "r",
        "--namespace",
        "n",
        "--kubeconfig",
        "/k",
    )


def test_error_message_takes_helm_error_and_the_lines_after_it() -> None:
    stderr = "walk.go:75: found symbolic link\nError: values don't meet the schema:\n- at '/x'\n"
    assert helm.error_message(stderr) == "values don't meet the schema: - at '/x'"
    assert helm.error_message("one\n\nlast line\n") == "last line"
    assert helm.error_message("") == "no output"
    assert helm.error_message("", default="helm upgrade failed") == "helm upgrade failed"
    assert helm.error_message("Error: " + "x" * 500, limit=10) == "x" * 10
