"""`no_table_registration_pause`: faust's table manager starts without its 1 s sleep, and still
registers the changelog channels before the recovery starts."""

from __future__ import annotations

from typing import Any

from faust.tables.manager import TableManager

from meterflow.stream import faust_fixes
from meterflow.stream.startup import no_table_registration_pause


class FakeManager:
    def __init__(self, *, stopping: bool = False) -> None:
        self.should_stop = stopping
        self.calls: list[str] = []
        self.recovery = self

    async def sleep(self, seconds: float) -> None:
        self.calls.append(f"sleep {seconds}")

    async def _update_channels(self) -> None:
        self.calls.append("update_channels")

    async def start(self) -> None:
        self.calls.append("recovery.start")


async def test_the_manager_registers_then_recovers_without_sleeping() -> None:
    no_table_registration_pause()
    no_table_registration_pause()  # idempotent
    manager: Any = FakeManager()
    await TableManager.on_start(manager)
    assert manager.calls == ["update_channels", "recovery.start"]
    stopping: Any = FakeManager(stopping=True)
    await TableManager.on_start(stopping)
    assert stopping.calls == []


def test_the_patch_is_declared_and_its_guard_passes() -> None:
    faust_fixes.BORROWED.check()
    assert "no_registration_pause" in {p.name for p in faust_fixes.BORROWED.patches}
