"""Network helpers shared by the integration tests."""

from __future__ import annotations

import asyncio
import random
import socket
from urllib.parse import urlparse, urlunparse

# Below Linux's ephemeral range (32768-60999 by default): a port picked there can be taken by
# the local end of some process's outgoing connection (to Kafka, Postgres) before the server the
# test starts binds it.
_LOW, _HIGH = 20000, 32000


def free_port() -> int:
    """A loopback port nobody listens on right now, for a server a test starts."""
    for _ in range(200):
        port = random.randint(_LOW, _HIGH)
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError(f"no free port between {_LOW} and {_HIGH}")


class CuttableProxy:
    """A TCP proxy in front of the shared PostgreSQL that a test can cut and restore, or hang.

    Cut = every open connection is reset and new ones are refused (the port is closed): from the
    sink's side, exactly what a stopped or unreachable database looks like, while the team's
    shared server keeps running. Hang = connections stay open (new ones are accepted) and no
    byte goes through either way until `flow()`: a database that is stopped (SIGSTOP), out of
    memory or behind a dropped route, which refuses nothing and answers nothing.
    """

    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.port = 0
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._flowing = asyncio.Event()
        self._flowing.set()

    def via(self, database_url: str) -> str:
        """`database_url` through this proxy (started: its port is known)."""
        parsed = urlparse(database_url)
        netloc = f"{parsed.username}:{parsed.password}@127.0.0.1:{self.port}"
        return urlunparse(parsed._replace(netloc=netloc))

    def hang(self) -> None:
        self._flowing.clear()

    def flow(self) -> None:
        self._flowing.set()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def cut(self) -> None:
        assert self._server is not None
        self._server.close()
        for writer in list(self._writers):
            writer.transport.abort()
        self._writers.clear()
        await self._server.wait_closed()
        self._server = None

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        await self._flowing.wait()
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.transport.abort()
            return
        self._writers |= {writer, up_writer}

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            try:
                while data := await src.read(65536):
                    await self._flowing.wait()
                    dst.write(data)
                    await dst.drain()
            except (ConnectionError, OSError):
                pass
            finally:
                dst.transport.abort()
                self._writers.discard(dst)

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))
