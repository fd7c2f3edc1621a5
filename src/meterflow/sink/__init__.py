"""The Postgres sink: every non-simulated result persisted once (design §4, §6; docs/sink.md)."""

from meterflow.sink.clients import SinkClients, sink_clients
from meterflow.sink.health import SinkHealth, SinkStats
from meterflow.sink.service import Sink, SinkConfig

__all__ = ["Sink", "SinkClients", "SinkConfig", "SinkHealth", "SinkStats", "sink_clients"]
