"""The Flatpeak-compatible HTTP API (design §5): an adapter over the engine, Kafka and Postgres."""

from meterflow.api.app import create_api

__all__ = ["create_api"]
