"""Corrections through the running sink on the real broker and database (design §8.3).

1,000 results then 1,000 corrections of the same ids: 1,000 rows at revision 2, 1,000 history
rows, reports sum the corrected values; a replay of the whole topic (a new consumer group)
changes nothing. And a sink process killed (SIGKILL) between the two writes of a correction:
nothing of it stays, and the restarted sink applies it once.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from dashboard_sql import Scope, panel_queries, run_panel
from test_sink_pipeline import (
    cost_message,
    fetch,
    produce,
    running,
    sink_config,
    start_sink_process,
    topics,
    wait_drained,
    wait_for,
)

from meterflow.api import repository
from meterflow.api.credentials import Principal
from meterflow.sink import Sink, sink_clients
from samples import Item, energy_cost

pytestmark = pytest.mark.integration
__all__ = ["topics"]  # the fixture, imported for its use here

T0 = datetime(2026, 1, 5, tzinfo=UTC)
PRICED = datetime(2026, 2, 1, tzinfo=UTC)
RATE = Decimal("0.25")
PRINCIPAL = Principal(account_id="acc_1", live_mode=False, key_id="key_test")


def result(n: int, *, corrected: bool) -> dict[str, Any]:
    """Result n (ids fixed here; §8.1's derivation is the worker's), on one of 6 locations and
    10 sessions; its correction has 0.5 kWh more, priced at the same rate."""
    start = T0 + timedelta(minutes=30 * n)
    middle, end = start + timedelta(minutes=15), start + timedelta(minutes=30)
    energy = Decimal(1) + Decimal(n) / 1000 + (Decimal("0.5") if corrected else 0)
    half = energy / 2
    cost = (half * RATE).quantize(Decimal("0.000001"))
    return energy_cost(
        f"ecs_corr{n:06d}",
        f"mre_corr{n:06d}",
        start,
        end,
        [Item(start, middle, RATE, half, cost), Item(middle, end, RATE, half, cost)],
        request={"location_id": f"loc_{n % 6}", "energy": energy},
        time_created=PRICED + timedelta(seconds=n, minutes=30 if corrected else 0),
        location_id=f"loc_{n % 6}",
        session_reference_id=f"session-{n % 10}",
        record_reference_id=f"ref-{n}",
    )


async def snapshot(url: str) -> dict[str, Any]:
    """Rows, breakdown and history, everything but the wall-clock columns."""
    rows = await fetch(
        url,
        "SELECT id, revision, energy_kwh, cost, source_partition, source_offset "
        "FROM energy_costs ORDER BY id",
    )
    items = await fetch(url, "SELECT * FROM energy_cost_breakdown ORDER BY cost_id, seq")
    history = await fetch(
        url,
        "SELECT id, revision, energy_kwh, cost, source_offset, breakdown::text AS items "
        "FROM energy_cost_history ORDER BY id, revision",
    )
    return {
        "rows": [dict(r) for r in rows],
        "items": [dict(r) for r in items],
        "history": [dict(r) for r in history],
    }


async def report_totals(url: str) -> tuple[Decimal, Decimal, int]:
    """(cost, energy, records) summed by the reports: every session, and every location's
    MONTH buckets (both must agree)."""
    pool = await asyncpg.create_pool(url, min_size=1, max_size=2)
    assert pool is not None
    try:
        sessions = [
            await repository.session_summary(
                pool, PRINCIPAL, session_reference_id=f"session-{s}", tariff_direction="IMPORT"
            )
            for s in range(10)
        ]
        buckets = [
            bucket
            for location in range(6)
            for bucket in await repository.cost_buckets(
                pool,
                PRINCIPAL,
                object_id=f"loc_{location}",
                tariff_direction="IMPORT",
                start=T0,
                end=T0 + timedelta(days=60),
                unit="month",
                timezone="Europe/London",
            )
        ]
    finally:
        await pool.close()
    assert all(s is not None for s in sessions)
    by_session = (
        sum((s["cost"] for s in sessions if s), Decimal(0)),
        sum((s["energy_kwh"] for s in sessions if s), Decimal(0)),
        sum(s["records"] for s in sessions if s),
    )
    by_month = (
        sum((Decimal(b["cost"]) for b in buckets), Decimal(0)),
        sum((Decimal(b["energy_kwh"]) for b in buckets), Decimal(0)),
        sum(b["records"] for b in buckets),
    )
    assert by_session == by_month
    return by_session


async def dashboard_totals(url: str) -> tuple[Decimal, Decimal, int]:
    """(cost, energy, records) of the Grafana "Energy costs" Totals panel, all locations."""
    scope = Scope("acc_1", "GBP", [f"loc_{n}" for n in range(6)], T0, T0 + timedelta(days=60))
    (totals,) = await run_panel(url, panel_queries()["Totals ($currency)"], scope)
    return totals["import_cost"], totals["import_kwh"], totals["records"]


def expected_totals(docs: list[dict[str, Any]]) -> tuple[Decimal, Decimal, int]:
    return (
        sum((d["data"]["cost"]["value"] for d in docs), Decimal(0)),
        sum((d["data"]["energy"]["value"] for d in docs), Decimal(0)),
        len(docs),
    )


async def test_a_thousand_corrections_then_a_replay_from_the_start(
    kafka_bootstrap: str, migrated_database: str, topic_prefix: str, topics: dict[str, str]
) -> None:
    database, total = migrated_database, 1000
    first = [result(n, corrected=False) for n in range(total)]
    corrections = [result(n, corrected=True) for n in range(total)]
    config = sink_config(kafka_bootstrap, database, topic_prefix)
    sink = Sink(config, sink_clients(config))
    async with running(sink):
        await produce(kafka_bootstrap, topics["energy-costs"], [cost_message(d) for d in first])
        await wait_drained(kafka_bootstrap, config.group_id, config.costs_topic, "the first 1000")
        assert await report_totals(database) == expected_totals(first)
        assert await dashboard_totals(database) == expected_totals(first)
        await produce(
            kafka_bootstrap, topics["energy-costs"], [cost_message(d) for d in corrections]
        )
        await wait_drained(kafka_bootstrap, config.group_id, config.costs_topic, "corrections")
    assert sink.health.healthy
    assert (sink.health.stats.costs_inserted, sink.health.stats.costs_replaced) == (total, total)

    corrected = await snapshot(database)
    assert len(corrected["rows"]) == total
    assert {r["revision"] for r in corrected["rows"]} == {2}
    by_id = {d["id"]: d for d in corrections}
    for row in corrected["rows"]:
        assert row["energy_kwh"] == by_id[row["id"]]["data"]["energy"]["value"]
    assert len(corrected["items"]) == 2 * total
    for item in corrected["items"]:
        assert item["energy_kwh"] == by_id[item["cost_id"]]["data"]["breakdown"][0]["energy"]
    assert len(corrected["history"]) == total
    assert {h["revision"] for h in corrected["history"]} == {1}
    first_by_id = {d["id"]: d for d in first}
    for old in corrected["history"]:
        assert old["energy_kwh"] == first_by_id[old["id"]]["data"]["energy"]["value"]
    assert await report_totals(database) == expected_totals(corrections)
    assert await dashboard_totals(database) == expected_totals(corrections)
    assert expected_totals(corrections) != expected_totals(first)

    # The whole topic again, from the start, by a new group: nothing may change.
    replay = sink_config(kafka_bootstrap, database, topic_prefix, group_id=f"{topic_prefix}again")
    again = Sink(replay, sink_clients(replay))
    async with running(again):
        await wait_drained(kafka_bootstrap, replay.group_id, replay.costs_topic, "the replay")
    stats = again.health.stats
    assert (stats.costs_inserted, stats.costs_replaced) == (0, 0)
    assert stats.costs_already_stored == 2 * total
    assert await snapshot(database) == corrected


async def wait_blocked_on_breakdown(url: str) -> int:
    """The pid of the sink's backend once it waits for our row lock in write 2 (the breakdown)
    of a correction, having done write 1 (history and row) in the same transaction."""
    found: list[int] = []

    async def blocked() -> bool:
        rows = await fetch(
            url,
            "SELECT a.pid, bool_or(l.relation = 'energy_cost_history'::regclass "
            "AND l.mode = 'RowExclusiveLock' AND l.granted) AS wrote_history "
            "FROM pg_stat_activity a JOIN pg_locks l ON l.pid = a.pid "
            "WHERE a.datname = current_database() AND a.wait_event_type = 'Lock' "
            "AND a.query LIKE 'DELETE FROM energy_cost_breakdown%' GROUP BY a.pid",
        )
        found[:] = [r["pid"] for r in rows if r["wrote_history"]]
        return bool(found)

    await wait_for(blocked, "the sink to block between the two writes of a correction")
    return found[0]


async def test_sigkill_between_the_two_writes_of_a_correction(
    kafka_bootstrap: str,
    migrated_database: str,
    topic_prefix: str,
    topics: dict[str, str],
    tmp_path: Path,
) -> None:
    database, total = migrated_database, 60
    group = f"{topic_prefix}sink"
    env = {
        **os.environ,
        "MF_KAFKA_BOOTSTRAP": kafka_bootstrap,
        "MF_DATABASE_URL": database,
        "MF_TOPIC_PREFIX": topic_prefix,
        "MF_SINK_GROUP_ID": group,
        "MF_SINK_LINGER_MS": "50",
        "MF_SINK_HTTP_PORT": "0",
        "MF_LOG_FORMAT": "json",
    }
    first = [result(n, corrected=False) for n in range(total)]
    corrections = [result(n, corrected=True) for n in range(total)]
    await produce(kafka_bootstrap, topics["energy-costs"], [cost_message(d) for d in first])
    proc = await start_sink_process(env, tmp_path / "sink-1.log")
    holder = await asyncpg.connect(database)
    try:
        await wait_drained(kafka_bootstrap, group, topics["energy-costs"], "the first versions")
        before = await snapshot(database)
        assert {r["revision"] for r in before["rows"]} == {1}

        # Hold every breakdown row: whichever batch the corrections fall in, its write 2 waits
        # (and no later batch can commit before it: one checkpoint at a time).
        lock = holder.transaction()
        await lock.start()
        locked = await holder.fetch("SELECT cost_id FROM energy_cost_breakdown FOR UPDATE")
        assert len(locked) == 2 * total
        await produce(
            kafka_bootstrap, topics["energy-costs"], [cost_message(d) for d in corrections]
        )
        backend = await wait_blocked_on_breakdown(database)
        proc.send_signal(signal.SIGKILL)
        await proc.wait()
        assert proc.returncode == -signal.SIGKILL
        await lock.rollback()  # the orphaned backend goes on, finds its client gone, aborts

        async def backend_gone() -> bool:
            return not await fetch(
                database, "SELECT 1 FROM pg_stat_activity WHERE pid = $1", backend
            )

        await wait_for(backend_gone, "the killed sink's backend to end")
        assert await snapshot(database) == before  # nothing of the correction stayed

        proc = await start_sink_process(env, tmp_path / "sink-2.log")
        await wait_drained(kafka_bootstrap, group, topics["energy-costs"], "the corrections")
        proc.send_signal(signal.SIGTERM)
        await asyncio.wait_for(proc.wait(), 60)
        assert proc.returncode == 0
    finally:
        await holder.close()
        if proc.returncode is None:  # never leave a sink running
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()

    after = await snapshot(database)
    assert [r["revision"] for r in after["rows"]] == [2] * total
    assert [(h["id"], h["revision"]) for h in after["history"]] == [
        (r["id"], 1) for r in before["rows"]
    ]
    assert [h["energy_kwh"] for h in after["history"]] == [r["energy_kwh"] for r in before["rows"]]
    assert len(after["items"]) == 2 * total
    assert await report_totals(database) == expected_totals(corrections)
