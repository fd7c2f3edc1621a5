"""Configuration from `MF_…` environment variables, with local defaults that work out of the box."""

from __future__ import annotations

import secrets
from functools import lru_cache
from typing import Annotated, Literal

from pydantic import BeforeValidator, Field
from pydantic_settings import BaseSettings, SettingsConfigDict


def _upper(value: object) -> object:
    return value.upper() if isinstance(value, str) else value


LogLevel = Annotated[
    Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"], BeforeValidator(_upper)
]
"""A `logging` level by name, any case: `bogus` is refused with the settings, not by
`logging` with a traceback once the process has started."""


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="MF_", extra="ignore")

    kafka_bootstrap: str = "127.0.0.1:9092"
    database_url: str = "postgresql://meterflow:meterflow@127.0.0.1:5432/meterflow"
    # how long any statement the sink or the API sends (BEGIN and COMMIT included) may wait
    # for PostgreSQL: a database that hangs, rather than refusing, fails a sink checkpoint
    # (retried) or answers a request 503, instead of holding either (docs/operations.md)
    database_statement_timeout_s: float = Field(default=30.0, gt=0)
    http_host: str = "127.0.0.1"
    http_port: int = Field(default=8080, ge=1, le=65535)

    topic_prefix: str = ""
    topic_partitions: int = Field(default=6, ge=1)
    topic_replication: int = Field(default=1, ge=1)

    app_id: str = "meterflow"
    store: str = "rocksdb://"
    data_dir: str = ".local/worker"
    max_record_hours: int = Field(default=744, ge=1)

    # Faust worker (stream/): its own small web server (faust views, later /metrics) and the
    # consumer-group timings; short timeouts so a dead worker's partitions move on quickly.
    worker_web_enabled: bool = True
    worker_web_host: str = "127.0.0.1"
    worker_web_port: int = Field(default=6066, ge=1, le=65535)
    table_standby_replicas: int = Field(default=0, ge=0)
    broker_session_timeout_s: float = Field(default=10.0, gt=0)
    broker_heartbeat_interval_s: float = Field(default=1.0, gt=0)
    commit_interval_s: float = Field(default=1.0, gt=0)
    progress_interval_s: float = Field(default=5.0, gt=0)
    producer_linger_s: float = Field(default=0.02, ge=0)
    # The cost agent takes up to this many records at a time (or what came within 5 ms).
    price_batch_size: int = Field(default=500, ge=1)
    # Records one fetch hands the agents at most; the agents' queues are sized from it
    # (stream/backpressure.py), so that a waiting agent never blocks another topic's delivery.
    max_poll_records: int = Field(default=500, ge=1)
    # How long the broker may hold a worker's fetch when no partition in it has data
    # (stream/faust_fixes.py `bound_fetch_wait`: faust's fixed 1,500 ms starved busy partitions).
    fetch_max_wait_ms: int = Field(default=100, ge=1, le=1500)

    # The collector's young-generation threshold in the worker, set once it has started
    # (cli/long_lived.py; Python's default is 700, which the sink and the API keep).
    worker_gc_threshold: int = Field(default=10_000, ge=700)

    # HTTP API (docs/api.md). The token secret signs /login bearer tokens. Unset, each process
    # draws its own at random (a known default would let anyone mint tokens): tokens then end
    # with the process and no other API process accepts them, so set MF_API_TOKEN_SECRET
    # (32 characters or more) wherever the API runs more than once or restarts under clients.
    api_token_secret: str = Field(
        default_factory=lambda: secrets.token_urlsafe(32), min_length=32, repr=False
    )
    api_token_ttl_seconds: int = Field(default=3600, ge=60)
    api_key_cache_seconds: float = Field(default=5.0, ge=0)
    api_rate_limit_per_second: float = Field(default=100.0, gt=0)
    api_rate_limit_burst: int = Field(default=200, ge=1)
    api_max_body_bytes: int = Field(default=8 * 1024 * 1024, ge=1024)
    api_max_batch_records: int = Field(default=10_000, ge=1)
    # how long a request waits for Kafka to take what it publishes, then 503 broker_unavailable
    # (the producer's request timeout; aiokafka's 40 s default held requests for up to a minute)
    api_kafka_timeout_seconds: float = Field(default=5.0, ge=1)
    # a per-record report holds every row in memory, then in one answer: above this, 422
    api_max_report_records: int = Field(default=100_000, ge=1)

    # Postgres sink (sink/, docs/sink.md): a batch is written when it holds `sink_batch_size`
    # events or its oldest event waited `sink_linger_ms`; /healthz on `sink_http_port` (0 = off).
    sink_group_id: str = "meterflow-sink"
    sink_batch_size: int = Field(default=10_000, ge=1)  # measured best: docs/sink.md
    sink_linger_ms: int = Field(default=200, ge=0)
    sink_retry_max_s: float = Field(default=10.0, gt=0)
    sink_http_port: int = Field(default=8081, ge=0, le=65535)

    log_level: LogLevel = "INFO"
    log_format: Literal["json", "text"] = "json"

    def topic(self, name: str) -> str:
        """Full topic name for one of the contract's topics (§1), with the environment prefix."""
        return f"{self.topic_prefix}{name}"


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
