"""End offsets asked on a connection of their own, not the worker consumer's.

The worker's consumer talks to each broker over one connection, and a broker answers the
requests of a connection in order: a `ListOffsets` sent while a fetch long-polls (faust's
`fetch_max_wait_ms` is 1.5 s) waits for that fetch. The profiles catch-up asks for the
`locations` end offsets at the first record after every assignment, so a restart priced its
first record ~1.4-1.6 s later than it could (docs/stream.md, "Profiles at scale"). A short-lived
consumer of its own answers in a few tens of milliseconds.
"""

from __future__ import annotations

from collections.abc import Sequence

from aiokafka import AIOKafkaConsumer, TopicPartition


async def end_offsets_apart(
    bootstrap: Sequence[str], topic: str, partitions: Sequence[int]
) -> dict[int, int]:
    """The end offsets of `topic`'s `partitions` as a read_committed reader sees them (the
    worker's consumer reads committed: `faust_fixes`), keyed by partition."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=list(bootstrap),
        group_id=None,
        enable_auto_commit=False,
        isolation_level="read_committed",
    )
    try:
        await consumer.start()
        ends = await consumer.end_offsets([TopicPartition(topic, p) for p in partitions])
    finally:
        await consumer.stop()
    return {tp.partition: int(offset) for tp, offset in ends.items()}
