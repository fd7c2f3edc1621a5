"""The contract's topics on a real broker: creation, clean-up, and where the broker is.

Topics are created explicitly (not by faust, which only declares its internal topics, nor by the
broker's auto-create, which would pick its own partition count and delete policy), so every
process that touches the pipeline can call `ensure_topics` first and agree on the layout.
aiokafka only, no faust: the API, the sink and the CLI use it without loading the stream app.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError

from meterflow.contract.topics import TOPICS
from meterflow.logs import error_text, event
from meterflow.settings import Settings

log = logging.getLogger(__name__)


def bootstrap_servers(settings: Settings) -> list[str]:
    """`MF_KAFKA_BOOTSTRAP` is a comma list of host:port."""
    return [part.strip() for part in settings.kafka_bootstrap.split(",") if part.strip()]


async def broker_problem(producer: AIOKafkaProducer, timeout_s: float = 2.0) -> str:
    """Why the broker did not answer a fresh metadata round trip ("" when it did): a client's
    cached metadata would say all is well with the broker down, and a consumer with nothing
    to read never notices."""
    try:
        await asyncio.wait_for(producer.client.fetch_all_metadata(), timeout=timeout_s)
    except TimeoutError:
        return f"Kafka did not answer within {timeout_s:g} s"
    except Exception as error:
        return f"Kafka unreachable: {error_text(error)}"[:500]
    return ""


async def stop_consumer(consumer: AIOKafkaConsumer) -> None:
    """`consumer.stop()`, which lets a cancellation out when the broker is gone (aiokafka
    #647: its fetcher cancels a fetch waiting to retry, then awaits it unguarded): a sink or an
    API stopped by SIGTERM while Kafka was down exited 1 with a traceback. Our own task being
    cancelled still is."""
    try:
        await consumer.stop()
    except asyncio.CancelledError:
        task = asyncio.current_task()
        if task is not None and task.cancelling():
            raise
        event(log, "consumer_stop_interrupted", logging.WARNING, reason="aiokafka#647")


async def ensure_topics(settings: Settings) -> list[str]:
    """Create the missing contract topics; return the names created (existing ones are kept).

    `meter-records` and `locations` get the same partition count, `settings.topic_partitions`,
    which is what co-partitions them by `location_id` key.
    """
    wanted = [
        NewTopic(
            name=settings.topic(spec.name),
            num_partitions=settings.topic_partitions,
            replication_factor=settings.topic_replication,
            topic_configs={"cleanup.policy": "compact" if spec.compacted else "delete"},
        )
        for spec in TOPICS
    ]
    created = await create_missing_topics(settings, wanted)
    if created:
        event(log, "topics_created", topics=created, partitions=settings.topic_partitions)
    return created


async def create_missing_topics(settings: Settings, wanted: Iterable[NewTopic]) -> list[str]:
    """Create those of `wanted` that do not exist yet; return the names created.

    Several processes start at once and each creates what it needs: a topic another one created
    in the meantime (`TopicAlreadyExists`) has the same layout, so it counts as there.
    """
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap_servers(settings))
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [topic for topic in wanted if topic.name not in existing]
        if not missing:
            return []
        response = await admin.create_topics(missing)
        created = []
        for name, code, *rest in response.topic_errors:
            if code == 0:
                created.append(name)
            elif code != TopicAlreadyExistsError.errno:  # another process won the race
                raise RuntimeError(f"cannot create topic {name}: error {code} {rest}")
        return created
    finally:
        await admin.close()


async def delete_topics_with_prefix(settings: Settings, prefix: str) -> list[str]:
    """Delete every topic whose name starts with `prefix` (a bench's or a test's own topics,
    faust's changelogs included); return the names.

    Throw-away topics add up on a long-lived broker: each partition keeps tens of KB of the
    broker's heap, and a full heap stalls every client in 0.6 s full collections.
    """
    if not prefix:
        raise ValueError("an empty prefix would delete every topic")
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap_servers(settings))
    await admin.start()
    try:
        doomed = sorted(name for name in await admin.list_topics() if name.startswith(prefix))
        if doomed:
            await admin.delete_topics(doomed)
        return doomed
    finally:
        await admin.close()
