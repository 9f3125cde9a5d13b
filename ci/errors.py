"""The error hierarchy and the exit codes the CLI maps it to.

Every failure a user can cause or meet is a ``CiError``: the CLI's one handler prints its
one-line message (an Actions annotation under Actions) and exits with the code ``EXIT_CODES``
gives its class, never a traceback.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

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


def format_path(where: tuple[str | int, ...]) -> str:
    """A key path as messages show it: ``('images', 0, 'name')`` -> ``images[0].name``."""
    out = ""
    for part in where:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


class CiError(Exception):
    """A failure with a message meant for people and an exit code meant for machines."""

    #: Show the message as it is (no ``error:`` prefix, no annotation): a help text, a notice.
    bare: ClassVar[bool] = False

    def __init__(
        self,
        message: str,
        *,
        location: Location | None = None,
        detail: str = "",
        reported: bool = False,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.location = location
        #: Longer output (captured stderr, logs) shown after the one-line message.
        self.detail = detail
        #: The step's own output already shows why (findings, a failed step's error): the
        #: handler prints nothing more and only exits with the code.
        self.reported = reported

    @property
    def exit_code(self) -> int:
        return exit_code(self)

    def __str__(self) -> str:
        if self.location is not None:
            return f"{self.location}: {self.message}"
        return self.message


class ConfigError(CiError):
    """The configuration file or a command-line value is wrong."""


class ConfigInvalid(ConfigError):
    """Several problems found in one file, reported together so one run shows them all."""

    def __init__(self, problems: list[ConfigError]) -> None:
        first = problems[0]
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        super().__init__(first.message + more, location=first.location)
        self.problems = problems


class UsageError(ConfigError):
    """The command line itself is wrong: an unknown command or option, a bad option value."""


class CommandHelp(UsageError):
    """A command group called without a command: its help is the whole message."""

    bare = True


class ToolError(CiError):
    """A required program is missing, too old, or not runnable."""


class ProcessError(CiError):
    """An external program ran and failed (non-zero exit or timeout)."""


class EnvironmentNotReady(CiError):
    """A service the step needs (docker daemon, registry, cluster) cannot be reached."""


class RegistryError(CiError):
    """The OCI registry refused or failed a request."""


class BuildError(CiError):
    """An image failed to build or push."""


class ChartError(CiError):
    """The chart failed lint, render, validation or policy."""


class ClusterError(CiError):
    """The Kubernetes cluster refused or failed an operation."""


class DeployError(CiError):
    """A release failed to install, upgrade, or roll back."""


class SmokeError(CiError):
    """A smoke check failed after its retries and deadline."""


class PipelineError(CiError):
    """A pipeline step failed; its own output says why."""


class StepFailed(PipelineError):
    """One step run on its own failed: ``ci pipeline step`` exits with that step's exit code."""

    def __init__(self, message: str, returncode: int) -> None:
        super().__init__(message, reported=True)
        self.returncode = returncode


class Interrupted(CiError):
    """Ctrl-C (or a closed input) stopped the command."""

    bare = True

    def __init__(self) -> None:
        super().__init__("interrupted")


#: The exit code of each error class; a class not listed takes its nearest listed ancestor's.
EXIT_CODES: dict[type[CiError], int] = {
    CiError: EXIT_FAILED,
    ConfigError: EXIT_USAGE,
    ToolError: EXIT_ENVIRONMENT,
    ProcessError: EXIT_FAILED,
    EnvironmentNotReady: EXIT_ENVIRONMENT,
    RegistryError: EXIT_FAILED,
    BuildError: EXIT_FAILED,
    ChartError: EXIT_FAILED,
    ClusterError: EXIT_ENVIRONMENT,
    DeployError: EXIT_FAILED,
    SmokeError: EXIT_FAILED,
    PipelineError: EXIT_FAILED,
    Interrupted: EXIT_INTERRUPTED,
}


def exit_code(error: CiError) -> int:
    """The exit code for ``error``: its class's in ``EXIT_CODES``; a failed step's own code."""
    if isinstance(error, StepFailed):
        return error.returncode
    for cls in type(error).__mro__:
        if cls in EXIT_CODES:
            return EXIT_CODES[cls]
    return EXIT_FAILED
