"""Structured logging: one JSON object per line, saying what happened to which record.

Use `log = logging.getLogger(__name__)` and pass the facts as `extra={"fields": {...}}`, or the
`event()` helper: `event(log, "dead_lettered", code="unknown_location", partition=3, offset=17)`.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

_RESERVED = set(logging.makeLogRecord({}).__dict__) | {"message", "asctime"}

_CREDENTIALS = re.compile(
    r"(?i)(authorization\"?\s*[:=]\s*\"?)[^\r\n'\"\\]+"  # a header's value, any scheme
    r"|\bsk_(?:test|live)_[\w-]+"  # an API key
    r"|\beyJ[\w-]*\.[\w-]+\.[\w-]+"  # a bearer token (a JWT)
)
"""Credentials in a log line: aiohttp logs a request it cannot parse with the offending header
in full (a key read with a trailing `\\r` put it in the API log, in clear)."""


def redact(text: str) -> str:
    """`text` with every credential replaced: keys are stored only hashed (docs/api.md), and a
    log line must not hold one either."""
    return _CREDENTIALS.sub(_redacted, text)


def _redacted(found: re.Match[str]) -> str:
    header = found.group(1)
    return f"{header}[redacted]" if header else "[redacted]"


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            doc.update(fields)
        for key, value in record.__dict__.items():
            if key not in _RESERVED and key != "fields":
                doc[key] = value
        if record.exc_info:
            doc["exc"] = self.formatException(record.exc_info)
        return redact(json.dumps(doc, default=str))


class TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record))


REPEAT_WINDOW_S = 10.0


class RepeatFilter(logging.Filter):
    """A library's line repeated within `window_s` is counted, not written: the first is
    written, then at most one a window, carrying `repeated`, how many were left out before it.
    aiokafka retries a lost broker every 100 ms with an error line each time (the sink wrote
    ~60 lines a second while Kafka was down). Our own events (`meterflow.…`) are each written:
    each is one fact about one record or batch."""

    def __init__(
        self,
        window_s: float = REPEAT_WINDOW_S,
        clock: Callable[[], float] = time.monotonic,
        limit: int = 1024,
    ) -> None:
        super().__init__()
        self._window_s = window_s
        self._clock = clock
        self._limit = limit
        self._seen: dict[tuple[str, int, str], tuple[float, int]] = {}
        """(logger, level, message) -> (when it was last written, how many left out since)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.name == "meterflow" or record.name.startswith("meterflow."):
            return True
        key = (record.name, record.levelno, record.getMessage())
        now = self._clock()
        seen = self._seen.get(key)
        if seen is not None:
            written_at, left_out = seen
            if now - written_at < self._window_s:
                self._seen[key] = (written_at, left_out + 1)
                return False
            if left_out:
                record.repeated = left_out
        elif len(self._seen) >= self._limit:
            self._seen.clear()
        self._seen[key] = (now, 0)
        return True


def configure_logging(level: str = "INFO", fmt: str = "json") -> None:
    """Route every logger (ours, faust's, aiokafka's) to stderr in one format, a library's
    repeated lines counted (`RepeatFilter`)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(RepeatFilter())
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(TextFormatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())


def event(log: logging.Logger, what: str, level: int = logging.INFO, **fields: Any) -> None:
    """Log a named event with its facts as structured fields."""
    log.log(level, what, extra={"fields": {"event": what, **fields}})


def error_text(error: BaseException) -> str:
    """An error on one line, its class named once: `KafkaConnectionError: Unable to …` (aiokafka's
    messages name their class already), a driver's several-line message folded."""
    name, words = type(error).__name__, " ".join(str(error).split())
    if not words or words.startswith(name):
        return words or name
    return f"{name}: {words}"
