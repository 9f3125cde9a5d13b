"""Try again until an outcome is good or a deadline passes, on ``tenacity``.

Why a helper around tenacity: the steps that wait for something (smoke checks for a fresh
deploy to serve) share a deadline across several waits, pause a fixed interval but never past
the deadline, and want the last outcome back rather than an exception, so their report can
show what failed. Clock and sleep are parameters so that tests can drive the loop.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

from tenacity import RetryCallState, Retrying, retry_if_result

T = TypeVar("T")


def poll(
    attempt: Callable[[], T],
    *,
    ok: Callable[[T], bool],
    until: float,
    interval: float,
    on_retry: Callable[[T], None] | None = None,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> T:
    """Call ``attempt`` until ``ok`` says its outcome is good or ``clock()`` reaches ``until``.

    Between tries it sleeps ``interval`` seconds, or what is left before ``until`` when that is
    less; ``on_retry`` hears each outcome that is tried again. The last outcome is returned,
    good or not; an exception from ``attempt`` ends the polling and propagates.
    """

    def notify(state: RetryCallState) -> None:
        if on_retry is not None and state.outcome is not None:
            on_retry(state.outcome.result())

    def last(state: RetryCallState) -> T:
        assert state.outcome is not None
        result: T = state.outcome.result()
        return result

    retrying = Retrying(
        retry=retry_if_result(lambda outcome: not ok(outcome)),
        stop=lambda _state: clock() >= until,
        wait=lambda _state: max(0.0, min(interval, until - clock())),
        before_sleep=notify,
        retry_error_callback=last,
        sleep=sleep,
    )
    return retrying(attempt)
