"""Publishing helpers for load generation, the CLI and tests: demo profiles, synthetic meter
records, and a rate-limited sender that reports what it did.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from aiokafka import AIOKafkaProducer

from meterflow.kafka_admin import bootstrap_servers
from meterflow.models import dumps
from meterflow.settings import Settings

DEMO_ACCOUNT = "acc_demo"
DEMO_EFFECTIVE_FROM = "2020-01-01T00:00:00Z"

# Five periods covering the whole local day; rates per kWh (GBP).
DEMO_PERIODS: tuple[tuple[str, str, str], ...] = (
    ("00:00", "07:00", "0.0950"),
    ("07:00", "11:00", "0.2450"),
    ("11:00", "16:00", "0.1980"),
    ("16:00", "19:00", "0.3520"),
    ("19:00", "24:00", "0.1830"),
)


def demo_location_id(index: int) -> str:
    return f"loc_demo_{index:05d}"


def demo_profile(location_id: str, *, account_id: str = DEMO_ACCOUNT) -> dict[str, Any]:
    """A London location with a 5-period TIME_OF_USE import tariff and a fixed export rate."""
    rules = [{"from": start, "to": end, "rate": Decimal(rate)} for start, end, rate in DEMO_PERIODS]
    return {
        "location_id": location_id,
        "account_id": account_id,
        "live_mode": False,
        "timezone": "Europe/London",
        "currency_code": "GBP",
        "devices": [],
        "tariffs": {
            "IMPORT": [
                {"type": "TIME_OF_USE", "effective_from": DEMO_EFFECTIVE_FROM, "rules": rules}
            ],
            "EXPORT": [
                {"type": "FIXED", "effective_from": DEMO_EFFECTIVE_FROM, "rate": Decimal("0.15")}
            ],
        },
    }


def synthetic_records(
    location_ids: list[str],
    count: int,
    *,
    start: datetime | None = None,
    interval_minutes: int = 30,
) -> Iterator[dict[str, Any]]:
    """`count` half-hourly import records spread round-robin over the locations."""
    base = start or datetime(2026, 1, 5, tzinfo=UTC)
    step = timedelta(minutes=interval_minutes)
    for index in range(count):
        location_id = location_ids[index % len(location_ids)]
        slot = index // len(location_ids)
        begin = base + slot * step
        yield {
            "location_id": location_id,
            "energy": Decimal(index % 997 + 1) / Decimal(1000),
            "start_time": begin.isoformat().replace("+00:00", "Z"),
            "end_time": (begin + step).isoformat().replace("+00:00", "Z"),
            "record_reference_id": f"rec_{index}",
        }


def synthetic_readings(
    location_ids: list[str],
    count: int,
    *,
    start: datetime | None = None,
    interval_minutes: int = 5,
    duplicate_every: int = 50,
    reset_every: int = 200,
) -> Iterator[dict[str, Any]]:
    """`count` cumulative register readings (WH, design §10) round-robin over one meter per
    location, so that `make up` users see each rule of the readings agent at work: a meter's
    first reading is its baseline, each next one rises by a varying 50..449 Wh (an interval
    priced), one in `duplicate_every` is sent twice (the copy is ignored), one in
    `reset_every` restarts the register near zero (a meter swap: `register_reset`, a new
    baseline). Each meter's turn comes at its own slot, so a short run over many meters (the
    default: 10 readings each for 100) shows both, where slot 50 and 200 of every meter
    showed neither. Deterministic: the same arguments give the same readings."""
    base = start or datetime(2026, 1, 5, tzinfo=UTC)
    step = timedelta(minutes=interval_minutes)
    registers = [1000 * (n + 1) for n in range(len(location_ids))]
    sent, slot = 0, 0
    while sent < count:
        time = (base + slot * step).isoformat().replace("+00:00", "Z")
        for n, location_id in enumerate(location_ids):
            if sent >= count:
                return
            if slot > 1 and (slot + 7 * n) % reset_every == 0:  # after an interval at least
                registers[n] = n % 10
            elif slot > 0:
                registers[n] += 50 + (slot * 7 + n * 13) % 400
            reading = {"location_id": location_id, "time": time, "value": registers[n]}
            reading["units"] = "WH"
            yield reading
            sent += 1
            if (slot + n) % duplicate_every == duplicate_every - 1 and sent < count:
                yield dict(reading)
                sent += 1
        slot += 1


def keyed(documents: Iterable[dict[str, Any]], key_field: str) -> Iterator[tuple[bytes, bytes]]:
    """(key, value) pairs: the contract keys records and profiles by `location_id`."""
    for document in documents:
        yield str(document[key_field]).encode(), dumps(document)


@asynccontextmanager
async def kafka_producer(settings: Settings, **overrides: Any) -> AsyncIterator[AIOKafkaProducer]:
    options: dict[str, Any] = {"acks": "all", "linger_ms": 5, "max_batch_size": 65536}
    options.update(overrides)
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap_servers(settings), **options)
    await producer.start()
    try:
        yield producer
    finally:
        await producer.stop()


@dataclass
class SendSummary:
    sent: int = 0
    failed: int = 0
    elapsed_s: float = 0.0

    @property
    def rate(self) -> float:
        """Achieved messages per second (a count ratio, not money)."""
        return self.sent / self.elapsed_s if self.elapsed_s > 0 else 0.0


async def send_all(
    producer: AIOKafkaProducer,
    topic: str,
    messages: Iterable[tuple[bytes | None, bytes | None]],
    *,
    rate: float | None = None,
    on_progress: Callable[[int], None] | None = None,
    window: int = 5000,
) -> SendSummary:
    """Send every message, at most `rate` per second when given; wait until all are delivered.

    At most `window` sends are in flight, so a slow broker slows the sender instead of filling
    memory.
    """
    summary = SendSummary()
    started = time.perf_counter()
    pending: list[asyncio.Future[Any]] = []

    async def settle() -> None:
        for future in pending:
            try:
                await future
                summary.sent += 1
            except Exception:
                summary.failed += 1
        if on_progress is not None:
            on_progress(len(pending))
        pending.clear()

    for index, (key, value) in enumerate(messages):
        if rate:
            delay = started + index / rate - time.perf_counter()
            if delay > 0.001:
                await asyncio.sleep(delay)
        pending.append(await producer.send(topic, value=value, key=key))
        if len(pending) >= window or (rate and len(pending) >= max(1, int(rate / 20))):
            await settle()
    await settle()
    summary.elapsed_s = time.perf_counter() - started
    return summary
