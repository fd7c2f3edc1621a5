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
        """Serve the API; if it cannot start (port taken, database down), log it and let the
        worker go on pricing: the stream must not stop because the HTTP side cannot start."""
        host, port = self._settings.http_host, self._settings.http_port
        runner = web.AppRunner(create_api(self._settings), access_log=None)
        try:
            await runner.setup()
            await web.TCPSite(runner, host, port).start()
        except Exception as exc:
            await runner.cleanup()
            event(
                log,
                "api_not_started",
                logging.ERROR,
                host=host,
                port=port,
                reason=f"{type(exc).__name__}: {exc}",
            )
            return
        self._runner = runner
        event(log, "api_listening", host=host, port=port)

    async def on_stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
