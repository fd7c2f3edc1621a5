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

from collections import defaultdict
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from faust.transport.consumer import Consumer
from faust.transport.drivers.aiokafka import AIOKafkaConsumerThread

_PATCHED = "_meterflow_rewinds_uncommitted"
_PATCHED_READ = "_meterflow_never_drops"
NO_DROP_TOPICS_ATTR = "meterflow_no_drop_topics"


class _NeverDropReadOffsets(defaultdict[Any, int | None]):
    """faust's per-partition "read offset", except that it reads as unknown for our input
    topics, so faust never drops a fetched record of them as "already read".

    Seen in the SIGKILL test: after a restart, a fetch loop iteration that was interrupted by a
    rebalance recorded a read offset hundreds of records ahead of the committed offset the new
    generation seeks to; every refetched record below it was then dropped, never priced, and
    later committed past. Redelivering instead is safe here: processing is at-least-once and a
    redelivered record gets the same result id.
    """

    def __init__(self, topics: frozenset[str]) -> None:
        super().__init__(lambda: None)
        self._topics = topics

    def __getitem__(self, tp: Any) -> int | None:
        if tp.topic in self._topics:
            return None
        return super().__getitem__(tp)


def install() -> None:
    """Install both patches once per process (idempotent). The read-offset one applies to the
    topics an app lists in its `meterflow_no_drop_topics` attribute."""
    _install_rewind()
    _install_never_drop()


def _install_never_drop() -> None:
    if getattr(Consumer, _PATCHED_READ, False):
        return
    original_init = Consumer.__init__

    def init_never_dropping(self: Any, *args: Any, **kwargs: Any) -> None:
        original_init(self, *args, **kwargs)
        topics = frozenset(getattr(self.app, NO_DROP_TOPICS_ATTR, ()))
        if topics:
            self._read_offset = _NeverDropReadOffsets(topics)

    setattr(Consumer, "__init__", init_never_dropping)  # noqa: B010
    setattr(Consumer, _PATCHED_READ, True)


def _install_rewind() -> None:
    """Patch `AIOKafkaConsumerThread.seek_to_committed` (see the module docstring)."""
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
