"""Hold pricing of a partition until its profiles are loaded.

`locations` and `meter-records` are consumed by two agents side by side, so on a cold start (or
after a rebalance onto a worker with an empty memory store) records would be priced before the
profiles published earlier were applied, and dead-lettered as `unknown_location`. Before the
first record of a partition is priced, the cost agent waits until the profiles agent has applied
`locations` (same partition number: co-partitioned) up to its end offset as seen at that moment,
or the group's committed offset already covers it. Later profile updates race records as any
two topics do (design §1: a profile applies to records processed after it).

The end offsets of every assigned partition are asked for in one request, at the first wait
after an assignment: the consumer's connection serves requests in order, so each request can
queue behind a fetch that long-polls for up to 1.5 s (faust's `fetch_max_wait_ms`). Asked
partition by partition, a cold start of six partitions stalled pricing for about 8 s.

A rebalance ends the wait (`CatchUpInterruptedError`): faust suspends the flow and empties the
agents' queues, so the profiles waited for stop coming, while the revocation itself waits for
the cost agent to finish its batch. Waiting on, one full `max_wait_s` per partition of the
batch, kept a joining worker out of the group past its rebalance timeout (the scale-out bench:
one of two workers priced 3 records in all). The caller turns the batch away unprocessed (it is
fetched again after the assignment's seek) instead of pricing it without its profiles.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from meterflow.logs import event

log = logging.getLogger(__name__)


class CatchUpInterruptedError(Exception):
    """The flow stopped (a rebalance) while a partition waited for its profiles: nothing of
    the batch may be processed or acked."""


class ProfilesCatchUp:
    def __init__(
        self,
        *,
        end_offsets: Callable[[int], Awaitable[Mapping[int, int]]],
        committed_offset: Callable[[int], int | None],
        max_wait_s: float = 30.0,
        flow_active: Callable[[], bool] = lambda: True,
    ) -> None:
        """`end_offsets(partition)`: `locations` end offsets of at least `partition`, ideally of
        every assigned partition (they are kept until the next assignment); `flow_active()`:
        False once a rebalance (or the stop) suspended the delivery of records."""
        self._flow_active = flow_active
        self._end_offsets = end_offsets
        self._committed_offset = committed_offset
        self._max_wait_s = max_wait_s
        self._applied: dict[int, int] = {}
        self._ready: set[int] = set()
        self._ends: dict[int, int] = {}

    def applied(self, partition: int, offset: int) -> None:
        """The profiles agent finished the `locations` message at this position."""
        if offset > self._applied.get(partition, -1):
            self._applied[partition] = offset

    def reset(self) -> None:
        """After a rebalance: check every partition again before pricing it."""
        self._ready.clear()
        self._ends.clear()

    def _caught_up(self, partition: int, end: int) -> bool:
        committed = self._committed_offset(partition) or 0
        return end == 0 or committed >= end or self._applied.get(partition, -1) >= end - 1

    async def _end_offset(self, partition: int) -> int:
        if partition not in self._ends:
            self._ends.update(await self._end_offsets(partition))
        return self._ends[partition]

    async def wait(self, partition: int, offset: int | None = None) -> None:
        """Return once `partition` may be priced; `offset` (first record to price) is logged.
        Raises `CatchUpInterruptedError` if the flow stops before."""
        if partition in self._ready:
            return
        started = time.monotonic()
        try:
            end = await asyncio.wait_for(self._end_offset(partition), timeout=10)
        except Exception as exc:  # incl. TimeoutError, KeyError: never block pricing on metadata
            event(
                log,
                "profiles_catch_up_skipped",
                logging.WARNING,
                partition=partition,
                error=repr(exc),
            )
            self._ready.add(partition)
            return

        def warn(what: str, **more: Any) -> None:
            applied = self._applied.get(partition)
            fields = {"partition": partition, "end_offset": end, "applied": applied, **more}
            event(log, what, logging.WARNING, **fields)

        while not self._caught_up(partition, end):
            if not self._flow_active():
                waited_s = round(time.monotonic() - started, 3)
                warn("profiles_catch_up_interrupted", waited_s=waited_s)
                raise CatchUpInterruptedError(f"partition {partition}: the flow stopped")
            if time.monotonic() - started > self._max_wait_s:
                warn("profiles_catch_up_gave_up")
                break
            await asyncio.sleep(0.02)
        self._ready.add(partition)
        event(
            log,
            "profiles_caught_up",
            partition=partition,
            end_offset=end,
            first_record_offset=offset,
            waited_s=round(time.monotonic() - started, 3),
        )
