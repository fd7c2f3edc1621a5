"""The wall clock. The core takes the time as an argument; adapters pass this (tests a fake)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

Clock = Callable[[], datetime]


def utc_now() -> datetime:
    return datetime.now(UTC)


_TICK = timedelta(microseconds=1)


class BatchClock:
    """The `time_created` of a worker's results and dead letters: one instant a batch (one
    text to write for all), a later one after each dead letter, never one at or before an
    instant given before.

    A batch record's status (`GET /meters/batch`) compares its dead letter's time with its
    stored result's, a tie reading FAILED (the letter came after). A record that failed and its
    correction priced after it in the same batch shared one instant, and read FAILED though the
    correction was stored."""

    def __init__(self, clock: Clock = utc_now) -> None:
        self._clock = clock
        self._last: datetime | None = None

    def __call__(self) -> datetime:
        now, last = self._clock(), self._last
        if last is not None and now <= last:
            now = last + _TICK
        self._last = now
        return now
