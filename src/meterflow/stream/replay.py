"""Dead-letter replay: re-publish dead-lettered meter records and readings where they came from.

Reads `dead-letters` up to the end offsets seen at start (so records that fail again, and land
back in `dead-letters`, are not replayed in the same run), from the replay group's committed
offsets or from the beginning, then re-sends the matching records in the order they first
arrived (the letters' timestamps, then their positions): a meter's readings refused while
keyless are spread over partitions, and sent back in another order each one behind a later
one would be `stale_reading`. The run holds its records in memory until then (a few hundred
bytes each). Each goes under its location's key (the original key when it names none:
`dead_letters.replay_key`), with the id it had (see `dead_letters.replay_payload`) and its
original Kafka timestamp (the letter's), so its result id is the one a first success would
have had and a correction sent since is not overwritten by it (docs/sink.md, "Duplicates and
corrections"); a reading goes back to `meter-readings`, or the interval derived from it to
`meter-records` (`dead_letters.replay_message`). Offsets are committed only after every
re-sent message is acknowledged, and with `codes` never past a letter they left out: a later
run (another code, once its cause is fixed) still finds it. The letters after it that this run
replayed are read again then, and replayed again if they match that run's codes: the same
records with the same ids and timestamps, so at most a duplicate, never a lost letter.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Collection
from dataclasses import dataclass, field
from enum import Enum
from operator import attrgetter
from typing import NamedTuple

from aiokafka import AIOKafkaConsumer, TopicPartition
from pydantic import ValidationError

from meterflow.contract.topics import (
    DEAD_LETTERS,
    MAX_DEAD_LETTER_BYTES,
    METER_READINGS,
    METER_RECORDS,
)
from meterflow.kafka_admin import bootstrap_servers
from meterflow.logs import event
from meterflow.models import DeadLetter, SourceRef, loads
from meterflow.settings import Settings
from meterflow.stream.dead_letters import replay_key, replay_message
from meterflow.stream.producing import kafka_producer

log = logging.getLogger(__name__)


@dataclass
class ReplaySummary:
    read: int = 0
    replayed: int = 0
    readings: int = 0  # of `replayed`, those sent back to `meter-readings`
    skipped_code: int = 0
    skipped_not_a_record: int = 0
    unreadable: int = 0
    by_code: Counter[str] = field(default_factory=Counter)


def replay_group_id(settings: Settings) -> str:
    return f"{settings.topic_prefix}{settings.app_id}-dlq-replay"


async def replay_dead_letters(
    settings: Settings,
    *,
    codes: Collection[str] = (),
    from_beginning: bool = False,
    dry_run: bool = False,
    group_id: str | None = None,
) -> ReplaySummary:
    """Replay once, up to the current end of `dead-letters`; see the module docstring."""
    summary = ReplaySummary()
    dlq_topic = settings.topic(DEAD_LETTERS)
    records_topic = settings.topic(METER_RECORDS)
    readings_topic = settings.topic(METER_READINGS)
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap_servers(settings),
        group_id=group_id or replay_group_id(settings),
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        max_partition_fetch_bytes=MAX_DEAD_LETTER_BYTES,
    )
    try:
        await consumer.start()
    except BaseException:
        await consumer.stop()  # a failed start leaves its client open ("Unclosed …" at exit)
        raise
    try:
        async with kafka_producer(settings) as producer:
            numbers = sorted(await producer.partitions_for(dlq_topic))  # waits for metadata
            partitions = [TopicPartition(dlq_topic, p) for p in numbers]
            consumer.assign(partitions)
            if from_beginning:
                await consumer.seek_to_beginning(*partitions)
            end = await consumer.end_offsets(partitions)
            remaining = {tp for tp in partitions if await consumer.position(tp) < end[tp]}
            resend: list[_Resend] = []
            # Per partition, the first letter `codes` left out: the group is committed there,
            # not past it, so a later run can still replay it (an offset keeps no holes).
            kept: dict[TopicPartition, int] = {}
            while remaining:
                batches = await consumer.getmany(*remaining, timeout_ms=1000, max_records=1000)
                for tp, messages in batches.items():
                    for message in messages:
                        if message.offset >= end[tp]:
                            continue
                        summary.read += 1
                        outgoing = _outgoing(
                            message.value, records_topic, readings_topic, codes, summary
                        )
                        if outgoing is _LEFT_OUT:
                            kept.setdefault(tp, message.offset)
                            continue
                        if outgoing is None:
                            continue
                        topic, payload, source = outgoing
                        summary.replayed += 1
                        summary.readings += topic == readings_topic
                        if dry_run:
                            continue
                        # the letter's timestamp is its record's (the worker set it): the
                        # record keeps when it first arrived, so a version sent since wins
                        stamp = message.timestamp if message.timestamp >= 0 else None
                        where = (-1, -1) if source is None else (source.partition, source.offset)
                        order = (-1 if stamp is None else stamp, *where)
                        key = replay_key(payload, message.key)
                        resend.append(_Resend(order, topic, payload, key, stamp))
                for tp in list(remaining):
                    if await consumer.position(tp) >= end[tp]:
                        remaining.discard(tp)
            pending = [  # none in a dry run
                await producer.send(r.topic, value=r.payload, key=r.key, timestamp_ms=r.stamp)
                for r in sorted(resend, key=_ORDER)
            ]
            for future in pending:
                await future  # raises if one was not delivered: nothing gets committed
        if not dry_run:
            await consumer.commit({tp: kept.get(tp, end[tp]) for tp in partitions})
    finally:
        await consumer.stop()
    event(
        log,
        "dead_letters_replayed",
        read=summary.read,
        replayed=summary.replayed,
        readings=summary.readings,
        dry_run=dry_run,
        by_code=dict(summary.by_code),
    )
    return summary


class _Resend(NamedTuple):
    """One message to send again, and where it goes in the replay's order."""

    order: tuple[int, int, int]
    """The letter's timestamp (when its record first arrived), then its record's position."""
    topic: str
    payload: bytes
    key: bytes | None
    stamp: int | None


_ORDER = attrgetter("order")


class _LeftOut(Enum):
    BY_CODE = "by_code"


_LEFT_OUT = _LeftOut.BY_CODE
"""A replayable letter `codes` leave out: the group is not committed past it."""


def _outgoing(
    value: bytes | None,
    records_topic: str,
    readings_topic: str,
    codes: Collection[str],
    summary: ReplaySummary,
) -> tuple[str, bytes, SourceRef | None] | _LeftOut | None:
    """(topic, bytes, the record's source) to re-send; `_LEFT_OUT` for a letter of another
    code; None for one that can never be replayed (unreadable, not a record)."""
    try:
        letter = DeadLetter.model_validate(loads(value or b""))
    except (ValueError, ValidationError):
        summary.unreadable += 1
        return None
    code = letter.error.code.value
    if codes and code not in codes:
        summary.skipped_code += 1
        return _LEFT_OUT
    outgoing = replay_message(letter, records_topic=records_topic, readings_topic=readings_topic)
    if outgoing is None:
        summary.skipped_not_a_record += 1  # e.g. an invalid profile from `locations`
        return None
    summary.by_code[code] += 1
    return (*outgoing, letter.source)
