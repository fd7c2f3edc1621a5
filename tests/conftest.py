"""Where the tests find the real services (Kafka, PostgreSQL).

Order: MF_KAFKA_BOOTSTRAP / MF_DATABASE_URL when set; else the local services that
`make up` / `.ci/run` started on the default ports. A service that cannot be reached fails the
test (never skips): in CI a missing service is a failure.
"""

from __future__ import annotations

import os
import socket
import uuid
from urllib.parse import urlparse

import pytest

DEFAULT_KAFKA = "127.0.0.1:9092"
DEFAULT_DATABASE_URL = "postgresql://meterflow:meterflow@127.0.0.1:5432/meterflow"


def _reachable(host: str, port: int, timeout: float = 2.0) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


@pytest.fixture(scope="session")
def kafka_bootstrap() -> str:
    bootstrap = os.environ.get("MF_KAFKA_BOOTSTRAP", DEFAULT_KAFKA)
    host, _, port = bootstrap.split(",")[0].rpartition(":")
    if not _reachable(host, int(port)):
        pytest.fail(
            f"Kafka is not reachable at {bootstrap}: start it with `make up` "
            "(deploy/local/kafka.sh start) or set MF_KAFKA_BOOTSTRAP",
            pytrace=False,
        )
    return bootstrap


@pytest.fixture(scope="session")
def database_url() -> str:
    url = os.environ.get("MF_DATABASE_URL", DEFAULT_DATABASE_URL)
    parsed = urlparse(url)
    if not _reachable(parsed.hostname or "127.0.0.1", parsed.port or 5432):
        pytest.fail(
            f"PostgreSQL is not reachable at {parsed.hostname}:{parsed.port}: start it with "
            "`make up` (deploy/local/postgres.sh start) or set MF_DATABASE_URL",
            pytrace=False,
        )
    return url


@pytest.fixture
def topic_prefix() -> str:
    """A fresh topic prefix, so tests sharing one broker never see each other's records."""
    return f"t{uuid.uuid4().hex[:10]}-"
