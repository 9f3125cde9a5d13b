"""Cluster providers without a cluster: selection, state parsing, readiness and their errors.

Readiness is checked against an in-process fake API server; kind, docker and the built-in
cluster's script are small fakes on PATH, so each provider's own logic runs for real.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from ci import cluster, paths, tools
from ci.cluster import base, builtin, existing, kind
from ci.cluster.base import ClusterInfo
from ci.errors import ClusterError, ConfigError, EnvironmentNotReady, ToolError
from tests.unit.fake_api import FakeApi, kubeconfig, serve

STATE = {
    "provider": "builtin",
    "kubernetes_version": "v1.34.4",
    "kubeconfig": "/run/x/kubeconfig",
    "kubectl": "/cache/kubectl",
    "ingress_url": "http://127.0.0.1:18080",
    "startup_seconds": 20.5,
}


@pytest.fixture
def no_cluster_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(cluster.KUBECONFIG_ENV, raising=False)
    monkeypatch.delenv(cluster.PROVIDER_ENV, raising=False)


@pytest.fixture
def api() -> Iterator[FakeApi]:
    with serve() as fake:
        yield fake


def fake_bin(folder: Path, name: str, script: str) -> Path:
    """An executable ``name`` in ``folder`` running the shell ``script``."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text("#!/bin/sh\n" + script, encoding="utf-8")
    path.chmod(0o755)
    return path


def only_path(monkeypatch: pytest.MonkeyPatch, folder: Path) -> None:
    """PATH is ``folder`` plus the system folders (sh), without any real kind or docker."""
    monkeypatch.setenv("PATH", f"{folder}:/usr/bin:/bin")


# ----------------------------------------------------------------------------- selection


@pytest.mark.usefixtures("no_cluster_env")
def test_auto_prefers_a_given_kubeconfig(tmp_path: Path) -> None:
    provider = cluster.get_provider("auto", tmp_path / "config")
    assert isinstance(provider, existing.ExistingCluster)


