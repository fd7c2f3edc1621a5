"""What every handler needs, built once per app: settings, clients, the view, auth state."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

import asyncpg
from aiohttp import web

from meterflow.api.credentials import Principal
from meterflow.api.kafka import Publisher, ViewFeeder
from meterflow.api.ratelimit import RateLimiter
from meterflow.api.views import PricingView
from meterflow.contract.clock import utc_now
from meterflow.settings import Settings


@dataclass
class ApiContext:
    settings: Settings
    view: PricingView
    limiter: RateLimiter
    publisher: Publisher | None = None
    feeder: ViewFeeder | None = None
    pool: asyncpg.Pool | None = None
    clock: Callable[[], datetime] = utc_now
    monotonic: Callable[[], float] = time.monotonic
    # key hash (or "id:" + key id, for tokens) -> (principal or None, cache expiry, monotonic s)
    key_cache: dict[str, tuple[Principal | None, float]] = field(default_factory=dict)

    def db(self) -> asyncpg.Pool:
        if self.pool is None:
            raise RuntimeError("the API's database pool is not started")
        return self.pool

    def kafka(self) -> Publisher:
        if self.publisher is None:
            raise RuntimeError("the API's Kafka producer is not started")
        return self.publisher


CONTEXT = web.AppKey("meterflow_api_context", ApiContext)
PRINCIPAL = "meterflow_principal"
