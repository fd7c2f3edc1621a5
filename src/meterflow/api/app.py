"""`create_api`: the aiohttp application, its routes, middlewares and client lifecycle."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

from aiohttp import web

from meterflow.api import batches, costs, locations, rates, readings
from meterflow.api.auth import auth_middleware, login
from meterflow.api.context import CONTEXT, ApiContext
from meterflow.api.errors import error_middleware
from meterflow.api.http import answer
from meterflow.api.kafka import Publisher, ViewFeeder
from meterflow.api.openapi import build_openapi
from meterflow.api.ratelimit import RateLimiter
from meterflow.api.schemas import Health
from meterflow.api.views import PricingView
from meterflow.db import close_pool, create_pool
from meterflow.kafka_admin import ensure_topics
from meterflow.logs import event
from meterflow.metrics import add_metrics_route, http_metrics_middleware
from meterflow.settings import Settings

log = logging.getLogger("meterflow.api")


async def healthz(request: web.Request) -> web.Response:
    return answer(Health(status="ok"))


async def readyz(request: web.Request) -> web.Response:
    ctx = request.app[CONTEXT]
    checks = {
        "kafka": ctx.publisher is not None and await ctx.publisher.reachable(),
        "database": await _database_ok(ctx),
        "views_loaded": ctx.feeder is not None and ctx.feeder.loaded.is_set(),
    }
    ready = all(checks.values())
    return answer(
        Health(status="ok" if ready else "unavailable", checks=checks), 200 if ready else 503
    )


async def _database_ok(ctx: ApiContext) -> bool:
    if ctx.pool is None:
        return False
    try:
        return bool(await asyncio.wait_for(ctx.pool.fetchval("SELECT 1"), timeout=2))
    except Exception:
        return False


async def openapi(request: web.Request) -> web.Response:
    return web.json_response(request.app[_OPENAPI])


_OPENAPI = web.AppKey("meterflow_openapi", dict)


def _routes(app: web.Application) -> None:
    app.router.add_post("/costs/instant", costs.instant_cost)
    app.router.add_put("/meters/interval", costs.submit_interval)
    app.router.add_put("/meters/cumulative/epoch", readings.submit_cumulative)
    app.router.add_get("/meters/batch", batches.batch_status)
    app.router.add_post("/costs/interval/{object_id}", costs.interval_report)
    app.router.add_post("/costs/session/{session_reference_id}", costs.session_report)
    app.router.add_get("/locations", locations.list_locations)
    app.router.add_put("/locations/{location_id}", locations.put_location)
    app.router.add_get("/locations/{location_id}", locations.get_location)
    app.router.add_delete("/locations/{location_id}", locations.delete_location)
    app.router.add_get("/tariffs/rates/{location_id}", rates.tariff_rates)
    app.router.add_get("/slots/time/{location_id}", rates.slot_time)
    app.router.add_get("/login", login)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    add_metrics_route(app)
    app.router.add_get("/openapi.json", openapi)


async def _clients(app: web.Application) -> AsyncIterator[None]:
    """Start Kafka and Postgres clients with the app, stop them after it (reverse order, also
    when start-up fails half-way)."""
    ctx = app[CONTEXT]
    settings = ctx.settings
    async with contextlib.AsyncExitStack() as started:
        await ensure_topics(settings)
        ctx.pool = pool = await create_pool(
            settings.database_url,
            min_size=1,
            max_size=10,
            command_timeout=settings.database_statement_timeout_s,
        )
        started.push_async_callback(close_pool, pool)
        ctx.publisher = publisher = Publisher(settings)
        started.push_async_callback(publisher.stop)
        await publisher.start()
        ctx.feeder = feeder = ViewFeeder(settings, ctx.view)
        started.push_async_callback(feeder.stop)
        await feeder.start()
        event(log, "api_started", topic_prefix=settings.topic_prefix)
        yield


def create_api(settings: Settings, *, start_clients: bool = True) -> web.Application:
    """The HTTP API. `start_clients=False` leaves Kafka and Postgres to the caller (tests)."""
    if "api_token_secret" not in settings.model_fields_set:
        event(
            log,
            "api_token_secret_random",
            logging.WARNING,
            reason="MF_API_TOKEN_SECRET is not set: /login tokens are signed with a secret of"
            " this process only (they end with it; other API processes refuse them)",
        )
    app = web.Application(
        client_max_size=settings.api_max_body_bytes,
        middlewares=[http_metrics_middleware, error_middleware, auth_middleware],
    )
    app[CONTEXT] = ApiContext(
        settings=settings,
        view=PricingView(),
        limiter=RateLimiter(settings.api_rate_limit_per_second, settings.api_rate_limit_burst),
    )
    app[_OPENAPI] = build_openapi()
    _routes(app)
    if start_clients:
        app.cleanup_ctx.append(_clients)
    return app
