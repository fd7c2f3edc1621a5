"""Error codes of the contract and the DeadLetter document (design §2)."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Literal

from pydantic import Field

from meterflow.models._base import Document


class ErrorCode(StrEnum):
    INVALID_RECORD = "invalid_record"
    INVALID_TIME_RANGE = "invalid_time_range"
    DIRECTION_CONFLICT = "direction_conflict"
    UNKNOWN_LOCATION = "unknown_location"
    UNKNOWN_DEVICE = "unknown_device"
    TARIFF_NOT_AVAILABLE = "tariff_not_available"


class PricingError(Exception):
    """A record that cannot be priced; becomes a dead letter, or an HTTP 422 with the same code."""

    def __init__(self, code: ErrorCode, message: str) -> None:
        super().__init__(f"{code.value}: {message}")
        self.code = code
        self.message = message


class ErrorInfo(Document):
    code: ErrorCode
    message: str


class SourceRef(Document):
    topic: str
    partition: int = Field(ge=0)
    offset: int = Field(ge=0)


class DeadLetter(Document):
    error: ErrorInfo
    payload: str
    payload_encoding: Literal["utf-8", "base64"] = "utf-8"
    source: SourceRef | None = None
    time_created: datetime
