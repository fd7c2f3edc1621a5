"""`meterflow db migrate` on a real, fresh database: the schema, idempotence, concurrent runners."""

from __future__ import annotations

import asyncio
import os
import sys
from dataclasses import replace
from pathlib import Path

import asyncpg
import pytest

from meterflow.db import MigrationError, available_migrations, migrate

pytestmark = pytest.mark.integration


async def _columns(url: str, table: str) -> dict[str, tuple[str, bool]]:
    conn = await asyncpg.connect(url)
    try:
        rows = await conn.fetch(
            "SELECT column_name, data_type, is_nullable FROM information_schema.columns "
            "WHERE table_name = $1",
            table,
        )
    finally:
        await conn.close()
    return {r["column_name"]: (r["data_type"], r["is_nullable"] == "YES") for r in rows}


async def test_schema_has_the_contract_tables_and_types(empty_database: str) -> None:
    applied = await migrate(empty_database)
    assert [m.version for m in applied] == [m.version for m in available_migrations()]

    costs = await _columns(empty_database, "energy_costs")
    assert costs["id"] == ("text", False)
    assert costs["cost"] == ("numeric", False)
    assert costs["energy_kwh"] == ("numeric", False)
    assert costs["confidence"] == ("numeric", False)
    assert costs["start_time"] == ("timestamp with time zone", False)
    assert costs["request"] == ("jsonb", False)
    assert costs["device_id"] == ("text", True)
    assert costs["source_offset"] == ("bigint", True)
    for name in (
        "account_id",
        "live_mode",
        "meter_record_id",
        "currency_code",
        "location_timezone",
    ):
        assert costs[name][1] is False, name
    assert costs["revision"] == ("integer", False)
    # design §11 (0005): NULL for a result without tax, an item of a version without components
    assert costs["tax"] == ("numeric", True)
    assert costs["total"] == ("numeric", True)
    history = await _columns(empty_database, "energy_cost_history")
    # Every column of a stored version is kept when it is replaced (0003): a column added to
    # energy_costs needs its twin here, or corrections would drop it from the history.
    assert set(costs) <= set(history)
    assert history["breakdown"] == ("jsonb", False)
    assert history["replaced_at"] == ("timestamp with time zone", False)
    assert history["revision"] == ("integer", False)
    breakdown = await _columns(empty_database, "energy_cost_breakdown")
    assert breakdown["rate"] == ("numeric", False)
    assert breakdown["component"] == ("text", True)
    locations = await _columns(empty_database, "locations")
    assert locations["profile"] == ("jsonb", False)
    assert locations["deleted"] == ("boolean", False)
    keys = await _columns(empty_database, "api_keys")
    assert {"key_hash", "key_prefix", "revoked_at", "account_id", "live_mode"} <= set(keys)

    conn = await asyncpg.connect(empty_database)
    try:
        indexes = {
            r["indexdef"].split(" USING btree ")[1]
            for r in await conn.fetch(
                "SELECT indexdef FROM pg_indexes WHERE tablename = $1", "energy_costs"
            )
        }
    finally:
        await conn.close()
    assert "(account_id, location_id, start_time)" in indexes
    assert "(account_id, device_id, start_time)" in indexes
    assert "(account_id, session_reference_id)" in indexes


async def test_second_run_is_a_no_op(empty_database: str) -> None:
    assert await migrate(empty_database)
    assert await migrate(empty_database) == []
    conn = await asyncpg.connect(empty_database)
    try:
        rows = await conn.fetch("SELECT version, name FROM schema_migrations ORDER BY version")
    finally:
        await conn.close()
    assert [(r["version"], r["name"]) for r in rows] == [
        (m.version, m.name) for m in available_migrations()
    ]


async def test_concurrent_runners_apply_each_migration_once(empty_database: str) -> None:
    results = await asyncio.gather(*(migrate(empty_database) for _ in range(4)))
    applied = [m.version for result in results for m in result]
    assert sorted(applied) == [m.version for m in available_migrations()]


async def test_changed_applied_migration_is_refused(empty_database: str) -> None:
    await migrate(empty_database)
    first, *rest = available_migrations()
    edited = replace(first, sql=first.sql + "\n-- edited\n")
    with pytest.raises(MigrationError, match="forward-only"):
        await migrate(empty_database, [edited, *rest])


