"""`meterflow sink`: persist energy-costs to PostgreSQL, committing offsets after the database."""

from __future__ import annotations

import asyncio
import dataclasses
import signal

import click

from meterflow.cli.long_lived import freeze_startup_objects
from meterflow.settings import get_settings


async def _serve(group_id: str | None, http_port: int | None) -> None:
    from meterflow.kafka_admin import ensure_topics
    from meterflow.sink import Sink, SinkConfig, SinkHealth, sink_clients
    from meterflow.sink.health import start_health_server

    settings = get_settings()
    # Subscribing to a missing topic makes the broker auto-create it with its own default
    # partition count, which would break the co-partitioning the worker's tables rely on.
    await ensure_topics(settings)
    config = SinkConfig.from_settings(settings)
    if group_id:
        config = dataclasses.replace(config, group_id=group_id)
    health = SinkHealth()
    port = settings.sink_http_port if http_port is None else http_port
    runner = await start_health_server(health, settings.http_host, port) if port else None
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    freeze_startup_objects("sink")
    try:
        await Sink(config, sink_clients(config), health).run(stop)
    finally:
        if runner is not None:
            await runner.cleanup()


@click.command(name="sink")
@click.option("--group-id", default=None, help="consumer group (default: MF_SINK_GROUP_ID)")
@click.option(
    "--http-port", type=int, default=None, help="/healthz port, 0 = off (MF_SINK_HTTP_PORT)"
)
def sink(group_id: str | None, http_port: int | None) -> None:
    """Persist every non-simulated energy cost to PostgreSQL (and mirror locations)."""
    from meterflow.logs import configure_logging

    settings = get_settings()
    configure_logging(settings.log_level, settings.log_format)
    asyncio.run(_serve(group_id, http_port))
