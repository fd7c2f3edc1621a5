"""Run the real `meterflow api` (and friends) as subprocesses for the API's integration tests.

Each server gets a fresh migrated database, its own topic prefix and a free port; the tests
talk to it over HTTP only, as a client would.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import aiohttp
import asyncpg
import pytest_asyncio
from net import free_port
from processes import MF, Process, service_env, spawn, wait_ready

from database_support import temporary_database
from meterflow.api.repository import create_api_key, revoke_api_key
from meterflow.kafka_admin import delete_topics_with_prefix
from meterflow.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
T = TypeVar("T")
TOKEN_SECRET = "test-secret-" + secrets.token_hex(16)  # >= 32 bytes: PyJWT warns below


@dataclass
class Stack:
    """One isolated environment: database, topic prefix, env for every meterflow process."""

    kafka_bootstrap: str
    database_url: str
    topic_prefix: str
    port: int
    extra_env: dict[str, str] = field(default_factory=dict)
    processes: list[Process] = field(default_factory=list)
    tmp: Path = field(default_factory=lambda: Path("/tmp") / f"mf-api-test-{secrets.token_hex(4)}")

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def env(self) -> dict[str, str]:
        env = service_env(
            {
                "MF_KAFKA_BOOTSTRAP": self.kafka_bootstrap,
                "MF_DATABASE_URL": self.database_url,
                "MF_TOPIC_PREFIX": self.topic_prefix,
                "MF_HTTP_PORT": str(self.port),
                "MF_API_TOKEN_SECRET": TOKEN_SECRET,
                "MF_LOG_LEVEL": "INFO",
                "MF_DATA_DIR": str(self.tmp / "worker"),
                "MF_APP_ID": f"api-test-{secrets.token_hex(4)}",
                "MF_SINK_GROUP_ID": f"api-test-sink-{secrets.token_hex(4)}",
                "MF_SINK_HTTP_PORT": "0",
                "MF_WORKER_WEB_ENABLED": "false",
                "MF_STORE": "memory://",
            }
            | self.extra_env
        )
        return env

    async def spawn(self, name: str, *args: str) -> Process:
        process = await spawn(name, [MF, *args], env=self.env(), cwd=ROOT, log_dir=self.tmp)
        self.processes.append(process)
        return process

    async def run_cli(self, *args: str) -> tuple[int, str, str]:
        proc = await asyncio.create_subprocess_exec(
            MF,
            *args,
            env=self.env(),
            cwd=ROOT,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await proc.communicate()
        assert proc.returncode is not None
        return proc.returncode, out.decode(), err.decode()

    async def start_api(self, wait_seconds: float = 90, *, via_worker: bool = False) -> Process:
        """`meterflow api`, or `meterflow worker` serving the API next to the Faust agents."""
        if via_worker:
            api = await self.spawn("worker", "worker", "--api", "--api-port", str(self.port))
        else:
            api = await self.spawn("api", "api", "--port", str(self.port))
        await wait_ready(api, f"{self.base_url}/readyz", timeout_s=wait_seconds, interval_s=0.2)
        return api

    async def stop_all(self) -> None:
        for process in reversed(self.processes):
            await process.stop()
        self.processes.clear()

    async def new_key(self, account_id: str, live_mode: bool = False) -> tuple[str, str]:
        """(key id, clear key), stored the way `meterflow keys create` stores it."""
        conn = await asyncpg.connect(self.database_url)
        try:
            info, key = await create_api_key(conn, account_id=account_id, live_mode=live_mode)
        finally:
            await conn.close()
        return info.id, key

    async def revoke(self, key_id: str) -> None:
        conn = await asyncpg.connect(self.database_url)
        try:
            assert await revoke_api_key(conn, key_id)
        finally:
            await conn.close()


@contextlib.asynccontextmanager
async def api_stack(
    kafka_bootstrap: str, database_url: str, *, via_worker: bool = False, **extra_env: str
) -> AsyncIterator[Stack]:
    async with temporary_database(database_url, migrated=True) as url:
        stack = Stack(
            kafka_bootstrap=kafka_bootstrap,
            database_url=url,
            topic_prefix=f"tapi{secrets.token_hex(5)}-",
            port=free_port(),
            extra_env=extra_env,
        )
        try:
            await stack.start_api(via_worker=via_worker)
            yield stack
        finally:
            await stack.stop_all()
            settings = Settings(kafka_bootstrap=kafka_bootstrap)
            await delete_topics_with_prefix(settings, stack.topic_prefix)


def worker_stack(*, with_sink: bool = False) -> Any:
    """A module-scoped `stack` fixture: `meterflow worker` serving the API (and `meterflow sink`).

    One per test module, since starting the worker is the slow part; assign it to `stack`.
    """

    @pytest_asyncio.fixture(scope="module", loop_scope="session")
    async def stack(kafka_bootstrap: str, database_url: str) -> AsyncIterator[Stack]:
        async with api_stack(kafka_bootstrap, database_url, via_worker=True) as running:
            if with_sink:
                await running.spawn("sink", "sink")
            yield running

    return stack


async def eventually(
    probe: Callable[[], Awaitable[T | None]], what: str, seconds: float = 120
) -> T:
    """Poll `probe` until it answers something: the processes work asynchronously."""
    deadline = asyncio.get_running_loop().time() + seconds
    while True:
        found = await probe()
        if found is not None:
            return found
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.5)


class Client:
    """A thin HTTP client answering (status, decoded JSON or text, headers)."""

    def __init__(self, session: aiohttp.ClientSession, base_url: str) -> None:
        self.session = session
        self.base_url = base_url

    async def call(
        self,
        method: str,
        path: str,
        *,
        key: str | None = None,
        json: Any = None,
        data: bytes | str | None = None,
        headers: dict[str, str] | None = None,
        params: dict[str, str] | list[tuple[str, str]] | None = None,
    ) -> tuple[int, Any, dict[str, str]]:
        sent = dict(headers or {})
        if key is not None:
            sent["Authorization"] = f"Bearer {key}"
        body = data
        if json is not None:
            from meterflow.models import dumps

            body = dumps(json)
            sent.setdefault("Content-Type", "application/json")
        async with self.session.request(
            method, self.base_url + path, data=body, headers=sent, params=params
        ) as response:
            raw = await response.read()
            decoded: Any
            try:
                from meterflow.models import loads

                decoded = loads(raw)
            except ValueError:
                decoded = raw.decode(errors="replace")
            return response.status, decoded, dict(response.headers)
