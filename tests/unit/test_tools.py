"""Tool discovery, version checks and install bookkeeping, with small fake executables.

The fakes are shell scripts that print what the real tools print for their version command,
so discovery, preference and messages run exactly as with the real binaries.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from ci import tools
from ci.errors import ConfigError, ToolError

HELM3 = "v3.22.0+g1a2b3c4"
KUBECTL = "Client Version: v1.34.4\nKustomize Version: v5.7.1"


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, Path]]:
    """An isolated PATH folder, project-local folder, cache and docker config."""
    dirs = {
        name: tmp_path / name for name in ("path", "pinned", "cache", "docker", "other", "project")
    }
    for folder in dirs.values():
        folder.mkdir()
    monkeypatch.setenv("PATH", str(dirs["path"]))
    monkeypatch.setenv("TOOLS_DIR", str(dirs["pinned"]))
    monkeypatch.setenv("CI_TOOLS_CACHE", str(dirs["cache"]))
    monkeypatch.setenv("DOCKER_CONFIG", str(dirs["docker"]))
    for name in ("CI_HELM", "CI_HELM_MAJOR"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(tools.discovery, "GO_FALLBACK", tmp_path / "no-go" / "go")
    tools.clear_cache()
    yield dirs
    tools.clear_cache()


def fake(folder: Path, name: str, output: str, *, exit_code: int = 0) -> Path:
    """An executable that prints ``output`` whatever its arguments, like a version command."""
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    assert "'" not in output
    # only shell builtins: the tests' PATH holds nothing but the fakes
    path.write_text(f"#!/bin/sh\nprintf '%s\\n' '{output}'\nexit {exit_code}\n")
    path.chmod(0o755)
    return path


# ------------------------------------------------------------------------------ versions


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("v1.34.4", (1, 34, 4)),
        ("3.14", (3, 14, 0)),
        ("go1.26.8", (1, 26, 8)),
        ("v4.3.1+gdeadbee", (4, 3, 1)),
    ],
)
def test_parse_version(text: str, expected: tuple[int, int, int]) -> None:
    assert tools.parse_version(text) == expected


def test_parse_version_rejects_text_without_a_version() -> None:
    with pytest.raises(ValueError, match="not a version"):
        tools.parse_version("unknown")


@pytest.mark.parametrize(
    ("tool", "output", "expected"),
    [
        ("helm3", HELM3, "3.22.0"),
        ("helm4", "v4.3.1", "4.3.1"),
        ("kubectl", KUBECTL, "1.34.4"),
        (
            "kubectl",
            'Client Version: version.Info{Major:"1", Minor:"20", GitVersion:"v1.20.15"}',
            "1.20.15",
        ),
        ("kubeconform", "v0.8.0", "0.8.0"),
        ("actionlint", "v1.7.12\ninstalled by building from source\nbuilt with go1.26.8", "1.7.12"),
        ("buildx", "github.com/docker/buildx v0.38.2 8b2c1a0", "0.38.2"),
        ("buildx", "github.com/docker/buildx 0.17.1+azure-1 7d8d2c8", "0.17.1"),
        ("buildkitd", "buildkitd github.com/moby/buildkit v0.34.2 abcdef", "0.34.2"),
    ],
)
def test_each_tool_reads_its_own_version_output(tool: str, output: str, expected: str) -> None:
    assert tools.read_version(output, tools.TOOLS[tool].version_regex) == expected


def test_a_development_build_has_no_version() -> None:
    assert tools.read_version("development", tools.TOOLS["kubeconform"].version_regex) is None
    assert tools.read_version("v3.x", tools.TOOLS["helm3"].version_regex) is None


def test_every_pin_satisfies_its_own_minimum() -> None:
    for spec in tools.TOOLS.values():
        assert tools.parse_version(spec.bare_version) >= tools.parse_version(spec.minimum), (
            spec.name
        )
        if spec.major is not None:
            assert tools.parse_version(spec.version)[0] == spec.major


# ------------------------------------------------------------------------------ discovery


def test_a_compatible_tool_on_path_is_preferred(env: dict[str, Path]) -> None:
    on_path = fake(env["path"], "kubeconform", "v0.6.7")
    fake(env["pinned"], "kubeconform", "v0.8.0")
    tool = tools.require("kubeconform")
    assert tool == tools.Tool("kubeconform", on_path, "0.6.7", "PATH")


def test_a_too_old_tool_on_path_falls_back_to_the_pinned_one(env: dict[str, Path]) -> None:
    fake(env["path"], "helm", "v3.9.0+g7ceeda6")
    pinned = fake(env["pinned"], "helm3", HELM3)
    assert tools.require("helm", major=3) == tools.Tool("helm3", pinned, "3.22.0", "pinned")


def test_too_old_and_nothing_pinned_says_what_and_how_to_fix(env: dict[str, Path]) -> None:
    helm = fake(env["path"], "helm", "v3.9.0+g7ceeda6")
    expected = f"helm 3.9.0 found at {helm} is too old (need >= 3.14); run `make tools`"
    with pytest.raises(ToolError) as info:
        tools.require("helm", major=3)
    assert info.value.message == expected
    assert info.value.exit_code == 3


def test_missing_everywhere_names_both_places(env: dict[str, Path]) -> None:
    with pytest.raises(ToolError) as info:
        tools.require("kubeconform")
    assert info.value.message == (
        f"kubeconform not found on PATH or in {env['pinned']}; run `make tools`"
    )
    with pytest.raises(ToolError, match=r"^helm 4 not found on PATH or in "):
        tools.require("helm")
    with pytest.raises(ToolError, match=r"^helm 3 not found on PATH or in "):
        tools.require("helm", major=3)


def test_a_binary_that_prints_no_version_is_not_used(env: dict[str, Path]) -> None:
    broken = fake(env["path"], "actionlint", "segfault", exit_code=139)
    with pytest.raises(ToolError, match=f"actionlint at {broken} did not report a version"):
        tools.require("actionlint")


def test_helm_major_follows_the_environment(
    env: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    helm4_on_path = fake(env["path"], "helm", "v4.3.1")
    pinned3 = fake(env["pinned"], "helm3", HELM3)
    assert tools.require("helm") == tools.Tool("helm4", helm4_on_path, "4.3.1", "PATH")  # default
    assert tools.require("helm", major=3).path == pinned3
    monkeypatch.setenv("CI_HELM_MAJOR", "3")
    assert tools.require("helm").path == pinned3
    assert tools.require("helm4").path == helm4_on_path


def test_helm_4_on_path_is_not_taken_for_helm_3(env: dict[str, Path]) -> None:
    helm = fake(env["path"], "helm", "v4.3.1")
    with pytest.raises(ToolError, match=f"helm 4.3.1 found at {helm} is not 3.x; run `make tools`"):
        tools.require("helm", major=3)


def test_ci_helm_names_the_binary_and_is_still_checked(
    env: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    fake(env["path"], "helm", HELM3)
    chosen = fake(env["other"], "my-helm", "v4.3.1")
    monkeypatch.setenv("CI_HELM", str(chosen))
    monkeypatch.setenv("CI_HELM_MAJOR", "4")
    assert tools.require("helm") == tools.Tool("helm4", chosen, "4.3.1", "CI_HELM")
    old = fake(env["other"], "old-helm", "v4.0.0-rc.1")
    monkeypatch.setenv("CI_HELM", str(old))
    assert tools.require("helm").version == "4.0.0"
    monkeypatch.setenv("CI_HELM", str(env["other"] / "absent"))
    with pytest.raises(ToolError, match="did not report a version"):
        tools.require("helm")


def test_ci_helm_alone_is_used_whatever_its_major(
    env: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    chosen = fake(env["other"], "helm-4", "v4.3.1")
    monkeypatch.setenv("CI_HELM", str(chosen))
    assert tools.require("helm") == tools.Tool("helm4", chosen, "4.3.1", "CI_HELM")
    with pytest.raises(ToolError, match=f"helm 4.3.1 found at {chosen} is not 3.x"):
        tools.require("helm", major=3)
    row = next(s for s in tools.doctor() if s.name == "helm (CI_HELM)")
    assert (row.status, row.path, row.version) == ("ok", chosen, "4.3.1")


def test_a_path_entry_that_links_into_the_pinned_folder_counts_as_pinned(
    env: dict[str, Path],
) -> None:
    pinned = fake(env["pinned"], "kubectl", KUBECTL)
    (env["path"] / "kubectl").symlink_to(pinned)
    assert tools.require("kubectl").source == "pinned"


def test_buildx_is_found_as_a_docker_cli_plugin(env: dict[str, Path]) -> None:
    plugin = fake(
        env["docker"] / "cli-plugins", "docker-buildx", "github.com/docker/buildx v0.19.3 1"
    )
    assert tools.require("buildx") == tools.Tool("buildx", plugin, "0.19.3", "PATH")


def test_results_are_cached_per_process(env: dict[str, Path]) -> None:
    path = fake(env["path"], "actionlint", "v1.7.12")
    first = tools.require("actionlint")
    path.unlink()
    assert tools.require("actionlint") is first
    tools.clear_cache()
    with pytest.raises(ToolError, match="not found"):
        tools.require("actionlint")


def test_unknown_tool(env: dict[str, Path]) -> None:
    with pytest.raises(ToolError, match="unknown tool 'kustomize'"):
        tools.require("kustomize")


# ------------------------------------------------------------------------------ doctor


def test_doctor_reports_ok_missing_and_too_old(env: dict[str, Path]) -> None:
    fake(env["path"], "kubeconform", "v0.8.0")
    fake(env["pinned"], "actionlint", "v1.7.12")
    old = fake(env["path"], "kubectl", 'Client Version: version.Info{GitVersion:"v1.20.15"}')
    by_name = {s.name: s for s in tools.doctor()}
    assert set(tools.TOOLS) <= set(by_name)
    assert {"docker", "docker daemon", "go"} <= set(by_name)
    kubeconform, actionlint = by_name["kubeconform"], by_name["actionlint"]
    assert (kubeconform.status, kubeconform.source, kubeconform.version) == ("ok", "PATH", "0.8.0")
    assert (actionlint.status, actionlint.source) == ("ok", "pinned")
    kubectl = by_name["kubectl"]
    assert (kubectl.status, kubectl.path, kubectl.version) == ("too-old", old, "1.20.15")
    assert kubectl.hint.endswith("(need >= 1.33); run `make tools`")
    assert by_name["buildkitd"].status == "missing"
    assert "run `make tools`" in by_name["buildkitd"].hint
    assert by_name["go"].required is False


# ------------------------------------------------------------------------------ install


def test_install_skips_a_tool_already_at_the_pinned_version(env: dict[str, Path]) -> None:
    fake(env["pinned"], "kubeconform", "v0.8.0")
    [result] = tools.install(["kubeconform"])
    assert (result.name, result.action, result.path) == (
        "kubeconform",
        "skipped",
        env["pinned"] / "kubeconform",
    )


def test_install_links_a_cached_build_instead_of_rebuilding(env: dict[str, Path]) -> None:
    fake(env["pinned"], "actionlint", "v1.7.4")  # present but not the pin: replaced
    cached = fake(env["cache"] / "actionlint-v1.7.12", "actionlint", "v1.7.12")
    [result] = tools.install(["actionlint"])
    assert result.action == "linked"
    assert (env["pinned"] / "actionlint").resolve() == cached
    assert tools.require("actionlint").source == "pinned"


def test_install_puts_helm_majors_side_by_side(
    env: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    fake(env["cache"] / "helm3-v3.22.0", "helm3", "v3.22.0")
    fake(env["cache"] / "helm4-v4.3.1", "helm4", "v4.3.1")
    results = tools.install(["helm"])
    assert [r.name for r in results] == ["helm3", "helm4"]
    assert os.readlink(env["pinned"] / "helm") == "helm4"
    monkeypatch.setenv("CI_HELM_MAJOR", "3")
    assert [r.action for r in tools.install(["helm"])] == ["skipped", "skipped"]
    assert os.readlink(env["pinned"] / "helm") == "helm3"


def test_install_links_buildx_as_a_docker_plugin(env: dict[str, Path]) -> None:
    cached = fake(
        env["cache"] / "buildx-v0.38.2", "docker-buildx", "github.com/docker/buildx v0.38.2"
    )
    [result] = tools.install(["buildx"])
    plugin = env["docker"] / "cli-plugins" / "docker-buildx"
    assert plugin.resolve() == cached
    assert result.notes == (f"docker CLI plugin linked at {plugin}",)


def test_install_keeps_a_plugin_the_user_installed(env: dict[str, Path]) -> None:
    fake(env["cache"] / "buildx-v0.38.2", "docker-buildx", "github.com/docker/buildx v0.38.2")
    own = fake(env["docker"] / "cli-plugins", "docker-buildx", "github.com/docker/buildx v0.20.0")
    [result] = tools.install(["docker-buildx"])
    assert not own.is_symlink()
    assert result.notes == (f"kept {own} (not a link made by `make tools`)",)


def test_install_without_go_says_how_to_get_it(env: dict[str, Path]) -> None:
    with pytest.raises(ToolError, match=r"^go not found on PATH or in .*install Go >= 1\.26\.8"):
        tools.install(["kubeconform"])


def test_install_refuses_unknown_names(env: dict[str, Path]) -> None:
    with pytest.raises(ConfigError, match="unknown tool 'kustomize'"):
        tools.install(["kustomize"])


def test_aliases_expand_in_order_without_duplicates() -> None:
    names = [s.name for s in tools.expand_names(["buildkit", "helm", "helm3", "actionlint"])]
    assert names == ["buildkitd", "helm3", "helm4", "actionlint"]
    assert [s.name for s in tools.expand_names(None)] == list(tools.TOOLS)


# ------------------------------------------------------------------------------ kubectl wrapper


GOMOD = """module k8s.io/kubernetes

