"""What the CLI says when the world outside a command fails: a service it cannot reach, a port
that is taken, an `MF_` setting that does not parse. One line naming what to check, exit 1;
never a traceback, which is kept for bugs (anything else)."""

from __future__ import annotations

from collections.abc import Iterator
from types import TracebackType

from pydantic import ValidationError

from meterflow.logs import error_text

_SERVICES = (
    ("asyncpg", "PostgreSQL", "MF_DATABASE_URL"),
    ("aiokafka", "Kafka", "MF_KAFKA_BOOTSTRAP"),
)
"""Client library (top module), the service it talks to, the setting that says where."""


def outside_failure(error: BaseException) -> str | None:
    """`error` as one line when the world outside the command caused it; None for a bug."""
    if isinstance(error, ValidationError) and error.title == "Settings":
        problems = "; ".join(
            f"MF_{'_'.join(map(str, item['loc'])).upper()}: {item['msg']}"
            for item in error.errors(include_url=False, include_input=False)
        )
        return f"invalid setting: {problems}"
    for library, service, setting in _SERVICES:
        if _raised_in(error, library):
            return f"{service} ({setting}): {error_text(error)}"
    if isinstance(error, OSError):
        return error_text(error)
    return None


def _raised_in(error: BaseException, library: str) -> bool:
    """Whether `error` is the library's, or was raised (or re-raised) in its code."""
    if type(error).__module__.partition(".")[0] == library:
        return True
    return any(
        str(frame.tb_frame.f_globals.get("__name__", "")).partition(".")[0] == library
        for frame in _frames(error.__traceback__)
    )


def _frames(traceback: TracebackType | None) -> Iterator[TracebackType]:
    while traceback is not None:
        yield traceback
        traceback = traceback.tb_next
