"""How many records one fetch may hand the agents, and how deep their queues are, so that a
busy agent never stops the delivery of the other topics.

Why: faust delivers every topic from one fetch loop. An agent queue that is full makes the
conductor *await* its `put`, inside that loop, so nothing else is delivered until the agent
takes an event. The cost agent, waiting for a partition's profiles (`ProfilesCatchUp`), takes
none: on a cold start with 20,000 profiles and 40,000 records waiting, its queue (faust's
default 4,096) filled from the records fetch, the `locations` records behind them were never
delivered, and after the catch-up's 30 s bound 18,397 records were dead-lettered
`unknown_location` (docs/stream.md, "the profiles agent stalls behind a full records queue").

faust does stop fetching a partition whose queue is under pressure (at `maxsize /
pressure_high_ratio`), but only from the next fetch on, and a partition at the first event it
delivers under pressure: every partition may still bring one fetch. So a fetch is capped at
`max_poll_records` and the queue is sized so that what is over the pressure mark holds one
fetch per partition: then a `put` never waits and `locations` always gets through.
"""

from __future__ import annotations

import math

from faust.transport.conductor import ConductorCompiler
from mode.utils.queues import FlowControlQueue

from meterflow._guards import Names, Value
from meterflow.stream.faust_fixes import BORROWED

DEFAULT_QUEUE = 4096
"""faust's `stream_buffer_maxsize` default: the floor."""


@BORROWED.patch(
    Value(FlowControlQueue, "pressure_high_ratio", 1.25),  # the pressure mark: maxsize / 1.25
    # the conductor pauses a partition under pressure, and awaits `put` on a full queue
    Names(ConductorCompiler, "build", ("full", "put_nowait_enhanced", "put")),
    also_written_for={"mode-streaming": "0.7"},
)
def stream_buffer_size(partitions: int, max_poll_records: int) -> int:
    """faust's `stream_buffer_maxsize` for `partitions` input partitions per topic, each of
    which may deliver one fetch of up to `max_poll_records` over the pressure mark."""
    over_mark = partitions * max_poll_records
    # room over the mark = maxsize - maxsize / ratio = maxsize * (1 - 1 / ratio)
    needed = math.ceil(over_mark / (1 - 1 / FlowControlQueue.pressure_high_ratio)) + 1
    return max(DEFAULT_QUEUE, needed)
