"""The error hierarchy and the exit codes the CLI maps it to.

Every failure a user can cause or meet is a ``CiError``: the CLI prints its one-line
message (plus an Actions annotation) and exits with its code, never a traceback.
"""

from __future__ import annotations

from dataclasses import dataclass

EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_ENVIRONMENT = 3
EXIT_INTERRUPTED = 130


def first_line(error: BaseException | str, limit: int = 200) -> str:
    """The first line of an error's text, cut at ``limit``: enough for a one-line message.

    Library errors often carry a traceback-like text or a response body after the first line;
    the rest belongs in an error's ``detail``. An exception without text gives its class name.
    """
    text = str(error).strip()
    if not text:
        return type(error).__name__ if isinstance(error, BaseException) else ""
    return text.splitlines()[0][:limit]


@dataclass
class Location:
    """Where a problem is, so it can be shown as ``file:line`` and annotated on GitHub."""

    file: str
    line: int | None = None
    column: int | None = None

    def __str__(self) -> str:
        if self.line is None:
            return self.file
        return f"{self.file}:{self.line}"


class CiError(Exception):
    """A failure with a message meant for people and an exit code meant for machines."""

    exit_code = EXIT_FAILED

    def __init__(self, message: str, *, location: Location | None = None, detail: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.location = location
        #: Longer output (captured stderr, logs) shown after the one-line message.
        self.detail = detail

    def __str__(self) -> str:
        if self.location is not None:
            return f"{self.location}: {self.message}"
        return self.message


class ConfigError(CiError):
    """The configuration file or a command-line value is wrong."""

    exit_code = EXIT_USAGE


class ConfigInvalid(ConfigError):
    """Several problems found in one file, reported together so one run shows them all."""

    def __init__(self, problems: list[ConfigError]) -> None:
        first = problems[0]
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        super().__init__(first.message + more, location=first.location)
        self.problems = problems


class ToolError(CiError):
    """A required program is missing, too old, or not runnable."""

    exit_code = EXIT_ENVIRONMENT


class ProcessError(CiError):
    """An external program ran and failed (non-zero exit or timeout)."""

    exit_code = EXIT_FAILED


class EnvironmentNotReady(CiError):
    """A service the step needs (docker daemon, registry, cluster) cannot be reached."""

    exit_code = EXIT_ENVIRONMENT


class RegistryError(CiError):
    """The OCI registry refused or failed a request."""

    exit_code = EXIT_FAILED


class BuildError(CiError):
    """An image failed to build or push."""

    exit_code = EXIT_FAILED


class ChartError(CiError):
    """The chart failed lint, render, validation or policy."""

    exit_code = EXIT_FAILED


class ClusterError(CiError):
    """The Kubernetes cluster refused or failed an operation."""

    exit_code = EXIT_ENVIRONMENT


class DeployError(CiError):
    """A release failed to install, upgrade, or roll back."""

    exit_code = EXIT_FAILED


class SmokeError(CiError):
    """A smoke check failed after its retries and deadline."""

    exit_code = EXIT_FAILED
