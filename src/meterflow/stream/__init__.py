"""Stream adapter: the Faust app (topics, tables, cost agent), dead-letter replay, producers."""

from meterflow.stream.app import create_app
from meterflow.stream.topics import ensure_topics

__all__ = ["create_app", "ensure_topics"]
