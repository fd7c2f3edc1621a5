"""Configuration from `MF_…` environment variables, with local defaults that work out of the box."""

from __future__ import annotations

from functools import lru_cache

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="MF_", extra="ignore")

    kafka_bootstrap: str = "127.0.0.1:9092"
    database_url: str = "postgresql://meterflow:meterflow@127.0.0.1:5432/meterflow"
    http_host: str = "127.0.0.1"
    http_port: int = 8080

    topic_prefix: str = ""
    topic_partitions: int = Field(default=6, ge=1)
    topic_replication: int = Field(default=1, ge=1)

    app_id: str = "meterflow"
    store: str = "rocksdb://"
    data_dir: str = ".local/worker"
    max_record_hours: int = Field(default=744, ge=1)

    log_level: str = "INFO"
    log_format: str = "json"

    def topic(self, name: str) -> str:
        """Full topic name for one of the contract's topics (§1), with the environment prefix."""
        return f"{self.topic_prefix}{name}"


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
