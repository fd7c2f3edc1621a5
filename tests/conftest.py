"""Where the tests find the real services (Kafka, PostgreSQL).

For each service, in order:
1. `MF_KAFKA_BOOTSTRAP` / `MF_DATABASE_URL` when set (must answer, else the run fails);
2. whatever answers on the local ports (what `make up` / `.ci/run` started; `MF_KAFKA_PORT` and
   `MF_PG_PORT` move them, as in deploy/local/env.sh);
3. when `CI` is set: fail with a clear message (CI starts its services itself);
4. a Docker engine answering: testcontainers (`apache/kafka` in KRaft mode, `postgres:16`);
5. otherwise the session starts the local services with `deploy/local/*.sh` and stops, at the end,
   only what it started itself.
Tests never skip for a missing service.
"""

from __future__ import annotations

import os
import socket
import subprocess
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pytest
import pytest_asyncio

from database_support import temporary_database

REPO = Path(__file__).resolve().parent.parent
LOCAL = REPO / "deploy" / "local"
# The local services' ports follow deploy/local/env.sh, so `MF_KAFKA_PORT=… make up test` agrees.
DEFAULT_KAFKA = f"127.0.0.1:{os.environ.get('MF_KAFKA_PORT', '9092')}"
DEFAULT_DATABASE_URL = (
    f"postgresql://meterflow:meterflow@127.0.0.1:{os.environ.get('MF_PG_PORT', '5432')}/meterflow"
)
KAFKA_IMAGE = "apache/kafka:4.4.0"
PROTOCOL_MAP = "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT"
POSTGRES_IMAGE = "postgres:16"


