"""`meterflow api`: serve the Flatpeak-compatible HTTP API on its own (no Faust worker)."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

import click

from meterflow.cli.long_lived import freeze_startup_objects
from meterflow.cli.options import settings_with_options

if TYPE_CHECKING:  # aiohttp is imported when the command runs, not with the CLI
    from aiohttp import web


def freeze_when_started(application: web.Application) -> None:
    """Freeze the objects built at start-up, and once more those of the pricing view when it
    has read the profile topics: the view loads after start-up, and left unfrozen every full
    collection walks all its profiles and prices (`bench_api.py --slots --trace` showed 57–120 ms
    pauses when ~70k start-up objects were not frozen). Also used by `bench/bench_api.py`."""
    from meterflow.api.context import CONTEXT

    tasks: list[asyncio.Task[None]] = []

    async def loaded_then_freeze(loaded: asyncio.Event) -> None:
        await loaded.wait()
        freeze_startup_objects("api_view")

    async def freeze(app: web.Application) -> None:
        freeze_startup_objects("api")
        feeder = app[CONTEXT].feeder
        if feeder is not None:
            tasks.append(asyncio.get_running_loop().create_task(loaded_then_freeze(feeder.loaded)))

    async def stop(_: web.Application) -> None:
        for task in tasks:
            task.cancel()

    application.on_startup.append(freeze)
    application.on_shutdown.append(stop)


@click.command(name="api")
@click.option("--host", default=None, help="bind address (MF_HTTP_HOST, default 127.0.0.1)")
@click.option("--port", type=int, default=None, help="port (MF_HTTP_PORT, default 8080)")
@click.option("--log-level", default=None, help="DEBUG, INFO, WARNING… (MF_LOG_LEVEL)")
def api(host: str | None, port: int | None, log_level: str | None) -> None:
    """Serve the HTTP API until stopped; ready (GET /readyz) once profiles are loaded."""
    from aiohttp import web

    from meterflow.api import create_api

    settings = settings_with_options(http_host=host, http_port=port, log_level=log_level)
    application = create_api(settings)
    freeze_when_started(application)
    web.run_app(
        application,
        host=settings.http_host,
        port=settings.http_port,
        print=None,
        access_log=None,
        shutdown_timeout=5,
    )
