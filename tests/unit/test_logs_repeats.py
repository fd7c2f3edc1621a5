"""A library's repeated log line is counted, not written each time (`logs.RepeatFilter`)."""

from __future__ import annotations

import io
import json
import logging

from meterflow.logs import JsonFormatter, RepeatFilter


class _Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _logger(name: str, clock: _Clock) -> tuple[logging.Logger, io.StringIO]:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    handler.addFilter(RepeatFilter(window_s=10, clock=clock))
    log = logging.getLogger(name)
    log.handlers[:] = [handler]
    log.propagate = False
    log.setLevel(logging.INFO)
    return log, stream


def _lines(stream: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_a_library_line_repeated_within_the_window_is_counted_then_written_once() -> None:
    clock = _Clock()
    log, stream = _logger("aiokafka.test_repeats", clock)
    for _ in range(100):  # a lost broker retried every 100 ms
        log.error("Unable connect to node with id %s: %s", 1, "Connect call failed")
        clock.now += 0.1
    log.error("Unable to update metadata from %s", [1])  # another line is its own
    clock.now += 0.5
    log.error("Unable connect to node with id %s: %s", 1, "Connect call failed")
    lines = _lines(stream)
    assert [line["msg"] for line in lines] == [
        "Unable connect to node with id 1: Connect call failed",
        "Unable to update metadata from [1]",
        "Unable connect to node with id 1: Connect call failed",
    ]
    assert "repeated" not in lines[0]
    assert lines[2]["repeated"] == 99  # the ones left out between the two written
    assert [line["level"] for line in lines] == ["error"] * 3


def test_our_own_events_are_each_written() -> None:
    clock = _Clock()
    log, stream = _logger("meterflow.test_repeats", clock)
    for _ in range(5):
        log.warning("dead_lettered")  # each is one record's fact, however alike the text
    assert len(_lines(stream)) == 5
