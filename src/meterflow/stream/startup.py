"""A worker start without faust's one-second pause before its tables are registered.

`TableManager.on_start` sleeps 1 s before it registers the tables' changelog channels and
starts the recovery; the conductor subscribes the consumer only after that, so every start
(first or restart, any store) waited a second for nothing: the pause lets tables defined after
the app started still be registered, and `create_app` defines all of ours before the worker
starts. With 100,000 profiles a restart is due within 5 s (issue 16), a fifth of which this
was (docs/stream.md, "Profiles at scale").
"""

from __future__ import annotations

import asyncio
from typing import Any

from faust.tables.manager import TableManager

from meterflow._guards import Names, Signature, replace
from meterflow.stream.faust_fixes import BORROWED

_PATCHED = "_meterflow_no_registration_pause"


def no_table_registration_pause() -> None:
    """Install (once per process) `TableManager.on_start` without its 1 s sleep."""
    BORROWED.check_one("no_registration_pause")
    _install_no_registration_pause()


@BORROWED.patch(
    Signature(TableManager, "on_start", "async (self)"),
    Names(TableManager, "on_start", ("sleep", "should_stop", "_update_channels", "recovery")),
    Signature(TableManager, "_update_channels", "async (self)"),
)
def _install_no_registration_pause() -> None:
    original = TableManager.on_start
    if getattr(original, _PATCHED, False):
        return

    async def on_start(self: Any) -> None:
        """faust's `on_start` (sleep 1.0; if not stopping: `_update_channels()`, then
        `recovery.start()`) with one event-loop turn instead of the sleep."""
        await asyncio.sleep(0)
        if not self.should_stop:
            await self._update_channels()
            await self.recovery.start()

    setattr(on_start, _PATCHED, True)
    replace(TableManager, "on_start", on_start, original)
