"""The error classes' exit codes, the first-line helper, and the CLI's one error handler."""

from __future__ import annotations

from collections.abc import Iterator

import click
import pytest
from click.testing import CliRunner

from ci import errors
from ci.cli import main
from ci.errors import (
    EXIT_ENVIRONMENT,
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_USAGE,
    CiError,
    Location,
)


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (errors.CiError("x"), EXIT_FAILED),
        (errors.ConfigError("x"), EXIT_USAGE),
        (errors.ConfigInvalid([errors.ConfigError("a"), errors.ConfigError("b")]), EXIT_USAGE),
        (errors.UsageError("x"), EXIT_USAGE),
        (errors.CommandHelp("Usage: ci"), EXIT_USAGE),
        (errors.ToolError("x"), EXIT_ENVIRONMENT),
        (errors.ProcessError("x"), EXIT_FAILED),
        (errors.EnvironmentNotReady("x"), EXIT_ENVIRONMENT),
        (errors.RegistryError("x"), EXIT_FAILED),
        (errors.BuildError("x"), EXIT_FAILED),
        (errors.ChartError("x"), EXIT_FAILED),
        (errors.ClusterError("x"), EXIT_ENVIRONMENT),
        (errors.DeployError("x"), EXIT_FAILED),
        (errors.SmokeError("x"), EXIT_FAILED),
        (errors.PipelineError("x"), EXIT_FAILED),
        (errors.StepFailed("chart failed", 137), 137),
        (errors.Interrupted(), EXIT_INTERRUPTED),
    ],
)
def test_each_error_class_has_its_exit_code(error: CiError, code: int) -> None:
    assert errors.exit_code(error) == code
    assert error.exit_code == code


def test_a_subclass_not_listed_takes_its_nearest_listed_ancestors_code() -> None:
    class Unlisted(errors.ClusterError):
        pass

    assert errors.exit_code(Unlisted("x")) == EXIT_ENVIRONMENT


@pytest.mark.parametrize(
    ("error", "limit", "expected"),
    [
        (ValueError("  first\nsecond\n"), 200, "first"),
        (ValueError(""), 200, "ValueError"),
        ("x" * 50, 10, "x" * 10),
        ("", 10, ""),
    ],
)
def test_first_line(error: BaseException | str, limit: int, expected: str) -> None:
    assert errors.first_line(error, limit) == expected


# ----------------------------------------------------------------------------- the handler


@pytest.fixture
def failing() -> Iterator[click.Group]:
    """A throwaway ``ci fail-with KIND`` command raising each kind of failure."""
    raised: dict[str, BaseException] = {
        "config": errors.ConfigError("bad key", location=Location("ci.yaml", 3)),
        "detail": errors.DeployError("upgrade failed", detail="line 1\nline 2"),
        "reported": errors.ChartError("chart lint: 2 error(s)", reported=True),
        "step": errors.StepFailed("deploy failed", 3),
        "interrupt": KeyboardInterrupt(),
        "abort": click.Abort(),
        "click": click.ClickException("no such file"),
    }

    @main.command("fail-with")
    @click.argument("kind")
    def fail_with(kind: str) -> None:
        raise raised[kind]

    yield main
    del main.commands["fail-with"]


@pytest.mark.parametrize(
    ("kind", "code", "stderr"),
    [
        ("config", 2, "error: ci.yaml:3: bad key\n"),
        ("detail", 1, "error: upgrade failed\n  line 1\n  line 2\n"),
        ("reported", 1, ""),
        ("step", 3, ""),
        ("interrupt", 130, "interrupted\n"),
        ("abort", 130, "interrupted\n"),
        ("click", 1, "error: no such file\n"),
    ],
)
def test_the_one_handler_prints_once_and_exits_with_the_class_code(
    failing: click.Group, monkeypatch: pytest.MonkeyPatch, kind: str, code: int, stderr: str
) -> None:
    monkeypatch.delenv("GITHUB_ACTIONS", raising=False)
    result = CliRunner().invoke(failing, ["fail-with", kind])
    assert (result.exit_code, result.stderr, result.stdout) == (code, stderr, "")


def test_under_actions_the_error_is_an_annotation(
    failing: click.Group, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GITHUB_ACTIONS", "true")
    result = CliRunner().invoke(failing, ["fail-with", "config"])
    assert result.exit_code == 2
    assert result.stdout == "::error file=ci.yaml,line=3::bad key\n"


def test_usage_errors_and_group_help_go_through_the_handler(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("GITHUB_ACTIONS", raising=False)
    unknown = CliRunner().invoke(main, ["config", "show", "--bogus"], prog_name="ci")
    assert unknown.exit_code == 2
    assert unknown.stderr == "error: ci config show: No such option '--bogus'.\n"
    bare = CliRunner().invoke(main, ["config"], prog_name="ci")
    assert bare.exit_code == 2
    assert bare.stderr.startswith("Usage: ci config [OPTIONS] COMMAND [ARGS]...")
