"""Stream adapter: the Faust app (tables, cost agent), dead-letter replay, producers."""

from meterflow.stream.app import create_app

__all__ = ["create_app"]
