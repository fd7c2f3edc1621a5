"""A targeted fix for faust-streaming 0.15.3 losing the first records of a fresh partition.

Seen in our two-worker test: records that arrive while a rebalance's table recovery is running
are fetched, dropped by the suspended flow, and never fetched again when the partition has no
committed offset yet. faust "seeks stream partitions to committed offsets" after recovery, but
aiokafka's `seek_to_committed` only seeks when the committed offset is > 0, so the fetch
position stays past the dropped records (with a committed offset the seek rewinds them; that
is the path every later rebalance takes). The first records of a new partition were lost.

The fix: after seeking to committed offsets, rewind every source-topic partition that has no
committed offset (None or 0) to its beginning, which is what `auto_offset_reset="earliest"`
means anyway. Changelog partitions are left to faust's recovery.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from faust.transport.drivers.aiokafka import AIOKafkaConsumerThread

_PATCHED = "_meterflow_rewinds_uncommitted"


def install() -> None:
    """Patch `AIOKafkaConsumerThread.seek_to_committed` once per process (idempotent)."""
    if getattr(AIOKafkaConsumerThread, _PATCHED, False):
        return
    original: Callable[[Any], Awaitable[Mapping[Any, int | None]]] = (
        AIOKafkaConsumerThread.seek_to_committed
    )

    async def seek_to_committed(self: Any) -> Mapping[Any, int | None]:
        committed = await original(self)
        changelogs = set(self.app.tables.changelog_topics)
        rewind = [
            tp for tp, offset in committed.items() if not offset and tp.topic not in changelogs
        ]
        if rewind:
            await self.seek_to_beginning(*rewind)
        return committed

    setattr(AIOKafkaConsumerThread, "seek_to_committed", seek_to_committed)  # noqa: B010
    setattr(AIOKafkaConsumerThread, _PATCHED, True)
