"""`freeze_startup_objects`: what a long-running process does to the collector once started."""

from __future__ import annotations

import gc
import logging
from collections.abc import Iterator

import pytest

from meterflow.cli.long_lived import freeze_startup_objects


@pytest.fixture(autouse=True)
def collector_as_it_was() -> Iterator[None]:
    threshold = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*threshold)


def test_the_worker_raises_the_young_generation_threshold_only(
    caplog: pytest.LogCaptureFixture,
) -> None:
    _, middle, oldest = gc.get_threshold()
    kept = [[] for _ in range(100)]  # tracked by the collector (a bare object() is not)
    with caplog.at_level(logging.INFO, logger="meterflow.cli.long_lived"):
        freeze_startup_objects("worker", 12_345)
    assert gc.get_threshold() == (12_345, middle, oldest)
    assert gc.get_freeze_count() >= len(kept)
    assert [r.getMessage() for r in caplog.records] == ["gc_frozen"]


def test_without_a_threshold_python_s_stays() -> None:
    before = gc.get_threshold()
    freeze_startup_objects("sink")
    assert gc.get_threshold() == before
