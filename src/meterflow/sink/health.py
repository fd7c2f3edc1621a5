"""The sink's health and counters, plus a tiny `/healthz` HTTP endpoint.

Counters are plain integers on `SinkStats` (`/healthz` shows them); the health sets
`meterflow_sink_healthy` itself, so the gauge and `/healthz` cannot disagree.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field

from aiohttp import web

from meterflow import metrics
from meterflow.metrics import add_metrics_route


@dataclass
class SinkStats:
    records_read: int = 0
    costs_inserted: int = 0
    costs_already_stored: int = 0
    costs_replaced: int = 0
    breakdown_inserted: int = 0
    simulated_skipped: int = 0
    dead_lettered: int = 0
    locations_changed: int = 0
    batches_written: int = 0
    write_failures: int = 0
    batches_dropped: int = 0
    commit_failures: int = 0


@dataclass
class SinkHealth:
    """Healthy = the last checkpoint attempt succeeded (or none failed yet), and the broker
    and the database answered their last probes; `reason` says what is wrong.
    `meterflow_sink_healthy` follows."""

    checkpoint_problem: str = ""
    broker_problem: str = ""
    database_problem: str = ""
    unhealthy_since: float | None = None
    last_checkpoint_at: float | None = None
    stats: SinkStats = field(default_factory=SinkStats)

    @property
    def healthy(self) -> bool:
        return not (self.checkpoint_problem or self.broker_problem or self.database_problem)

    @property
    def reason(self) -> str:
        problems = (self.checkpoint_problem, self.broker_problem, self.database_problem)
        return "; ".join(problem for problem in problems if problem)

    def mark_healthy(self) -> None:
        """A checkpoint succeeded: the database answers too."""
        self.last_checkpoint_at = time.time()
        self._set(checkpoint="", database="")

    def mark_unhealthy(self, reason: str) -> None:
        """A checkpoint failed, for `reason`."""
        self._set(checkpoint=reason)

    def mark_broker(self, problem: str) -> None:
        """The last broker probe: "" when it answered."""
        self._set(broker=problem)

    def mark_database(self, problem: str, *, checkpoint_over: bool = False) -> None:
        """The last database probe (made while no checkpoint is): "" when it answered;
        `checkpoint_over` when a failed checkpoint's problem ends with it (nothing is held)."""
        self._set(database=problem, checkpoint="" if checkpoint_over else None)

    def _set(
        self,
        *,
        checkpoint: str | None = None,
        broker: str | None = None,
        database: str | None = None,
    ) -> None:
        was = self.healthy
        if checkpoint is not None:
            self.checkpoint_problem = checkpoint
        if broker is not None:
            self.broker_problem = broker
        if database is not None:
            self.database_problem = database
        if was and not self.healthy:
            self.unhealthy_since = time.time()
        elif not was and self.healthy:
            self.unhealthy_since = None
        metrics.set_sink_healthy(self.healthy)

    def as_json(self) -> dict[str, object]:
        return {
            "status": "ok" if self.healthy else "unhealthy",
            "reason": self.reason or None,
            "unhealthy_since": self.unhealthy_since,
            "last_checkpoint_at": self.last_checkpoint_at,
            "stats": asdict(self.stats),
        }


def health_app(health: SinkHealth) -> web.Application:
    async def healthz(request: web.Request) -> web.Response:
        return web.json_response(health.as_json(), status=200 if health.healthy else 503)

    app = web.Application()
    app.router.add_get("/healthz", healthz)
    add_metrics_route(app)
    return app


async def start_health_server(health: SinkHealth, host: str, port: int) -> web.AppRunner:
    runner = web.AppRunner(health_app(health), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    return runner
