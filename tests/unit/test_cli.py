"""The CLI's surface: groups, version, and one-line usage errors without tracebacks."""

from __future__ import annotations

import signal
import subprocess
import sys
import time

import pytest

from ci import __version__


def ci(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ci", *args], capture_output=True, text=True, check=False
    )


def test_help_lists_the_command_groups() -> None:
    out = ci("--help").stdout
    for group in ("config", "images", "chart", "deploy", "smoke", "cluster", "pipeline", "doctor"):
        assert f"  {group} " in out


def test_version() -> None:
    result = ci("--version")
    assert (result.returncode, result.stdout) == (0, f"ci, version {__version__}\n")


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (("nosuch",), "error: ci: No such command 'nosuch'."),
        (("pipeline", "run", "--until", "x"), "error: ci pipeline run: Invalid value for --until:"),
        (("config", "show", "--bogus"), "error: ci config show: No such option '--bogus'"),
    ],
)
def test_usage_errors_are_one_line_with_exit_2(args: tuple[str, ...], expected: str) -> None:
    result = ci(*args)
    assert result.returncode == 2
    assert len(result.stderr.splitlines()) == 1, result.stderr
    assert result.stderr.startswith(expected)
    assert "Traceback" not in result.stderr


def test_sigterm_before_any_program_runs_ends_as_interrupted() -> None:
    """A cancelled job's SIGTERM may come while a step is still starting: it ends like
    Ctrl-C (one line, exit 130), not as a kill with no cleanup."""
    script = (
        "import sys, time\n"
        "from ci import cli\n"
        "cli.main.command('sleepy')(lambda: time.sleep(20))\n"
        "print('ready', flush=True)\n"
        "sys.argv = ['ci', 'sleepy']\n"
        "cli.main()\n"
    )
    run = subprocess.Popen(
        [sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    assert run.stdout is not None
    assert run.stdout.readline().strip() == "ready"
    time.sleep(0.5)
    run.send_signal(signal.SIGTERM)
    _, err = run.communicate(timeout=20)
    assert run.returncode == 130
    assert err.strip().splitlines() == ["interrupted"]
