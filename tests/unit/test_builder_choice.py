"""Which builder builds: the decision table, its fallback warning, the argv, the summary line.

No builder runs here: ``select`` takes the function that makes a builder, so each row of the
table is checked with builders that are or are not available, and the argv a builder would run
is checked as data.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from ci import config, presenter
from ci.errors import ConfigError, EnvironmentNotReady, ProcessError, ToolError
from ci.images import buildkit, gitinfo, plan
from ci.images.builders import (
    BUILDERS,
    Builder,
    BuildxBuilder,
    DockerBuilder,
    candidates,
    hosted_runner,
    select,
)
from ci.images.results import ImageResult, ImagesResult

DATA = Path(__file__).resolve().parents[1] / "data" / "images"
GIT = gitinfo.GitInfo(sha="0123456789abcdef0123456789abcdef01234567", branch="main")
HOSTED = {"GITHUB_ACTIONS": "true", "RUNNER_ENVIRONMENT": "github-hosted"}


class _Daemon:
    """What ``DockerBuilder`` asks a Docker client when it is made: the daemon's platform."""

    def version(self) -> dict[str, str]:
        return {"Os": "linux", "Arch": "amd64"}


def _maker(available: set[str], tried: list[str]) -> Callable[[str], Builder]:
    """Make the builders in ``available``; the others fail as a missing tool or daemon would."""
    failures: dict[str, Exception] = {
        "buildx": ToolError("buildkitd: not found (run: make tools)"),
        "buildx-container": ProcessError("buildx create failed with exit code 1"),
        "docker": EnvironmentNotReady("docker daemon not reachable at unix:///x.sock"),
    }

    def make(name: str) -> Builder:
        tried.append(name)
        if name not in available:
            raise failures[name]
        if name == "docker":
            return DockerBuilder(_Daemon())
        if name == "buildx-container":
            return BuildxBuilder(
                buildkit.DOCKER_BUILDX,
                builder=buildkit.CONTAINER_BUILDER,
                name=name,
                metadata_dir=Path("/out"),
            )
        return BuildxBuilder(Path("/opt/buildx"), metadata_dir=Path("/out"))

    return make


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        (HOSTED, True),
        ({"GITHUB_ACTIONS": "true", "RUNNER_ENVIRONMENT": "self-hosted"}, False),
        ({"GITHUB_ACTIONS": "true"}, False),
        ({"RUNNER_ENVIRONMENT": "github-hosted"}, False),
        ({}, False),
    ],
)
def test_a_hosted_runner_is_github_actions_on_a_github_hosted_machine(
    env: dict[str, str], expected: bool
) -> None:
    assert hosted_runner(env) is expected


@pytest.mark.parametrize(
    ("choice", "hosted", "expected"),
    [
        ("auto", True, ("buildx-container", "docker")),
        ("auto", False, ("buildx", "docker")),
        ("buildx", True, ("buildx",)),
        ("buildx", False, ("buildx",)),
        ("buildx-container", False, ("buildx-container",)),
        ("docker", True, ("docker",)),
        ("docker", False, ("docker",)),
    ],
)
def test_the_decision_table(choice: str, hosted: bool, expected: tuple[str, ...]) -> None:
    assert candidates(choice, hosted=hosted) == expected


@pytest.mark.parametrize(
    ("hosted", "available", "ran", "tried"),
    [
        (True, {"buildx-container", "docker"}, "buildx-container", ["buildx-container"]),
        (False, {"buildx", "docker"}, "buildx", ["buildx"]),
        (False, {"buildx", "buildx-container", "docker"}, "buildx", ["buildx"]),
    ],
)
def test_auto_uses_buildkit_without_a_warning_when_it_runs(
    hosted: bool, available: set[str], ran: str, tried: list[str]
) -> None:
    seen: list[str] = []
    chosen = select("auto", "build.builder", hosted=hosted, make=_maker(available, seen))
    assert chosen.builder.name == ran
    assert chosen.warnings == []
    assert seen == tried


@pytest.mark.parametrize(
    ("hosted", "missing", "reason"),
    [
        (True, "buildx-container", "buildx create failed with exit code 1"),
        (False, "buildx", "buildkitd: not found (run: make tools)"),
    ],
)
def test_auto_falling_back_to_the_classic_builder_is_a_warning(
    hosted: bool, missing: str, reason: str
) -> None:
    seen: list[str] = []
    chosen = select("auto", "build.builder", hosted=hosted, make=_maker({"docker"}, seen))
    assert isinstance(chosen.builder, DockerBuilder)
    assert seen == [missing, "docker"]
    assert chosen.warnings == [
        f"builder {missing} is not available ({reason}); falling back to docker: the classic "
        "Docker Engine builder (no registry cache, one platform, no attestations)"
    ]


def test_auto_with_no_builder_at_all_fails_with_the_classic_builders_reason() -> None:
    with pytest.raises(EnvironmentNotReady) as err:
        select("auto", "--builder", hosted=False, make=_maker(set(), []))
    assert err.value.message == (
        "--builder auto: docker is not available: docker daemon not reachable at unix:///x.sock"
    )


