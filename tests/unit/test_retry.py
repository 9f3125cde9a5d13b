"""retry.poll: deadline, interval and outcome semantics, on a fake clock."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from ci import retry


class FakeTime:
    """A clock that only moves when slept on."""

    def __init__(self) -> None:
        self.now = 100.0
        self.slept: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def outcomes(*values: int) -> Callable[[], int]:
    """An attempt returning ``values`` in turn (the last one again once they run out)."""
    seen = list(values)

    def attempt() -> int:
        return seen.pop(0) if len(seen) > 1 else seen[0]

    return attempt


def test_returns_the_first_good_outcome_and_reports_each_retry() -> None:
    t = FakeTime()
    retried: list[int] = []
    got = retry.poll(
        outcomes(1, 2, 3, 4),
        ok=lambda v: v >= 3,
        until=t.now + 60,
        interval=5,
        on_retry=retried.append,
        clock=t.clock,
        sleep=t.sleep,
    )
    assert (got, retried, t.slept) == (3, [1, 2], [5, 5])


def test_never_sleeps_past_the_deadline_and_returns_the_last_bad_outcome() -> None:
    t = FakeTime()
    calls: list[float] = []

    def attempt() -> int:
        calls.append(t.now)
        return 0

    got = retry.poll(attempt, ok=bool, until=t.now + 12, interval=5, clock=t.clock, sleep=t.sleep)
    assert got == 0
    assert t.slept == [5, 5, 2]
    assert calls == [100, 105, 110, 112]


def test_a_deadline_already_passed_means_one_attempt_and_no_sleep() -> None:
    t = FakeTime()
    retried: list[int] = []
    got = retry.poll(
        outcomes(7),
        ok=lambda v: v == 8,
        until=t.now,
        interval=5,
        on_retry=retried.append,
        clock=t.clock,
        sleep=t.sleep,
    )
    assert (got, retried, t.slept) == (7, [], [])


def test_an_exception_ends_polling_at_once() -> None:
    t = FakeTime()
    calls = 0

    def attempt() -> int:
        nonlocal calls
        calls += 1
        if calls == 2:
            raise LookupError("gone")
        return 0

    with pytest.raises(LookupError, match="gone"):
        retry.poll(attempt, ok=bool, until=t.now + 60, interval=1, clock=t.clock, sleep=t.sleep)
    assert (calls, t.slept) == (2, [1])
