"""The one way the toolkit runs an external program.

Why one wrapper: every step shells out (helm, kubectl, docker buildx, kubeconform), and every
one of them needs the same things done right -- an argv tuple (never a shell string), a timeout
that kills the whole process group, output streamed line by line to whoever is watching while it
is also captured for the error message, and a clear error when the program is missing.
"""

from __future__ import annotations

import codecs
import os
import selectors
import shlex
import signal
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from ci.errors import ProcessError, ToolError

#: Called with each line (without the newline) and the stream name, "stdout" or "stderr".
LineSink = Callable[[str, str], None]

#: How many trailing lines of output go into an error message.
ERROR_TAIL_LINES = 30


@dataclass(frozen=True)
class Result:
    """What a finished program produced."""

    argv: tuple[str, ...]
    returncode: int
    stdout: str
    stderr: str
    duration: float = field(default=0.0, compare=False)

    @property
    def ok(self) -> bool:
        return self.returncode == 0


def format_argv(argv: Sequence[str]) -> str:
    """Render argv for a message, quoting only where a reader would need it."""
    return " ".join(shlex.quote(a) for a in argv)


def tail(text: str, lines: int = ERROR_TAIL_LINES) -> str:
    """The last ``lines`` non-empty lines of ``text``: the part of a log that explains a failure."""
    kept = [ln for ln in text.splitlines() if ln.strip()]
    return "\n".join(kept[-lines:])


def run(
    argv: Sequence[str],
    *,
    timeout: float | None = 600,
    check: bool = True,
    env: Mapping[str, str] | None = None,
    cwd: str | os.PathLike[str] | None = None,
    input: str | None = None,
    on_line: LineSink | None = None,
    what: str | None = None,
) -> Result:
    """Run ``argv`` and return its result.

    ``env`` is added on top of the current environment. ``on_line`` receives output as it
    arrives; output is always captured too. With ``check`` a non-zero exit raises
    ``ProcessError`` carrying the tail of the output. ``what`` names the action in messages
    ("helm upgrade", "build backend"); it defaults to the program name.
    """
    args = tuple(str(a) for a in argv)
    label = what or os.path.basename(args[0])
    full_env = {**os.environ, **env} if env is not None else None
    started = time.monotonic()
    try:
        proc = subprocess.Popen(
            args,
            stdin=subprocess.PIPE if input is not None else subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=full_env,
            cwd=cwd,
            text=True,
            errors="replace",
            start_new_session=True,
        )
    except FileNotFoundError as exc:
        raise ToolError(f"{args[0]}: program not found (needed for {label})") from exc
    except PermissionError as exc:
        raise ToolError(f"{args[0]}: not executable (needed for {label})") from exc
    out, err, timed_out = _communicate(proc, input, timeout, on_line)
    result = Result(args, proc.returncode, out, err, time.monotonic() - started)
    if timed_out:
        raise ProcessError(
            f"{label} timed out after {timeout:g}s: {format_argv(args)}",
            detail=tail(err or out),
        )
    if check and not result.ok:
        raise ProcessError(
            f"{label} failed with exit code {result.returncode}: {format_argv(args)}",
            detail=tail(err) or tail(out),
        )
    return result


def _communicate(
    proc: subprocess.Popen[str],
    input: str | None,
    timeout: float | None,
    on_line: LineSink | None,
) -> tuple[str, str, bool]:
    """Pump stdout and stderr line by line until exit or deadline; kill the group on timeout.

    Reads the raw pipes with ``os.read`` rather than ``readline``: a buffered reader keeps
    lines that arrived together in its own buffer, where ``select`` cannot see them, so they
    would reach ``on_line`` late; and a line without its newline would block past the deadline.
    """
    if input is not None and proc.stdin is not None:
        try:
            proc.stdin.write(input)
            proc.stdin.close()
        except BrokenPipeError:
            pass
    assert proc.stdout is not None
    assert proc.stderr is not None
    streams = {
        "stdout": _LineSplitter("stdout", on_line),
        "stderr": _LineSplitter("stderr", on_line),
    }
    deadline = None if timeout is None else time.monotonic() + timeout
    with selectors.DefaultSelector() as sel:
        sel.register(proc.stdout.fileno(), selectors.EVENT_READ, "stdout")
        sel.register(proc.stderr.fileno(), selectors.EVENT_READ, "stderr")
        while sel.get_map():
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                break
            for key, _ in sel.select(timeout=remaining):
                data = os.read(key.fd, 65536)
                if not data:
                    sel.unregister(key.fd)
                streams[key.data].feed(data)
    timed_out = not _wait(proc, deadline)
    proc.stdout.close()
    proc.stderr.close()
    return streams["stdout"].text(), streams["stderr"].text(), timed_out


class _LineSplitter:
    """Decodes one stream's bytes and hands each complete line to the sink as it arrives."""

    def __init__(self, name: str, on_line: LineSink | None) -> None:
        self.name = name
        self.on_line = on_line
        self.decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self.partial = ""
        self.chunks: list[str] = []

    def feed(self, data: bytes) -> None:
        """Take the next bytes; an empty ``data`` means end of stream (flush the last line)."""
        text = self.partial + self.decoder.decode(data, final=not data)
        lines = text.replace("\r\n", "\n").split("\n")
        self.partial = lines.pop()
        if not data and self.partial:
            lines.append(self.partial)
            self.partial = ""
            self._emit(lines[:-1], newline=True)
            self._emit(lines[-1:], newline=False)
            return
        self._emit(lines, newline=True)

    def _emit(self, lines: list[str], *, newline: bool) -> None:
        for line in lines:
            self.chunks.append(line + "\n" if newline else line)
            if self.on_line is not None:
                self.on_line(line, self.name)

    def text(self) -> str:
        """Everything received, including a last line still without its newline."""
        return "".join(self.chunks) + self.partial


def _wait(proc: subprocess.Popen[str], deadline: float | None) -> bool:
    """Wait for exit until ``deadline``; on expiry kill the group and return False."""
    remaining = None if deadline is None else max(deadline - time.monotonic(), 0)
    try:
        proc.wait(timeout=remaining)
        return True
    except subprocess.TimeoutExpired:
        _kill_group(proc)
        return False


def _kill_group(proc: subprocess.Popen[str]) -> None:
    """Stop the program and anything it started, politely first."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=5)
            return
        except subprocess.TimeoutExpired:
            continue
