"""Before a worker joins its consumer group, every topic it subscribes to exists and every
broker's metadata lists it.

Why (issue 12 item 9: 3 of 20 fresh starts priced nothing, forever): faust creates its own
topics (the tables' changelogs, the leader topic) while the worker starts and subscribes to them
milliseconds later. The broker answers CreateTopics before its metadata shows the new topic, so
the consumer's first metadata can miss it (`… not found in cluster metadata`). The group
leader's assignment then runs without it: faust's assignor skips it (`Ignoring missing topic`)
and, for a GlobalTable's changelog, raises a KeyError in `_global_table_standby_assignments`.
aiokafka hands that error to the consumer's user and waits until it is read
(`GroupCoordinator._push_error_to_user`), which faust never does before its first assignment:
no assignment, no recovery, nothing priced, no further log line. A missing *source* topic
raises nothing but is assigned only after the next metadata refresh, up to
`consumer_metadata_max_age_ms` (5 min) later.

So `meterflow worker` creates faust's internal topics itself, with the layout faust would give
them (read from the app's own topic objects), and waits until each broker lists every topic the
worker subscribes to, with a leader for every partition, before faust starts. faust's own
declare then finds them existing. No faust internals are patched.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import faust
from aiokafka.admin import NewTopic
from aiokafka.client import AIOKafkaClient
from aiokafka.protocol.metadata import MetadataRequest
from mode.utils.times import want_seconds

from meterflow.contract.topics import TOPICS
from meterflow.kafka_admin import bootstrap_servers, create_missing_topics
from meterflow.logs import event
from meterflow.settings import Settings

log = logging.getLogger(__name__)

# faust's LeaderAssignor names its topic `{app id}-__assignor-__leader` (one partition);
# a unit test checks the name against faust's own.
LEADER_TOPIC_SUFFIX = "-__assignor-__leader"


@dataclass(frozen=True, slots=True)
class TopicLayout:
    name: str
    partitions: int
    replication: int
    config: Mapping[str, str] = field(default_factory=dict)


def _faust_layout(app: faust.App, topic: Any, name: str) -> TopicLayout:
    """The layout faust's `Topic.declare` would create `name` with (same config rules as
    faust's aiokafka transport: cleanup policy from compacting/deleting, retention in ms,
    then the topic's own config)."""
    config: dict[str, str] = {}
    flags = sorted(
        flag for flag, on in (("compact", topic.compacting), ("delete", topic.deleting)) if on
    )
    if flags:
        config["cleanup.policy"] = ",".join(flags)
    if topic.retention:
        config["retention.ms"] = str(int(want_seconds(topic.retention) * 1000))
    config.update({key: str(value) for key, value in (topic.config or {}).items()})
    return TopicLayout(
        name=name,
        partitions=int(topic.partitions or app.conf.topic_partitions),
        replication=int(topic.replicas or app.conf.topic_replication_factor or 1),
        config=config,
    )


def internal_topics(app: faust.App) -> list[TopicLayout]:
    """The topics faust declares for itself: one changelog per table, the leader topic."""
    layouts = [
        _faust_layout(app, table.changelog_topic, name)
        for table in app.tables.values()
        for name in table.changelog_topic.topics
    ]
    if not app.conf.topic_disable_leader:
        layouts.append(
            TopicLayout(
                name=f"{app.conf.id}{LEADER_TOPIC_SUFFIX}",
                partitions=1,
                replication=int(app.conf.topic_replication_factor or 1),
            )
        )
    return layouts


def subscribed_topics(app: faust.App, settings: Settings) -> dict[str, int]:
    """Every topic the worker's consumer subscribes to -> its partition count."""
    topics = {settings.topic(spec.name): settings.topic_partitions for spec in TOPICS}
    topics.update({layout.name: layout.partitions for layout in internal_topics(app)})
    return topics


async def create_missing(settings: Settings, layouts: Iterable[TopicLayout]) -> list[str]:
    """Create the topics that do not exist yet; return their names."""
    wanted = [
        NewTopic(
            name=layout.name,
            num_partitions=layout.partitions,
            replication_factor=layout.replication,
            topic_configs=dict(layout.config),
        )
        for layout in layouts
    ]
    return await create_missing_topics(settings, wanted)


def unready(metadata: Mapping[str, Any], expected: Mapping[str, int]) -> list[str]:
    """The expected topics one broker's metadata (`MetadataResponse.to_object()`) does not list
    with every partition led, sorted."""
    listed = {
        topic["topic"]: topic
        for topic in metadata.get("topics", [])
        if topic.get("error_code") == 0
    }
    missing = []
    for name, partitions in expected.items():
        topic = listed.get(name)
        led = {
            p["partition"]
            for p in (topic or {}).get("partitions", [])
            if p.get("error_code") == 0 and p.get("leader", -1) >= 0
        }
        if led != set(range(partitions)):
            missing.append(name)
    return sorted(missing)


async def wait_until_listed(
    settings: Settings, expected: Mapping[str, int], *, timeout_s: float, poll_s: float = 0.1
) -> float:
    """Wait until every broker's metadata lists every expected topic with all partitions led;
    return the seconds waited. Raises RuntimeError naming the topics after `timeout_s`."""
    client = AIOKafkaClient(bootstrap_servers=bootstrap_servers(settings))
    await client.bootstrap()
    started = time.monotonic()
    request = MetadataRequest(sorted(expected), allow_auto_topic_creation=False)
    try:
        while True:
            missing: set[str] = set()
            for broker in client.cluster.brokers():
                response = await client.send(broker.nodeId, request)
                missing.update(unready(response.to_object(), expected))
            waited = time.monotonic() - started
            if not missing:
                return waited
            if waited > timeout_s:
                raise RuntimeError(
                    f"topics not in the brokers' metadata after {timeout_s:.0f}s: "
                    f"{sorted(missing)}; the worker would start without them"
                )
            await asyncio.sleep(poll_s)
    finally:
        await client.close()


async def prepare_worker_topics(
    app: faust.App, settings: Settings, *, timeout_s: float = 60.0
) -> None:
    """Create faust's internal topics and wait until the brokers list every subscribed topic."""
    created = await create_missing(settings, internal_topics(app))
    waited = await wait_until_listed(
        settings, subscribed_topics(app, settings), timeout_s=timeout_s
    )
    event(log, "worker_topics_ready", created=created, waited_s=round(waited, 3))