go 1.24.0

require (
\tk8s.io/api v0.0.0
\tgithub.com/spf13/cobra v1.9.1
)

replace (
\tk8s.io/api => ./staging/src/k8s.io/api
\tk8s.io/client-go => ./staging/src/k8s.io/client-go
\tk8s.io/kube-openapi => k8s.io/kube-openapi v0.0.0-2025
)
"""


def test_staging_modules_are_pinned_to_the_matching_v0_version() -> None:
    assert tools.staging_replaces(GOMOD, "v1.34.4") == [
        "replace k8s.io/api => k8s.io/api v0.34.4",
        "replace k8s.io/client-go => k8s.io/client-go v0.34.4",
    ]


def test_wrapper_module_requires_kubernetes_with_the_replaces() -> None:
    text = tools.wrapper_gomod(tools.TOOLS["kubectl"], ["replace a => a v1"])
    assert (
        text
        == "module wrapper\n\ngo 1.24\n\nrequire k8s.io/kubernetes v1.34.4\n\nreplace a => a v1\n"
    )


def test_kubectl_ldflags_set_the_client_version() -> None:
    flags = tools.TOOLS["kubectl"].ldflags
    assert "-X k8s.io/client-go/pkg/version.gitVersion=v1.34.4" in flags
    assert "-X k8s.io/component-base/version.gitVersion=v1.34.4" in flags


# ------------------------------------------------------------------------------ locations


def test_project_root_is_found_by_walking_up(tmp_path: Path) -> None:
    (tmp_path / "ci.yaml").write_text("{}\n")
    deep = tmp_path / "a" / "b"
    deep.mkdir(parents=True)
    assert tools.project_root(deep) == tmp_path.resolve()


def test_tools_dir_defaults_to_the_project_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "pyproject.toml").write_text("")
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("TOOLS_DIR", raising=False)
    monkeypatch.delenv("CI_TOOLS_CACHE", raising=False)
    monkeypatch.delenv("CI_CACHE", raising=False)
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    monkeypatch.delenv("DOCKER_CONFIG", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert tools.tools_dir() == tmp_path.resolve() / ".tools" / "bin"
    assert tools.cache_root() == tmp_path / "home" / ".cache" / "ci-delivery-steps" / "tools"
    assert tools.docker_plugin_dir() == tmp_path / "home" / ".docker" / "cli-plugins"
