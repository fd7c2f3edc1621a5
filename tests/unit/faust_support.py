"""A real faust app for unit tests of what we build on faust: never started, never connected."""

from __future__ import annotations

from typing import Any

import faust


def unstarted_app(app_id: str) -> faust.App:
    """An app whose broker nothing here connects to (nothing starts it), its flow running as
    at the end of a rebalance (a new app's flow starts suspended)."""
    app = faust.App(app_id, broker="kafka://127.0.0.1:1", autodiscover=False, web_enabled=False)
    app.flow_control.resume()
    return app


def discard(app: faust.App) -> None:
    """Close the loop faust made for the consumer's thread, which never ran."""
    consumer: Any = app.consumer
    consumer._thread.thread_loop.close()
