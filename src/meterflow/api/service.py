"""The HTTP API as a `mode` service, so `meterflow worker` serves it next to the Faust agents
in the same process and event loop (design §7: worker = Faust worker + HTTP API)."""

from __future__ import annotations

import logging
from typing import Any

from aiohttp import web
from mode import Service

from meterflow.api.app import create_api
from meterflow.logs import event
from meterflow.settings import Settings

log = logging.getLogger("meterflow.api")


class ApiService(Service):
    """Starts the API's runner and site with the worker, cleans them up when it stops."""

    def __init__(self, settings: Settings, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._settings = settings
        self._runner: web.AppRunner | None = None

    async def on_start(self) -> None:
        self._runner = web.AppRunner(create_api(self._settings), access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self._settings.http_host, self._settings.http_port)
        await site.start()
        event(log, "api_listening", host=self._settings.http_host, port=self._settings.http_port)

    async def on_stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
