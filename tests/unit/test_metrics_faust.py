"""`install_faust_metrics`: /metrics on a Faust worker's web server, gauges refreshed by a timer."""

from __future__ import annotations

from typing import Any

import faust
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client import REGISTRY

from meterflow import metrics


class BrokenConsumer:
    def assignment(self) -> set[Any]:
        raise RuntimeError("not started")

    def highwater(self, tp: Any) -> int | None:
        return None

    async def position(self, tp: Any) -> int | None:
        return None


async def test_faust_worker_serves_metrics_and_refreshes_table_sizes() -> None:
    app = faust.App(
        "t-metrics-faust", broker="kafka://127.0.0.1:1", autodiscover=False, web_enabled=True
    )
    table = {"loc_a": b"{}", "loc_b": b"{}", "loc_c": b"{}"}
    metrics.install_faust_metrics(app, {"profiles_test": table}, refresh_interval_s=1.0)

    async with TestClient(TestServer(app.web.web_app)) as client:
        response = await client.get("/metrics")
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("text/plain")
        assert "meterflow_build_info" in await response.text()

    await metrics.refresh_gauges(None, {"profiles_test": table})
    assert REGISTRY.get_sample_value("meterflow_table_entries", {"table": "profiles_test"}) == 3


async def test_a_failing_refresh_never_raises() -> None:
    table = {"x": 1}
    await metrics.refresh_gauges(BrokenConsumer(), {"profiles_broken": table})
    assert REGISTRY.get_sample_value("meterflow_table_entries", {"table": "profiles_broken"}) == 1