def _reachable(host: str, port: int, timeout: float = 2.0) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def _wait_reachable(host: str, port: int, what: str, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while not _reachable(host, port, timeout=1.0):
        if time.monotonic() > deadline:
            pytest.fail(f"{what} did not answer on {host}:{port} in {timeout:.0f}s", pytrace=False)
        time.sleep(0.5)


def _docker_answers() -> bool:
    try:
        import docker  # type: ignore[import-untyped]  # testcontainers' client

        client = docker.from_env(timeout=3)
        client.ping()
        return True
    except Exception:
        return False


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _host_port(address: str) -> tuple[str, int]:
    host, _, port = address.split(",")[0].rpartition(":")
    return host, int(port)


def _local_script(name: str, action: str) -> None:
    result = subprocess.run(
        [str(LOCAL / f"{name}.sh"), action], capture_output=True, text=True, check=False
    )
    if result.returncode != 0:
        pytest.fail(
            f"deploy/local/{name}.sh {action} failed (exit {result.returncode}):\n{result.stderr}",
            pytrace=False,
        )


class _Provider:
    """Resolves one service to an address, starting it only when nothing else provides it."""

    def __init__(
        self,
        *,
        label: str,
        env_var: str,
        default: str,
        address_of: Callable[[str], tuple[str, int]],
        from_docker: Callable[[list[Any]], str],
        local_script: str,
        hint: str,
    ) -> None:
        self.label, self.env_var, self.default = label, env_var, default
        self.address_of, self.from_docker = address_of, from_docker
        self.local_script, self.hint = local_script, hint

    def provide(self) -> Iterator[str]:
        """The address for a session fixture; afterwards, stops only what it started."""
        stops: list[Callable[[], None]] = []
        try:
            yield self.resolve(stops)
        finally:
            for stop in reversed(stops):
                stop()

    def resolve(self, stops: list[Callable[[], None]]) -> str:
        configured = os.environ.get(self.env_var)
        if configured:
            host, port = self.address_of(configured)
            if not _reachable(host, port):
                pytest.fail(
                    f"{self.label} is not reachable at {host}:{port} ({self.env_var}={configured})",
                    pytrace=False,
                )
            return configured
        if _reachable(*self.address_of(self.default)):
            return self.default
        if os.environ.get("CI"):
            pytest.fail(
                f"CI: {self.label} is not reachable at {self.default} and {self.env_var} is unset; "
                f"CI must start it first ({self.hint})",
                pytrace=False,
            )
        if _docker_answers():
            containers: list[Any] = []

            def stop_containers() -> None:
                for container in containers:
                    container.stop()

            stops.append(stop_containers)
            return self.from_docker(containers)
        _local_script(self.local_script, "start")
        stops.append(lambda: _local_script(self.local_script, "stop"))
        _wait_reachable(*self.address_of(self.default), self.label)
        return self.default


def _container(
    containers: list[Any], image: str, inner_port: int, port: int, env: dict[str, str], label: str
) -> None:
    """Start `image` with `inner_port` published on `port` and wait until it answers there."""
    from testcontainers.core.container import DockerContainer

    container = DockerContainer(image).with_bind_ports(inner_port, port)
    for name, value in env.items():
        container = container.with_env(name, value)
    container.start()
    containers.append(container)
    _wait_reachable("127.0.0.1", port, f"{label} (testcontainers)")


def _kafka_container(containers: list[Any]) -> str:
    # The broker must advertise the address the host sees, so the host port is chosen up front.
    port = _free_port()
    env = {
        "KAFKA_NODE_ID": "1",
        "KAFKA_PROCESS_ROLES": "broker,controller",
        "KAFKA_LISTENERS": "PLAINTEXT://:9092,CONTROLLER://:9093",
        "KAFKA_ADVERTISED_LISTENERS": f"PLAINTEXT://127.0.0.1:{port}",
        "KAFKA_CONTROLLER_LISTENER_NAMES": "CONTROLLER",
        "KAFKA_CONTROLLER_QUORUM_VOTERS": "1@localhost:9093",
        "KAFKA_LISTENER_SECURITY_PROTOCOL_MAP": PROTOCOL_MAP,
        "KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR": "1",
        "KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR": "1",
        "KAFKA_TRANSACTION_STATE_LOG_MIN_ISR": "1",
        "KAFKA_GROUP_INITIAL_REBALANCE_DELAY_MS": "0",
    }
    _container(containers, KAFKA_IMAGE, 9092, port, env, "Kafka")
    return f"127.0.0.1:{port}"


def _postgres_container(containers: list[Any]) -> str:
    port = _free_port()
    env = {
        "POSTGRES_USER": "meterflow",
        "POSTGRES_PASSWORD": "meterflow",
        "POSTGRES_DB": "meterflow",
    }
    _container(containers, POSTGRES_IMAGE, 5432, port, env, "PostgreSQL")
    return f"postgresql://meterflow:meterflow@127.0.0.1:{port}/meterflow"


def _database_address(url: str) -> tuple[str, int]:
    parsed = urlparse(url)
    return parsed.hostname or "127.0.0.1", parsed.port or 5432


KAFKA = _Provider(
    label="Kafka",
    env_var="MF_KAFKA_BOOTSTRAP",
    default=DEFAULT_KAFKA,
    address_of=_host_port,
    from_docker=_kafka_container,
    local_script="kafka",
    hint="`make up` or deploy/local/kafka.sh start, or set MF_KAFKA_BOOTSTRAP",
)
POSTGRES = _Provider(
    label="PostgreSQL",
    env_var="MF_DATABASE_URL",
    default=DEFAULT_DATABASE_URL,
    address_of=_database_address,
    from_docker=_postgres_container,
    local_script="postgres",
    hint="`make up` or deploy/local/postgres.sh start, or set MF_DATABASE_URL",
)


@pytest.fixture(scope="session")
def kafka_bootstrap() -> Iterator[str]:
    yield from KAFKA.provide()


@pytest.fixture(scope="session")
def database_url() -> Iterator[str]:
    yield from POSTGRES.provide()


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def fresh_database(database_url: str) -> AsyncIterator[str]:
    """One empty database for the whole session."""
    async with temporary_database(database_url) as url:
        yield url


@pytest_asyncio.fixture
async def empty_database(database_url: str) -> AsyncIterator[str]:
    """One empty database per test."""
    async with temporary_database(database_url) as url:
        yield url


@pytest_asyncio.fixture
async def migrated_database(database_url: str) -> AsyncIterator[str]:
    """One database per test with every migration applied."""
    async with temporary_database(database_url, migrated=True) as url:
        yield url


@pytest.fixture
def topic_prefix() -> str:
    """A fresh topic prefix, so tests sharing one broker never see each other's records."""
    return f"t{uuid.uuid4().hex[:10]}-"
