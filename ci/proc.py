"""The one way the toolkit runs an external program.

Why one wrapper: every step shells out (helm, kubectl, docker buildx, kubeconform), and every
one of them needs the same things done right -- an argv tuple (never a shell string), a timeout
that kills the whole process group, output streamed line by line to whoever is watching while it
is also captured for the error message, and a clear error when the program is missing.

Interrupts: each program runs in its own session, so a Ctrl-C at the terminal reaches only this
process. While a program runs, SIGINT and SIGTERM are passed on to its process group; the
program gets a bounded grace period to stop (Helm marks the release failed and rolls back),
then whatever is left is killed, and only then does the interrupt continue as
``Signalled`` (a ``KeyboardInterrupt``, so the CLI exits 130). No caller can leave a program
it started running behind it.
"""

from __future__ import annotations

import codecs
import os
import selectors
import shlex
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field

from ci.errors import ProcessError, ToolError

#: Called with each line (without the newline) and the stream name, "stdout" or "stderr".
LineSink = Callable[[str, str], None]

#: How many trailing lines of output go into an error message.
ERROR_TAIL_LINES = 30

#: Seconds a program may take to stop after an interrupt was passed on to it.
DEFAULT_GRACE = 30.0

#: The signals passed on to running programs.
FORWARDED = (signal.SIGINT, signal.SIGTERM)

#: Programs running now, in any thread: an interrupt is passed on to each of them. Re-entrant:
#: the signal handler takes it in the main thread, which may hold it when the signal lands.
_live: set[subprocess.Popen[str]] = set()
_live_lock = threading.RLock()


class Signalled(KeyboardInterrupt):
    """SIGINT or SIGTERM received: unwinds like Ctrl-C, so every ``finally`` runs."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


class Cancel:
    """Lets another thread stop a running program, as an interrupt would (SIGTERM first).

    A deploy's monitor uses it when a failure is final: Helm is told to stop and rolls back,
    instead of waiting out its timeout. The program still gets to finish stopping.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._proc: subprocess.Popen[str] | None = None
        self.reason: str | None = None

    def attach(self, proc: subprocess.Popen[str]) -> None:
        with self._lock:
            self._proc = proc
            if self.reason is not None:
                _signal_group(proc, signal.SIGTERM)

    def cancel(self, reason: str) -> None:
        """Stop the program (now, or as soon as it starts); the first reason is kept."""
        with self._lock:
            if self.reason is None:
                self.reason = reason
            if self._proc is not None and self._proc.poll() is None:
                _signal_group(self._proc, signal.SIGTERM)


def _forward(signum: int) -> None:
    """Pass ``signum`` on to the process group of every program running now."""
    with _live_lock:
        running = list(_live)
    for child in running:
        _signal_group(child, signum)


def _on_signal(signum: int, _frame: object) -> None:
    _forward(signum)
    raise Signalled(signum)


@contextmanager
def interruptible() -> Iterator[None]:
    """Within the block, SIGINT and SIGTERM reach running programs and raise ``Signalled``.

    Outside the main thread (where Python cannot install handlers) the block changes nothing;
    the main thread's handler still passes signals on to programs started from any thread.
    Nested blocks keep the outermost handler.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {sig: signal.getsignal(sig) for sig in FORWARDED}
    if all(h is _on_signal for h in previous.values()):
        yield
        return
    for sig in FORWARDED:
        signal.signal(sig, _on_signal)
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


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
    grace: float = DEFAULT_GRACE,
    cancel: Cancel | None = None,
) -> Result:
    """Run ``argv`` and return its result.

    ``env`` is added on top of the current environment. ``on_line`` receives output as it
    arrives; output is always captured too. With ``check`` a non-zero exit raises
    ``ProcessError`` carrying the tail of the output. ``what`` names the action in messages
    ("helm upgrade", "build backend"); it defaults to the program name. On SIGINT or SIGTERM
    the program has ``grace`` seconds to stop before its group is killed; then ``Signalled``
    is raised. ``cancel`` lets another thread stop the program early.
    """
    args = tuple(str(a) for a in argv)
    label = what or os.path.basename(args[0])
    full_env = {**os.environ, **env} if env is not None else None
    started = time.monotonic()
    with interruptible():
        proc = _start(args, label, input, full_env, cwd)
        if cancel is not None:
            cancel.attach(proc)
        try:
            out, err, timed_out = _communicate(proc, input, timeout, on_line)
        except KeyboardInterrupt as exc:
            if not isinstance(exc, Signalled):  # raised without our handler: pass it on here
                _signal_group(proc, signal.SIGINT)
            _stop_after_signal(proc, grace, on_line)
            raise
        finally:
            with _live_lock:
                _live.discard(proc)
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


def _start(
    args: tuple[str, ...],
    label: str,
    input: str | None,
    env: Mapping[str, str] | None,
    cwd: str | os.PathLike[str] | None,
) -> subprocess.Popen[str]:
    """Start the program in its own session and register it for interrupts."""
    try:
        proc = subprocess.Popen(
            args,
            stdin=subprocess.PIPE if input is not None else subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
            cwd=cwd,
            text=True,
            errors="replace",
            start_new_session=True,
        )
    except FileNotFoundError as exc:
        raise ToolError(f"{args[0]}: program not found (needed for {label})") from exc
    except PermissionError as exc:
        raise ToolError(f"{args[0]}: not executable (needed for {label})") from exc
    with _live_lock:
        _live.add(proc)
    return proc


def _signal_group(proc: subprocess.Popen[str], signum: int) -> None:
    try:
        os.killpg(proc.pid, signum)
    except (ProcessLookupError, PermissionError):
        return


def _stop_after_signal(proc: subprocess.Popen[str], grace: float, on_line: LineSink | None) -> None:
    """The signal was passed on: let the program stop within ``grace``, then end what is left.

    Its output is still read (and shown) meanwhile, so a pipe that fills cannot block it. A
    second signal during the grace period ends the wait at once.
    """
    deadline = time.monotonic() + grace
    try:
        _drain(proc, deadline, on_line)
        if proc.poll() is None:
            proc.wait(timeout=max(deadline - time.monotonic(), 0))
    except (KeyboardInterrupt, subprocess.TimeoutExpired):
        pass
    finally:
        # the polite signal was already passed on: what is still running now is killed
        _signal_group(proc, signal.SIGKILL)
        proc.wait()
        for stream in (proc.stdout, proc.stderr, proc.stdin):
            if stream is not None:
                stream.close()


def _drain(proc: subprocess.Popen[str], deadline: float, on_line: LineSink | None) -> None:
    """Read the program's remaining output until both pipes close or ``deadline`` passes."""
    streams = {
        "stdout": _LineSplitter("stdout", on_line),
        "stderr": _LineSplitter("stderr", on_line),
    }
    with selectors.DefaultSelector() as sel:
        for name in streams:
            pipe = getattr(proc, name)
            if pipe is not None and not pipe.closed:
                sel.register(pipe.fileno(), selectors.EVENT_READ, name)
        while sel.get_map():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            for key, _ in sel.select(timeout=remaining):
                data = os.read(key.fd, 65536)
                if not data:
                    sel.unregister(key.fd)
                streams[key.data].feed(data)


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
