"""`meterflow api` freezes the collector's view twice: at start-up, and when the pricing view
has loaded (it loads after start-up; unfrozen, every full collection walks all its profiles)."""

from __future__ import annotations

import asyncio
import gc
from types import SimpleNamespace

from aiohttp import web

from meterflow.api import create_api
from meterflow.api.context import CONTEXT
from meterflow.cli.api import freeze_when_started
from meterflow.settings import Settings


async def test_what_the_view_loaded_is_frozen_once_it_has_loaded() -> None:
    app = create_api(Settings(), start_clients=False)
    loaded = asyncio.Event()
    app[CONTEXT].feeder = SimpleNamespace(loaded=loaded)  # type: ignore[assignment]
    freeze_when_started(app)
    runner = web.AppRunner(app)
    try:
        await runner.setup()
        after_start = gc.get_freeze_count()
        view = [[object()] for _ in range(1000)]  # what the view loads after start-up
        await asyncio.sleep(0.01)
        assert gc.get_freeze_count() < after_start + len(view)  # not before it has loaded
        loaded.set()
        for _ in range(100):
            if gc.get_freeze_count() >= after_start + len(view):
                break
            await asyncio.sleep(0.01)
        assert gc.get_freeze_count() >= after_start + len(view)
    finally:
        await runner.cleanup()
        gc.unfreeze()
