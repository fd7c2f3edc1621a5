"""`meterflow api`: serve the Flatpeak-compatible HTTP API on its own (no Faust worker)."""

from __future__ import annotations

import click

from meterflow.cli.long_lived import freeze_startup_objects
from meterflow.cli.options import settings_with_options


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

    async def freeze(_: web.Application) -> None:
        freeze_startup_objects("api")

    application.on_startup.append(freeze)
    web.run_app(
        application,
        host=settings.http_host,
        port=settings.http_port,
        print=None,
        access_log=None,
        shutdown_timeout=5,
    )
