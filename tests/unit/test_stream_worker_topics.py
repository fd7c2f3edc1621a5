"""`worker_topics`: the layout of faust's own topics, read from an app that is never started, and
the metadata check that holds a worker back until every broker lists its topics."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import faust
import pytest

from meterflow.settings import Settings
from meterflow.stream import create_app
from meterflow.stream.worker_topics import (
    LEADER_TOPIC_SUFFIX,
    internal_topics,
    subscribed_topics,
    unready,
)

SETTINGS = Settings(
    kafka_bootstrap="127.0.0.1:1",  # never connected: nothing here starts the app
    topic_prefix="unit-wt-",
    app_id="app",
    topic_partitions=4,
    worker_web_enabled=False,
)


@pytest.fixture
def app() -> Iterator[faust.App]:
    app = create_app(SETTINGS)
    yield app
    if "consumer" in app.__dict__:  # the consumer thread's loop, made with the consumer
        app.consumer._thread.thread_loop.close()


def test_faust_internal_topics_get_the_layout_faust_would_declare(app: faust.App) -> None:
    layouts = {layout.name: layout for layout in internal_topics(app)}
    assert set(layouts) == {
        "unit-wt-app-profiles-changelog",
        "unit-wt-app-market-prices-changelog",
        "unit-wt-app-readings-changelog",
        "unit-wt-app-__assignor-__leader",
    }
    for table in app.tables.values():
        changelog = table.changelog_topic
        (name,) = changelog.topics
        # faust's own rule (aiokafka transport) for the config it creates a topic with
        expected = dict(
            app.transport._topic_config(changelog.retention, changelog.compacting, None)
        )
        assert layouts[name].partitions == SETTINGS.topic_partitions
        assert layouts[name].replication == SETTINGS.topic_replication
        assert dict(layouts[name].config) == {k: str(v) for k, v in expected.items()}
        assert layouts[name].config == {"cleanup.policy": "compact"}
    leader = layouts["unit-wt-app-__assignor-__leader"]
    assert (leader.partitions, dict(leader.config)) == (1, {})


def test_the_leader_topic_name_is_fausts_own(app: faust.App) -> None:
    """A borrowed convention: if faust renames its leader topic, this fails (the worker would
    wait for a topic faust never subscribes to, and not for the one it does)."""
    faust_name = app._leader_assignor._leader_topic_name  # type: ignore[attr-defined]
    assert faust_name == f"{app.conf.id}{LEADER_TOPIC_SUFFIX}"


def test_the_worker_waits_for_the_contract_topics_and_fausts_own(app: faust.App) -> None:
    topics = subscribed_topics(app, SETTINGS)
    assert topics["unit-wt-meter-records"] == 4
    assert topics["unit-wt-locations"] == 4
    assert topics["unit-wt-market-prices"] == 4
    assert topics["unit-wt-app-market-prices-changelog"] == 4
    assert topics["unit-wt-app-__assignor-__leader"] == 1


def metadata(*topics: dict[str, Any]) -> dict[str, Any]:
    return {"brokers": [], "topics": list(topics)}


def topic(name: str, leaders: list[int], error_code: int = 0) -> dict[str, Any]:
    return {
        "error_code": error_code,
        "topic": name,
        "partitions": [
            {"error_code": 0, "partition": p, "leader": leader} for p, leader in enumerate(leaders)
        ],
    }


def test_a_topic_is_ready_when_listed_with_a_leader_for_every_partition() -> None:
    assert unready(metadata(topic("a", [1, 1]), topic("b", [1])), {"a": 2, "b": 1}) == []


def test_a_topic_the_broker_does_not_know_yet_is_not_ready() -> None:
    unknown = topic("b", [], error_code=3)  # UNKNOWN_TOPIC_OR_PARTITION
    assert unready(metadata(topic("a", [1]), unknown), {"a": 1, "b": 1}) == ["b"]
    assert unready(metadata(topic("a", [1])), {"a": 1, "b": 1}) == ["b"]


def test_a_partition_without_a_leader_or_missing_is_not_ready() -> None:
    assert unready(metadata(topic("a", [1, -1])), {"a": 2}) == ["a"]
    assert unready(metadata(topic("a", [1])), {"a": 2}) == ["a"]