@pytest.mark.parametrize(
    ("choice", "kind"),
    [("buildx", ToolError), ("buildx-container", ProcessError), ("docker", EnvironmentNotReady)],
)
def test_a_named_builder_that_is_not_available_is_one_line_naming_the_key(
    choice: str, kind: type[Exception]
) -> None:
    seen: list[str] = []
    others = set(BUILDERS) - {choice}
    with pytest.raises(kind) as err:
        select(choice, "build.builder", hosted=True, make=_maker(others, seen))
    message = str(getattr(err.value, "message", ""))
    assert message.startswith(f"build.builder {choice}: {choice} is not available: ")
    assert "\n" not in message
    assert seen == [choice]  # a named builder never falls back


def test_an_unknown_builder_is_a_usage_error_naming_the_source() -> None:
    with pytest.raises(ConfigError, match=r"^--builder: expected one of auto, buildx, .*'kaniko'"):
        select("kaniko", "--builder", hosted=False, make=_maker(set(BUILDERS), []))


# ----------------------------------------------------------------------------- argv


def test_the_container_builder_is_created_with_the_docker_container_driver() -> None:
    assert buildkit.container_create_argv(buildkit.DOCKER_BUILDX, "ci-container") == (
        "docker",
        "buildx",
        "create",
        "--name",
        "ci-container",
        "--driver",
        "docker-container",
        "--bootstrap",
    )


def test_the_container_builder_builds_through_docker_buildx_with_registry_cache(
    tmp_path: Path,
) -> None:
    shutil.copytree(DATA, tmp_path / "project")
    cfg = config.load(tmp_path / "project" / "ci.yaml")
    job = plan.plan(cfg, GIT)[0]
    builder = BuildxBuilder(
        buildkit.DOCKER_BUILDX,
        builder=buildkit.CONTAINER_BUILDER,
        name="buildx-container",
        metadata_dir=Path("/out"),
    )
    argv = builder.argv(job, push=True, metadata=Path("/m.json"))
    assert argv[:5] == ("docker", "buildx", "build", "--builder", "ci-container")
    assert argv[argv.index("--cache-to") + 1].endswith(":buildcache-api,mode=max")
    assert builder.description == (
        "BuildKit in a container (docker buildx, docker-container driver), builder 'ci-container'"
    )


# ----------------------------------------------------------------------------- config


def test_build_builder_defaults_to_auto_and_takes_only_known_builders(tmp_path: Path) -> None:
    shutil.copytree(DATA, tmp_path / "project")
    path = tmp_path / "project" / "ci.yaml"
    cfg = config.load(path)
    assert (cfg.build.builder, cfg.build.require_base_digests) == ("auto", False)
    text = path.read_text(encoding="utf-8")
    path.write_text(text + "build:\n  builder: buildx-container\n", encoding="utf-8")
    assert config.load(path).build.builder == "buildx-container"
    path.write_text(text + "build:\n  builder: kaniko\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"build\.builder"):
        config.load(path)


# ----------------------------------------------------------------------------- summary


def _result(builder: Builder, warnings: list[str]) -> ImagesResult:
    image = ImageResult("api", "reg/api", "api", ["abc1234"], "h", "inputs-h", "built", "sha256:a")
    result = ImagesResult(builder.name, False, GIT, [image], duration=2.0)
    result.builder_description, result.warnings = builder.description, warnings
    return result


def test_the_summary_names_the_builder_that_ran_and_shows_the_fallback_warning(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    summary = tmp_path / "summary.md"
    monkeypatch.setenv("GITHUB_ACTIONS", "true")
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    monkeypatch.setenv("GITHUB_OUTPUT", str(tmp_path / "output"))
    chosen = select("auto", "build.builder", hosted=True, make=_maker({"docker"}, []))
    presenter.images(_result(chosen.builder, chosen.warnings))
    out = capsys.readouterr().out
    assert "::warning title=images::builder buildx-container is not available (" in out
    assert "builder docker (the classic Docker Engine builder (" in out
    text = summary.read_text(encoding="utf-8")
    assert text.startswith(
        "### Images\n\nbuilder docker (the classic Docker Engine builder (no registry cache, "
        "one platform, no attestations)).\n\n> **Warning:** builder buildx-container is not "
    )
    assert "| api | built | sha256:a |" in text


def test_a_buildkit_run_names_its_builder_and_warns_of_nothing(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for name in ("GITHUB_ACTIONS", "GITHUB_STEP_SUMMARY", "GITHUB_OUTPUT"):
        monkeypatch.delenv(name, raising=False)
    chosen = select("auto", "build.builder", hosted=True, make=_maker({"buildx-container"}, []))
    presenter.images(_result(chosen.builder, chosen.warnings))
    out, err = capsys.readouterr()
    assert (
        "builder buildx-container (BuildKit in a container (docker buildx, docker-container "
        "driver), builder 'ci-container'), 2.0s" in out
    )
    assert "warning" not in out + err
