"""`meterflow api`: serve the Flatpeak-compatible HTTP API on its own (no Faust worker)."""

from __future__ import annotations

import click

from meterflow.settings import get_settings


@click.command(name="api")
@click.option("--host", default=None, help="bind address (MF_HTTP_HOST, default 127.0.0.1)")
@click.option("--port", type=int, default=None, help="port (MF_HTTP_PORT, default 8080)")
@click.option("--log-level", default=None, help="DEBUG, INFO, WARNING… (MF_LOG_LEVEL)")
def api(host: str | None, port: int | None, log_level: str | None) -> None:
    """Serve the HTTP API until stopped; ready (GET /readyz) once profiles are loaded."""
    from aiohttp import web

    from meterflow.api import create_api
    from meterflow.logs import configure_logging

    updates: dict[str, object] = {}
    if host is not None:
        updates["http_host"] = host
    if port is not None:
        updates["http_port"] = port
    if log_level is not None:
        updates["log_level"] = log_level
    settings = get_settings().model_copy(update=updates)
    configure_logging(settings.log_level, settings.log_format)
    web.run_app(
        create_api(settings),
        host=settings.http_host,
        port=settings.http_port,
        print=None,
        access_log=None,
        shutdown_timeout=5,
    )
