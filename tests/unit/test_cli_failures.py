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
from meterflow.models import dumps
from samples import london

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
            ("dlq", "replay", "--dry-run"),
            {"MF_KAFKA_BOOTSTRAP": NOBODY},
            "Error: Kafka (MF_KAFKA_BOOTSTRAP): KafkaConnectionError: Unable to bootstrap",
        ),
        (
            ("keys", "list"),
            {"MF_HTTP_PORT": "abc"},
            "Error: invalid setting: MF_HTTP_PORT: Input should be a valid integer",
        ),
        # an option is validated as its variable is (they were tracebacks: `bind()` refusing
        # the port, `logging` the level, once the process had started)
        (
            ("api", "--port", "70000"),
            {},
            "Error: invalid setting: MF_HTTP_PORT: Input should be less than or equal to 65535",
        ),
        (
            ("sink", "--http-port", "70000"),
            {},
            "Error: invalid setting: MF_SINK_HTTP_PORT: Input should be less than or equal to",
        ),
        (("api",), {"MF_LOG_LEVEL": "bogus"}, "Error: invalid setting: MF_LOG_LEVEL: Input should"),
        (("worker", "--log-level", "bogus"), {}, "Error: invalid setting: MF_LOG_LEVEL: Input"),
    ],
)
def test_the_world_outside_fails_in_one_line(
    args: tuple[str, ...], env: dict[str, str], expected: str
) -> None:
    result = run(*args, **env)
    assert result.returncode == 1, result
    assert "Traceback" not in result.stderr
    assert "Unclosed" not in result.stderr  # a client a failed start left open, said at exit
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


def test_a_rate_that_is_no_number_is_a_usage_error() -> None:
    result = run("produce", "--no-profiles", "--rate", "nan")  # FloatRange let nan through
    assert result.returncode == 2, result
    assert "Invalid value for '--rate': nan is not a rate" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_closed_pipe_ends_the_command_quietly(tmp_path: Path) -> None:
    """`meterflow cost … | head -1`: the reader has what it wants ("Error: BrokenPipeError")."""
    profile = tmp_path / "profile.json"
    fixed = {"type": "FIXED", "rate": "0.2", "effective_from": "2020-01-01T00:00:00Z"}
    profile.write_bytes(dumps(london(fixed, location_id="loc_london", account_id="acc_pipe")))
    record = {"location_id": "loc_london", "energy": "1", "start_time": "2025-01-15T03:00:00Z"}
    lines = b"".join(
        dumps({**record, "end_time": f"2025-01-15T03:{1 + n % 58:02d}:00Z"}) + b"\n"
        for n in range(5_000)
    )
    reader = subprocess.Popen(["head", "-c", "1"], stdin=subprocess.PIPE, stdout=subprocess.DEVNULL)
    assert reader.stdin is not None
    result = subprocess.run(
        [METERFLOW, "cost", "--profile", str(profile)],
        input=lines,
        stdout=reader.stdin,
        stderr=subprocess.PIPE,
        timeout=120,
        check=False,
    )
    reader.stdin.close()
    reader.wait()
    assert result.stderr.decode() == ""
