"""A service the CLI cannot reach, a port taken or a bad `MF_` setting: one line and exit 1,
never a traceback (they were tracebacks before); a bug keeps its traceback."""

from __future__ import annotations

import errno
import os
import subprocess
import sys
from pathlib import Path

import pytest

from meterflow.cli.failures import outside_failure

METERFLOW = str(Path(sys.executable).with_name("meterflow"))
NOBODY = "127.0.0.1:1"  # nothing listens on port 1: refused at once


def run(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [METERFLOW, *args],
        env=os.environ | env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.mark.parametrize(
    ("args", "env", "expected"),
    [
        (
            ("keys", "list"),
            {"MF_DATABASE_URL": f"postgresql://meterflow:meterflow@{NOBODY}/meterflow"},
            "Error: PostgreSQL (MF_DATABASE_URL): ConnectionRefusedError: ",
        ),
        (
            ("db", "migrate", "--database-url", "notaurl"),
            {},
            "Error: PostgreSQL (MF_DATABASE_URL): ClientConfigurationError: invalid DSN",
        ),
        (
            ("profiles", "delete", "loc_x"),
            {"MF_KAFKA_BOOTSTRAP": NOBODY},
            "Error: Kafka (MF_KAFKA_BOOTSTRAP): KafkaConnectionError: Unable to bootstrap",
        ),
        (
            ("keys", "list"),
            {"MF_HTTP_PORT": "abc"},
            "Error: invalid setting: MF_HTTP_PORT: Input should be a valid integer",
        ),
    ],
)
def test_the_world_outside_fails_in_one_line(
    args: tuple[str, ...], env: dict[str, str], expected: str
) -> None:
    result = run(*args, **env)
    assert result.returncode == 1, result
    assert "Traceback" not in result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith(expected), result.stderr


def test_a_port_taken_is_one_line() -> None:
    taken = OSError(errno.EADDRINUSE, "error while attempting to bind: address already in use")
    assert outside_failure(taken) == (
        "OSError: [Errno 98] error while attempting to bind: address already in use"
    )


def test_a_bug_keeps_its_traceback() -> None:
    assert outside_failure(ValueError("a bug")) is None
    assert outside_failure(KeyError("x")) is None
