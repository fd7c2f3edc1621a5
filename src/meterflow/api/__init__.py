"""The Flatpeak-compatible HTTP API (design §5): an adapter over the engine, Kafka and Postgres.

`create_api` imports the app on call, so `python -m meterflow.api.openapi` (which regenerates
`schemas/openapi.json`) does not load aiohttp's app and the Kafka clients first.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from aiohttp import web

    from meterflow.settings import Settings


def create_api(settings: Settings, *, start_clients: bool = True) -> web.Application:
    """The aiohttp application; see `meterflow.api.app.create_api`."""
    from meterflow.api.app import create_api as build

    return build(settings, start_clients=start_clients)


__all__ = ["create_api"]