@pytest.mark.usefixtures("no_cluster_env")
def test_auto_falls_back_to_builtin_without_kind(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(kind, "usable", lambda: False)
    assert isinstance(cluster.get_provider(), builtin.BuiltinCluster)


@pytest.mark.usefixtures("no_cluster_env")
def test_auto_uses_kind_where_it_works(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(kind, "usable", lambda: True)
    assert isinstance(cluster.get_provider(), kind.KindCluster)


@pytest.mark.usefixtures("no_cluster_env")
def test_existing_needs_a_kubeconfig() -> None:
    with pytest.raises(ConfigError, match="needs --kubeconfig"):
        cluster.get_provider("existing")


@pytest.mark.usefixtures("no_cluster_env")
def test_unknown_provider_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="unknown cluster provider 'k3d'"):
        cluster.get_provider("k3d")


@pytest.mark.usefixtures("no_cluster_env")
def test_the_environment_chooses_the_provider_and_the_kubeconfig(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv(cluster.PROVIDER_ENV, "builtin")
    assert isinstance(cluster.get_provider(), builtin.BuiltinCluster)
    assert isinstance(cluster.get_provider("kind"), kind.KindCluster)  # the option wins
    monkeypatch.setenv(cluster.PROVIDER_ENV, "existing")
    monkeypatch.setenv(cluster.KUBECONFIG_ENV, str(tmp_path / "config"))
    provider = cluster.get_provider()
    assert isinstance(provider, existing.ExistingCluster)
    assert provider.kubeconfig == tmp_path / "config"


@pytest.mark.usefixtures("no_cluster_env")
def test_a_kubeconfig_in_the_environment_makes_auto_use_it(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(kind, "usable", lambda: True)
    monkeypatch.setenv(cluster.KUBECONFIG_ENV, str(tmp_path / "config"))
    assert isinstance(cluster.get_provider(), existing.ExistingCluster)


# ----------------------------------------------------------------------------- ClusterInfo


def test_fields_keep_display_order_leave_out_unknowns_and_end_with_extras() -> None:
    info = ClusterInfo(
        provider="kind",
        kubeconfig=Path("/k"),
        node_name="n1",
        ingress_url="http://x",
        startup_seconds=3.04,
        extra={"z": "last", "a": "first"},
    )
    assert info.fields() == [
        ("provider", "kind"),
        ("kubeconfig", "/k"),
        ("node", "n1"),
        ("ingress url", "http://x"),
        ("startup", "3.0 s"),
        ("a", "first"),
        ("z", "last"),
    ]


# ----------------------------------------------------------------------------- built-in


def test_state_file_becomes_cluster_info() -> None:
    info = builtin.parse_state(STATE)
    assert info.kubeconfig == Path("/run/x/kubeconfig")
    assert info.kubectl == "/cache/kubectl"
    assert ("startup", "20.5 s") in info.fields()
    assert ("ingress url", "http://127.0.0.1:18080") in info.fields()


def test_state_file_defaults_and_the_tls_url() -> None:
    info = builtin.parse_state({"kubeconfig": "/k", "ingress_tls_url": "https://127.0.0.1:18443"})
    assert (info.provider, info.kubectl, info.kubernetes_version) == ("builtin", "kubectl", None)
    assert info.extra == {"ingress tls": "https://127.0.0.1:18443"}


def test_state_file_without_kubeconfig_is_a_cluster_error() -> None:
    with pytest.raises(ClusterError, match="missing 'kubeconfig'"):
        builtin.parse_state({"provider": "builtin"})


def test_builtin_status_without_state_is_not_ready(tmp_path: Path) -> None:
    provider = builtin.BuiltinCluster(state=tmp_path)
    with pytest.raises(EnvironmentNotReady, match="not running"):
        provider.status()


def test_builtin_state_that_is_not_json_is_a_cluster_error(tmp_path: Path) -> None:
    (tmp_path / "cluster.json").write_text("{half", encoding="utf-8")
    with pytest.raises(ClusterError, match=r"cluster\.json: not JSON"):
        builtin.BuiltinCluster(state=tmp_path).status()


def test_script_and_state_folder_follow_the_environment(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("CI_CLUSTER_SCRIPT", str(tmp_path / "cluster.sh"))
    monkeypatch.setenv("CLUSTER_STATE", str(tmp_path / "state"))
    provider = builtin.BuiltinCluster()
    assert (provider.script, provider.state) == (tmp_path / "cluster.sh", tmp_path / "state")
    monkeypatch.delenv("CI_CLUSTER_SCRIPT")
    monkeypatch.delenv("CLUSTER_STATE")
    assert builtin.script_path().name == "cluster.sh"
    assert builtin.script_path().is_file()  # this checkout's hack/cluster/cluster.sh
    assert builtin.state_dir() == builtin.default_state()


def test_state_folder_of_the_former_name_stays_in_use(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("CLUSTER_STATE", raising=False)
    monkeypatch.setattr(paths, "RUN_ROOT", tmp_path)
    assert builtin.state_dir() == tmp_path / "ci-delivery-steps" / "cluster"
    (tmp_path / "schedule-ci" / "cluster").mkdir(parents=True)
    assert builtin.state_dir() == tmp_path / "schedule-ci" / "cluster"
    (tmp_path / "ci-delivery-steps" / "cluster").mkdir(parents=True)
    assert builtin.state_dir() == tmp_path / "ci-delivery-steps" / "cluster"


def test_builtin_without_its_script_is_not_ready(tmp_path: Path) -> None:
    provider = builtin.BuiltinCluster(script=tmp_path / "missing.sh", state=tmp_path)
    with pytest.raises(EnvironmentNotReady, match="cluster script not found"):
        provider.up()


def test_builtin_up_runs_the_script_then_reports_the_ready_cluster(
    api: FakeApi, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The script's ``up`` writes cluster.json; ``up`` answers once the API is ready."""
    config = kubeconfig(tmp_path / "kubeconfig", api.url)
    state = {"kubeconfig": str(config), "kubectl": "/k/kubectl", "node_name": "n"}
    script = fake_bin(
        tmp_path,
        "cluster.sh",
        f'echo "cluster $1"\n[ "$1" = up ] && echo \'{json.dumps(state)}\''
        ' > "$CLUSTER_STATE/cluster.json"\nexit 0\n',
    )
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    lines: list[str] = []
    provider = builtin.BuiltinCluster(script=script, state=tmp_path)
    info = provider.up(lambda line, _stream: lines.append(line))
    assert (info.kubeconfig, info.kubectl, info.node_name) == (config, "/k/kubectl", "n")
    assert lines == ["cluster up"]
    assert ("/readyz", "Bearer t0ken") in api.seen
    api.status = 500
    with pytest.raises(EnvironmentNotReady, match="builtin cluster is not running or not"):
        provider.status()


def test_builtin_script_failure_is_a_cluster_error_with_its_output(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    script = fake_bin(tmp_path, "cluster.sh", 'echo "no kubelet" >&2\nexit 3\n')
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    with pytest.raises(ClusterError, match="built-in cluster failed to start") as info:
        builtin.BuiltinCluster(script=script, state=tmp_path).up()
    assert "no kubelet" in info.value.detail


def test_builtin_needs_root(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    script = fake_bin(tmp_path, "cluster.sh", "exit 0\n")
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    with pytest.raises(EnvironmentNotReady, match="needs root"):
        builtin.BuiltinCluster(script=script, state=tmp_path).down()


# ----------------------------------------------------------------------------- existing


def test_existing_down_leaves_the_cluster_alone(tmp_path: Path) -> None:
    message = existing.ExistingCluster(tmp_path / "config").down()
    assert message.startswith("left the existing cluster running")


def test_existing_without_its_kubeconfig_is_not_ready(tmp_path: Path) -> None:
    with pytest.raises(EnvironmentNotReady, match="kubeconfig not found"):
        existing.ExistingCluster(tmp_path / "config", kubectl="kubectl").status()


def test_existing_is_ready_when_its_api_answers(api: FakeApi, tmp_path: Path) -> None:
    config = kubeconfig(tmp_path / "config", api.url)
    info = existing.ExistingCluster(config, kubectl="/bin/kubectl").up()
    assert (info.provider, info.kubeconfig, info.kubectl) == ("existing", config, "/bin/kubectl")
    api.status = 503
    with pytest.raises(EnvironmentNotReady, match=r"existing cluster is not running.*config"):
        existing.ExistingCluster(config, kubectl="/bin/kubectl").status()


def test_kubectl_for_a_cluster_comes_from_tools_require(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """A kubectl on PATH without a version it can report does not pass for one."""
    fake_bin(tmp_path / "bin", "kubectl", "echo broken\n")
    only_path(monkeypatch, tmp_path / "bin")
    monkeypatch.setenv("TOOLS_DIR", str(tmp_path / "tools"))
    tools.clear_cache()
    try:
        with pytest.raises(ToolError, match=r"kubectl at .* did not report a version"):
            base.find_kubectl()
        fake_bin(tmp_path / "bin", "kubectl", 'echo "Client Version: v1.34.4"\n')
        tools.clear_cache()
        assert base.find_kubectl() == str(tmp_path / "bin" / "kubectl")
    finally:
        tools.clear_cache()


# ----------------------------------------------------------------------------- kind


def test_kind_is_unusable_without_its_binary(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "/nonexistent")
    assert kind.usable() is False


def test_kind_is_usable_only_with_a_node_image_in_docker(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    fake_bin(tmp_path, "kind", "exit 0\n")
    fake_bin(tmp_path, "docker", "exit 0\n")  # no image listed
    only_path(monkeypatch, tmp_path)
    assert kind.usable() is False
    fake_bin(tmp_path, "docker", 'echo "4a3b2c1d0e9f"\n')
    assert kind.usable() is True


def test_kind_status_of_a_missing_cluster_is_not_ready(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    fake_bin(tmp_path, "kind", 'echo "other"\n')  # `kind get clusters` lists another one
    only_path(monkeypatch, tmp_path)
    provider = kind.KindCluster(tmp_path / "kubeconfig", cluster="schedule-ci")
    with pytest.raises(EnvironmentNotReady, match="kind cluster schedule-ci does not exist"):
        provider.status()
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(EnvironmentNotReady, match="kind not found on PATH"):
        provider.status()


def test_kind_failure_is_a_cluster_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    fake_bin(tmp_path, "kind", 'echo "boom" >&2\nexit 1\n')
    only_path(monkeypatch, tmp_path)
    with pytest.raises(ClusterError, match="kind delete failed"):
        kind.KindCluster(tmp_path / "kubeconfig").down()
