"""The sink's health: a checkpoint that fails, or a broker or a database that does not answer,
makes it unhealthy (`/healthz` 503, `meterflow_sink_healthy` 0), each until it recovers. The
broker and database parts were missing: with nothing to read, a sink whose broker was gone
stayed healthy, and with nothing to write, one whose database was gone."""

from __future__ import annotations

import asyncio

from prometheus_client import REGISTRY

from meterflow.sink.clients import SinkClients, sink_clients
from meterflow.sink.health import SinkHealth
from meterflow.sink.service import Sink, SinkConfig

NOBODY = "127.0.0.1:1"  # nothing listens on port 1: refused at once


def gauge() -> float | None:
    return REGISTRY.get_sample_value("meterflow_sink_healthy")


def test_either_problem_makes_it_unhealthy_until_both_clear() -> None:
    health = SinkHealth()
    health.mark_unhealthy("OSError: database down")
    since = health.unhealthy_since
    assert since is not None
    health.mark_broker("Kafka unreachable: refused")
    assert (health.healthy, gauge()) == (False, 0)
    assert health.reason == "OSError: database down; Kafka unreachable: refused"
    assert health.unhealthy_since == since  # unhealthy since the first problem
    health.mark_healthy()  # a checkpoint went through: the broker is still out
    assert (health.healthy, health.reason, gauge()) == (False, "Kafka unreachable: refused", 0)
    health.mark_broker("")
    assert (health.healthy, health.reason, health.unhealthy_since, gauge()) == (True, "", None, 1)
    assert health.as_json()["status"] == "ok"


def _config() -> SinkConfig:
    return SinkConfig(
        bootstrap=NOBODY,
        database_url=f"postgresql://meterflow@{NOBODY}/meterflow",
        costs_topic="energy-costs",
        locations_topic="locations",
        dead_letters_topic="dead-letters",
        group_id="sink",
        batch_size=10,
        linger_s=0.1,
        retry_max_s=1.0,
        statement_timeout_s=30.0,
    )


async def test_a_broker_that_does_not_answer_is_in_the_health() -> None:
    config = _config()
    clients: SinkClients = sink_clients(config)  # real clients, never started: nobody answers
    sink = Sink(config, clients)
    sink._probe_broker(0.0)  # asks, in the background
    assert sink.health.healthy
    for _ in range(100):
        await asyncio.sleep(0.02)
        sink._probe_broker(1.0)  # reads the answer once there is one; not yet time to ask again
        if not sink.health.healthy:
            break
    problem = sink.health.broker_problem
    assert problem.startswith("Kafka unreachable: KafkaError: Unable"), problem
    assert gauge() == 0


async def _database_answer(sink: Sink, now: float) -> None:
    """Let the probe asked at an earlier step answer, and read it as a step at `now` does."""
    probe = sink._database.task
    assert probe is not None
    await asyncio.wait([probe])
    sink._probe_database(now)


async def test_an_idle_sink_whose_database_does_not_answer_is_unhealthy() -> None:
    config = _config()
    clients: SinkClients = sink_clients(config)  # the writer's database: nothing listens
    sink = Sink(config, clients)
    errors = _probe_errors()
    sink._probe_database(0.0)  # nothing to write: asks, in the background
    assert sink.health.healthy
    await _database_answer(sink, 1.0)  # not yet time to ask again
    problem = sink.health.database_problem
    assert problem.startswith("PostgreSQL unreachable: "), problem
    assert (sink.health.healthy, gauge()) == (False, 0)
    assert sink._database.task is None
    assert _probe_errors() == errors + 1  # MeterflowDatabaseErrors sees an idle sink's too

    clients.writer.problem = _answers  # type: ignore[method-assign]  # the database is back
    sink._probe_database(10.0)
    await _database_answer(sink, 11.0)
    assert (sink.health.healthy, sink.health.reason, gauge()) == (True, "", 1)
    assert _probe_errors() == errors + 1


def _probe_errors() -> float:
    value = REGISTRY.get_sample_value("meterflow_database_errors_total", {"operation": "probe"})
    assert value is not None
    return value


async def test_the_database_is_not_asked_while_there_is_something_to_write() -> None:
    """A checkpoint is the probe then; a probe beside it would share its one connection."""
    config = _config()
    sink = Sink(config, sink_clients(config))
    sink._writing = asyncio.get_running_loop().create_future()  # type: ignore[assignment]
    sink._probe_database(0.0)
    assert sink._database.task is None
    sink._writing = None
    sink._probe_database(0.0)
    assert sink._database.task is not None
    sink._database.task.cancel()


async def test_a_checkpoint_after_the_probe_began_outranks_its_answer() -> None:
    config = _config()
    sink = Sink(config, sink_clients(config))
    sink._probe_database(0.0)
    sink.health.mark_healthy()  # a write went through while the probe was out
    await _database_answer(sink, 1.0)
    assert sink.health.healthy, sink.health.reason


async def _answers(timeout_s: float = 2.0) -> str:
    return ""


async def test_an_answer_with_nothing_held_ends_a_failed_checkpoints_problem() -> None:
    """A sink whose failed batch went with a revoked partition holds nothing: the database
    answering is then all that can tell it the problem is over (no checkpoint will come)."""
    sink = _after_a_failed_checkpoint()
    await _database_answer(sink, 1.0)
    assert (sink.health.healthy, sink.health.reason, gauge()) == (True, "", 1)


async def test_an_answer_while_a_batch_is_held_leaves_the_checkpoints_problem() -> None:
    sink = _after_a_failed_checkpoint()
    sink._writing = asyncio.get_running_loop().create_future()  # type: ignore[assignment]
    await _database_answer(sink, 1.0)
    assert not sink.health.healthy
    assert sink.health.reason == "ConnectionRefusedError: database down"


def _after_a_failed_checkpoint() -> Sink:
    """A sink whose checkpoint failed, asking a database that now answers."""
    config = _config()
    clients: SinkClients = sink_clients(config)
    clients.writer.problem = _answers  # type: ignore[method-assign]
    sink = Sink(config, clients)
    sink.health.mark_unhealthy("ConnectionRefusedError: database down")
    sink._probe_database(0.0)
    return sink