async def test_failed_migration_leaves_no_trace(empty_database: str) -> None:
    await migrate(empty_database)
    broken = replace(
        available_migrations()[-1],
        version=9999,
        name="broken",
        sql="CREATE TABLE half_done (x int); SELECT no_such_function();",
    )
    with pytest.raises(asyncpg.PostgresError):
        await migrate(empty_database, [*available_migrations(), broken])
    conn = await asyncpg.connect(empty_database)
    try:
        assert await conn.fetchval("SELECT to_regclass('half_done')") is None
        assert await conn.fetchval("SELECT max(version) FROM schema_migrations") != 9999
    finally:
        await conn.close()


async def _run_cli(*args: str, env: dict[str, str]) -> str:
    meterflow = str(Path(sys.executable).with_name("meterflow"))
    proc = await asyncio.create_subprocess_exec(
        meterflow, *args, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await proc.communicate()
    assert proc.returncode == 0, err.decode()
    return out.decode()


async def test_cli_migrate_twice(empty_database: str) -> None:
    env = {**os.environ, "MF_DATABASE_URL": empty_database, "MF_LOG_FORMAT": "text"}
    latest = available_migrations()[-1].version
    assert latest >= 5
    assert f"schema at version {latest}" in await _run_cli("db", "migrate", env=env)
    assert f"schema up to date at version {latest}" in await _run_cli("db", "migrate", env=env)


async def test_version_1_database_upgrades_and_loses_only_the_breakdown_foreign_key(
    empty_database: str,
) -> None:
    """A database migrated before 0002 (the shared and deployed ones): the breakdown's foreign
    key goes, its primary key stays."""
    initial, *later = available_migrations()
    assert [m.version for m in later][:2] == [2, 3]
    await migrate(empty_database, [initial])
    constraints = (
        "SELECT contype::text, pg_get_constraintdef(oid) AS definition FROM pg_constraint "
        "WHERE conrelid = 'energy_cost_breakdown'::regclass ORDER BY 1"
    )
    orphan = "INSERT INTO energy_cost_breakdown VALUES ('ecs_1', 0, now(), now(), 1, 1, 1)"
    conn = await asyncpg.connect(empty_database)
    try:
        assert [r["contype"] for r in await conn.fetch(constraints)] == ["f", "p"]
        with pytest.raises(asyncpg.ForeignKeyViolationError):
            await conn.execute(orphan)
    finally:
        await conn.close()

    assert [m.version for m in await migrate(empty_database)] == [m.version for m in later]
    conn = await asyncpg.connect(empty_database)
    try:
        rows = await conn.fetch(constraints)
        assert [(r["contype"], r["definition"]) for r in rows] == [
            ("p", "PRIMARY KEY (cost_id, seq)")
        ]
        versions = await conn.fetch("SELECT version FROM schema_migrations ORDER BY 1")
        assert [r["version"] for r in versions] == [1, *(m.version for m in later)]
        await conn.execute(orphan)  # now only the writer keeps items with their cost
        with pytest.raises(asyncpg.UniqueViolationError):
            await conn.execute(orphan)
    finally:
        await conn.close()


async def test_version_6_dead_letters_get_their_batch_account(empty_database: str) -> None:
    """0007 (design §6): a stored batch dead letter takes its batch row's account and mode; one
    without a batch row (never readable) goes; both columns are then NOT NULL."""
    earlier = [m for m in available_migrations() if m.version <= 6]
    await migrate(empty_database, earlier)
    letter = (
        "INSERT INTO batch_dead_letters (batch_id, batch_index, error_code, error_message, "
        "time_created, source_topic, source_partition, source_offset) "
        "VALUES ($1, $2::int, 'unknown_device', 'm', now(), 'dead-letters', 0, 7)"
    )
    conn = await asyncpg.connect(empty_database)
    try:
        await conn.execute(
            "INSERT INTO meter_batch_records (batch_id, record_index, account_id, live_mode) "
            "VALUES ('bat_1', 0, 'acc_a', true), ('bat_1', 1, 'acc_a', true)"
        )
        await conn.execute(letter, "bat_1", 1)
        await conn.execute(letter, "bat_2", 0)  # no batch row
    finally:
        await conn.close()

    applied = await migrate(empty_database)
    assert [m.version for m in applied][:1] == [7]
    columns = await _columns(empty_database, "batch_dead_letters")
    assert columns["account_id"] == ("text", False)
    assert columns["live_mode"] == ("boolean", False)
    conn = await asyncpg.connect(empty_database)
    try:
        rows = await conn.fetch(
            "SELECT batch_id, batch_index, account_id, live_mode FROM batch_dead_letters"
        )
    finally:
        await conn.close()
    assert [tuple(r) for r in rows] == [("bat_1", 1, "acc_a", True)]
