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
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.errors import TopicAlreadyExistsError, UnknownTopicOrPartitionError

from meterflow.contract.topics import TOPICS, TopicSpec
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
    """Create the missing contract topics; return the names created (existing ones are kept,
    their size limits raised to the contract's: `raise_size_limits`).

    `meter-records` and `locations` get the same partition count, `settings.topic_partitions`,
    which is what co-partitions them by `location_id` key.
    """
    wanted = [
        NewTopic(
            name=settings.topic(spec.name),
            num_partitions=settings.topic_partitions,
            replication_factor=settings.topic_replication,
            topic_configs=spec.configs(),
        )
        for spec in TOPICS
    ]
    created = await create_missing_topics(settings, wanted)
    if created:
        event(log, "topics_created", topics=created, partitions=settings.topic_partitions)
    older = [spec for spec in TOPICS if settings.topic(spec.name) not in created]
    raised = await raise_size_limits(settings, older)
    if raised:
        event(log, "topic_limits_raised", topics=raised)
    return created


_OWN_CONFIG = 1
"""DescribeConfigs v1+ `config_source`: a value set on the topic itself (DYNAMIC_TOPIC_CONFIG)."""


async def raise_size_limits(settings: Settings, specs: Iterable[TopicSpec]) -> list[str]:
    """Give each existing topic of `specs` its `max.message.bytes` where it has less; return
    the names changed. A topic created before its limit was raised (an older release) would
    otherwise keep refusing what the contract sends it (`contract.topics.MAX_DEAD_LETTER_BYTES`).

    AlterConfigs replaces a topic's own configs as a whole, so the ones it has are sent along."""
    limits = {
        settings.topic(spec.name): str(spec.max_message_bytes)
        for spec in specs
        if spec.max_message_bytes is not None
    }
    if not limits:
        return []
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap_servers(settings))
    await admin.start()
    try:
        changes = []
        for name, own in (await _own_configs(admin, list(limits))).items():
            if int(own.get("max.message.bytes", 0)) < int(limits[name]):
                configs = own | {"max.message.bytes": limits[name]}
                changes.append(ConfigResource(ConfigResourceType.TOPIC, name, configs))
        if not changes:
            return []
        for response in await admin.alter_configs(changes):
            for code, message, _, name in response.resources:
                if code:
                    raise RuntimeError(f"cannot raise the size limit of topic {name}: {message}")
        return [change.name for change in changes]
    finally:
        await admin.close()


async def _own_configs(
    admin: AIOKafkaAdminClient, names: list[str], wait_s: float = 10.0
) -> dict[str, dict[str, str]]:
    """The configs set on each topic itself, by name. A topic another process has just created
    is unknown to the broker answering for a moment: asked again until `wait_s` has passed."""
    deadline = asyncio.get_running_loop().time() + wait_s
    resources = [ConfigResource(ConfigResourceType.TOPIC, name) for name in names]
    while True:
        found: dict[str, dict[str, str]] = {}
        unknown = ""
        for response in await admin.describe_configs(resources):
            if response.API_VERSION < 1:  # v0 says `is_default`, not where a value comes from
                raise RuntimeError("the broker answers DescribeConfigs v0 only: Kafka ≥ 1.1 needed")
            for code, message, _, name, entries, *_ in response.resources:
                if code == UnknownTopicOrPartitionError.errno:
                    unknown = name
                elif code:
                    raise RuntimeError(f"cannot read the configs of topic {name}: {message}")
                else:
                    found[name] = {e[0]: e[1] for e in entries if e[3] == _OWN_CONFIG}
        if not unknown:
            return found
        if asyncio.get_running_loop().time() > deadline:
            raise RuntimeError(f"topic {unknown} stayed unknown for {wait_s:g} s")
        await asyncio.sleep(0.1)


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
