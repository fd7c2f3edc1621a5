"""`meterflow sink`: persist energy-costs to PostgreSQL, committing offsets after the database."""

from __future__ import annotations

import asyncio
import signal

import click

from meterflow.cli.long_lived import freeze_startup_objects
from meterflow.cli.options import settings_with_options
from meterflow.settings import Settings


async def _serve(settings: Settings) -> None:
    from meterflow.kafka_admin import ensure_topics
    from meterflow.sink import Sink, SinkConfig, SinkHealth, sink_clients
    from meterflow.sink.health import start_health_server

    # Subscribing to a missing topic makes the broker auto-create it with its own default
    # partition count, which would break the co-partitioning the worker's tables rely on.
    await ensure_topics(settings)
    config = SinkConfig.from_settings(settings)
    health = SinkHealth()
    port = settings.sink_http_port  # 0: no /healthz
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
    settings = settings_with_options(sink_group_id=group_id or None, sink_http_port=http_port)
    asyncio.run(_serve(settings))
