"""Network helpers shared by the integration tests."""

from __future__ import annotations

import random
import socket

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
