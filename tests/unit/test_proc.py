"""The process wrapper: timeouts, streaming, and the errors a user sees."""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from pathlib import Path

import pytest

from ci import proc
from ci.errors import ProcessError, ToolError

PY = sys.executable


def _alive(pid: int) -> bool:
    """True while ``pid`` exists and is not a zombie waiting to be reaped."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def test_timeout_kills_the_whole_process_group() -> None:
    pids: list[int] = []
    script = "sleep 60 & echo $!; wait"
    started = time.monotonic()
    with pytest.raises(ProcessError, match=r"timed out after 1s"):
        proc.run(("sh", "-c", script), timeout=1, on_line=lambda line, _s: pids.append(int(line)))
    assert time.monotonic() - started < 10
    assert len(pids) == 1
    deadline = time.monotonic() + 5
    while _alive(pids[0]) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(pids[0]), "the background child of the timed-out program survived"


def test_timeout_holds_when_the_program_closes_its_output_and_keeps_running() -> None:
    started = time.monotonic()
    with pytest.raises(ProcessError, match="timed out"):
        proc.run(("sh", "-c", "exec >/dev/null 2>&1; sleep 60"), timeout=1)
    assert time.monotonic() - started < 10


def test_lines_arrive_in_order_on_each_stream() -> None:
    code = (
        "import sys\n"
        "for i in range(200):\n"
        "    print(f'out {i}', flush=True)\n"
        "    print(f'err {i}', file=sys.stderr, flush=True)\n"
    )
    seen: list[tuple[str, str]] = []
    result = proc.run((PY, "-c", code), on_line=lambda line, stream: seen.append((stream, line)))
    assert [line for s, line in seen if s == "stdout"] == [f"out {i}" for i in range(200)]
    assert [line for s, line in seen if s == "stderr"] == [f"err {i}" for i in range(200)]
    assert result.stdout.splitlines() == [f"out {i}" for i in range(200)]


def test_each_line_reaches_the_callback_while_the_program_still_runs(tmp_path: Path) -> None:
    """The program writes two lines at once, then waits until the callback has seen the second."""
    flag = tmp_path / "seen"
    code = (
        "import os, sys, time\n"
        "sys.stdout.write('first\\nsecond\\n'); sys.stdout.flush()\n"
        f"while not os.path.exists({str(flag)!r}): time.sleep(0.02)\n"
        "print('third')\n"
    )

    def on_line(line: str, _stream: str) -> None:
        if line == "second":
            flag.touch()

    result = proc.run((PY, "-c", code), timeout=10, on_line=on_line)
    assert result.stdout == "first\nsecond\nthird\n"


def test_a_last_line_without_newline_is_delivered() -> None:
    seen: list[str] = []
    result = proc.run(("printf", "a\\nb"), on_line=lambda line, _s: seen.append(line))
    assert seen == ["a", "b"]
    assert result.stdout == "a\nb"


def test_non_zero_exit_raises_with_the_tail_of_the_output() -> None:
    code = "import sys\nfor i in range(100): print(f'line {i}', file=sys.stderr)\nsys.exit(3)"
    with pytest.raises(ProcessError) as info:
        proc.run((PY, "-c", code), what="render chart")
    err = info.value
    assert err.message.startswith("render chart failed with exit code 3: ")
    assert err.detail.splitlines() == [f"line {i}" for i in range(70, 100)]
    assert err.exit_code == 1


def test_non_zero_exit_without_check_returns_the_result() -> None:
    result = proc.run(("sh", "-c", "echo out; echo err >&2; exit 4"), check=False)
    assert (result.returncode, result.stdout, result.stderr, result.ok) == (
        4,
        "out\n",
        "err\n",
        False,
    )


def test_missing_program_names_it() -> None:
    with pytest.raises(
        ToolError, match=r"^no-such-tool-xyz: program not found \(needed for lint\)$"
    ):
        proc.run(("no-such-tool-xyz", "--version"), what="lint")


def test_env_is_added_to_the_current_environment_and_input_is_fed() -> None:
    result = proc.run(
        ("sh", "-c", 'read line; echo "$line $CI_TEST_VALUE $HOME"'),
        env={"CI_TEST_VALUE": "x"},
        input="hello\n",
    )
    assert result.stdout == f"hello x {os.environ['HOME']}\n"


def test_format_argv_quotes_only_what_needs_it() -> None:
    assert proc.format_argv(("helm", "upgrade", "--set", "a=b c")) == "helm upgrade --set 'a=b c'"


# ----------------------------------------------------------------------------- interrupts

#: A program that reports which signal reached it, then stops (after ``delay`` seconds).
TRAPPING = (
    "import signal, sys, time\n"
    "delay = float(sys.argv[1])\n"
    "def stop(signum, _frame):\n"
    "    print('got', signal.Signals(signum).name, flush=True)\n"
    "    time.sleep(delay)\n"
    "    print('stopped', flush=True)\n"
    "    sys.exit(3)\n"
    "signal.signal(signal.SIGTERM, stop)\n"
    "signal.signal(signal.SIGINT, stop)\n"
    "print('ready', flush=True)\n"
    "time.sleep(60)\n"
)


def _signal_when_ready(signum: int, seen: list[str]) -> proc.LineSink:
    """Record lines; send ``signum`` to this process once the program says it is ready."""

    def sink(line: str, _stream: str) -> None:
        seen.append(line)
        if line == "ready":
            os.kill(os.getpid(), signum)

    return sink


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_is_passed_on_and_the_program_may_finish_stopping(signum: int) -> None:
    seen: list[str] = []
    started = time.monotonic()
    with pytest.raises(proc.Signalled) as caught:
        proc.run((PY, "-c", TRAPPING, "0.5"), grace=20, on_line=_signal_when_ready(signum, seen))
    assert caught.value.signum == signum
    assert isinstance(caught.value, KeyboardInterrupt)  # the CLI's Ctrl-C path: exit 130
    # the program saw the signal and its own shutdown (0.5 s) was waited for, not cut short
    assert seen == ["ready", f"got {signal.Signals(signum).name}", "stopped"]
    assert time.monotonic() - started < 10


def test_a_program_that_ignores_the_signal_is_killed_after_the_grace_period() -> None:
    pids: list[int] = []
    script = "trap '' TERM INT; sleep 60 & echo $!; echo ready; wait; wait"

    def sink(line: str, _stream: str) -> None:
        if line == "ready":
            os.kill(os.getpid(), signal.SIGTERM)
        else:
            pids.append(int(line))

    started = time.monotonic()
    with pytest.raises(proc.Signalled):
        proc.run(("sh", "-c", script), grace=1, on_line=sink)
    elapsed = time.monotonic() - started
    assert 1 <= elapsed < 10, elapsed
    deadline = time.monotonic() + 5  # killed at once; reaped by init a moment later
    while _alive(pids[0]) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(pids[0]), "the program's own child survived the interrupt"


def test_a_second_signal_ends_the_grace_period_at_once() -> None:
    seen: list[str] = []

    def sink(line: str, _stream: str) -> None:
        seen.append(line)
        if line in ("ready", "got SIGTERM"):
            os.kill(os.getpid(), signal.SIGTERM)

    started = time.monotonic()
    with pytest.raises(proc.Signalled):
        proc.run((PY, "-c", TRAPPING, "30"), grace=60, on_line=sink)
    assert time.monotonic() - started < 15
    assert "stopped" not in seen


def test_signal_handlers_are_restored_after_the_program_ends() -> None:
    before = {sig: signal.getsignal(sig) for sig in proc.FORWARDED}
    proc.run((PY, "-c", "pass"))
    assert {sig: signal.getsignal(sig) for sig in proc.FORWARDED} == before


def test_a_program_started_in_another_thread_gets_the_signal_too() -> None:
    seen: list[str] = []
    ready = threading.Event()
    outcome: list[int] = []

    def sink(line: str, _stream: str) -> None:
        seen.append(line)
        if line == "ready":
            ready.set()

    def worker() -> None:
        res = proc.run((PY, "-c", TRAPPING, "0"), check=False, on_line=sink)
        outcome.append(res.returncode)

    def interrupt_the_main_thread() -> None:
        with proc.interruptible():
            thread.start()
            assert ready.wait(20)
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(5)  # the handler raises here, in the main thread

    thread = threading.Thread(target=worker)
    with pytest.raises(proc.Signalled):
        interrupt_the_main_thread()
    thread.join(20)
    assert outcome == [3]
    assert "got SIGTERM" in seen


def test_cancel_from_another_thread_stops_the_program_politely() -> None:
    seen: list[str] = []
    token = proc.Cancel()

    def sink(line: str, _stream: str) -> None:
        seen.append(line)
        if line == "ready":
            threading.Thread(target=token.cancel, args=("image not found",)).start()

    started = time.monotonic()
    result = proc.run(
        (PY, "-c", TRAPPING, "0.2"), check=False, timeout=30, on_line=sink, cancel=token
    )
    assert time.monotonic() - started < 10
    assert result.returncode == 3  # the program's own exit after its shutdown ran
    assert seen == ["ready", "got SIGTERM", "stopped"]
    assert token.reason == "image not found"


def test_a_cancel_before_the_program_starts_stops_it_at_once() -> None:
    token = proc.Cancel()
    token.cancel("first")
    token.cancel("second")
    started = time.monotonic()
    result = proc.run(("sleep", "30"), check=False, cancel=token)
    assert time.monotonic() - started < 5
    assert result.returncode == -signal.SIGTERM
    assert token.reason == "first"
