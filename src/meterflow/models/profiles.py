"""LocationProfile and tariffs: everything needed to price one location (design §2).

These models check shape only. Whole-profile rules (TOU coverage, overlapping versions and
prices) are in `meterflow.tariffs`, which names the gap or overlap precisely.
"""

from __future__ import annotations

import re
from datetime import date
from enum import StrEnum
from typing import Annotated, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, field_validator, model_validator

from meterflow.models._base import AwareDatetime, Document, Money
from meterflow.models.records import TariffDirection

_HHMM = re.compile(r"^(?:[01]\d|2[0-3]):[0-5]\d$|^24:00$")


class Weekday(StrEnum):
    MON = "MON"
    TUE = "TUE"
    WED = "WED"
    THU = "THU"
    FRI = "FRI"
    SAT = "SAT"
    SUN = "SUN"


def minutes_of(hhmm: str) -> int:
    """Minutes since local midnight of an "HH:MM" (or "24:00") wall-clock time."""
    hours, minutes = hhmm.split(":")
    return int(hours) * 60 + int(minutes)


class TimeOfUseRule(Document):
    months: list[Annotated[int, Field(ge=1, le=12)]] | None = Field(default=None, min_length=1)
    days: list[Weekday] | None = Field(default=None, min_length=1)
    from_: str = Field(alias="from")
    to: str
    rate: Money

    model_config = Document.model_config | {"populate_by_name": True}

    @field_validator("from_", "to")
    @classmethod
    def _hhmm(cls, value: str) -> str:
        if not _HHMM.match(value):
            raise ValueError(f"{value!r} is not a wall-clock time HH:MM (00:00 to 24:00)")
        return value

    @model_validator(mode="after")
    def _ordered(self) -> TimeOfUseRule:
        if self.from_ == "24:00":
            raise ValueError("`from` cannot be 24:00")
        if minutes_of(self.from_) >= minutes_of(self.to):
            raise ValueError(f"`from` {self.from_} must be before `to` {self.to}")
        return self


class PricePoint(Document):
    """A price in force over `[valid_from, valid_to)`, absolute instants."""

    valid_from: AwareDatetime
    valid_to: AwareDatetime
    rate: Money

    @model_validator(mode="after")
    def _ordered(self) -> PricePoint:
        if self.valid_to <= self.valid_from:
            raise ValueError("`valid_to` must be after `valid_from`")
        return self


class _VersionBase(Document):
    effective_from: AwareDatetime
    effective_to: AwareDatetime | None = None

    @model_validator(mode="after")
    def _ordered(self) -> _VersionBase:
        if self.effective_to is not None and self.effective_to <= self.effective_from:
            raise ValueError("`effective_to` must be after `effective_from`")
        return self


class FixedTariff(_VersionBase):
    type: Literal["FIXED"]
    rate: Money


class TimeOfUseTariff(_VersionBase):
    type: Literal["TIME_OF_USE"]
    rules: list[TimeOfUseRule] = Field(min_length=1)


class DynamicTariff(_VersionBase):
    """Market-linked prices: inline `prices`, or a `series_id` published on `market-prices`."""

    type: Literal["DYNAMIC"]
    prices: list[PricePoint] | None = None
    series_id: str | None = Field(default=None, min_length=1, pattern=r"^[^/]+$")
    surcharge_fixed: Money | None = None

    @model_validator(mode="after")
    def _one_source(self) -> DynamicTariff:
        if (self.prices is None) == (self.series_id is None):
            raise ValueError("a DYNAMIC tariff needs exactly one of `prices` or `series_id`")
        return self


TariffVersion = Annotated[
    FixedTariff | TimeOfUseTariff | DynamicTariff, Field(discriminator="type")
]


class LocationProfile(Document):
    location_id: str = Field(min_length=1, max_length=128)
    account_id: str = Field(min_length=1, max_length=128)
    live_mode: bool = False
    timezone: str
    currency_code: str = Field(pattern=r"^[A-Z]{3}$")
    devices: list[str] = Field(default_factory=list)
    tariffs: dict[TariffDirection, list[TariffVersion]] = Field(default_factory=dict)

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"{value!r} is not an IANA time zone") from None
        return value


class MarketPrices(Document):
    """One UTC day of one market price series.

    The value on `market-prices`, with key `{series_id}/{day}`.
    """

    series_id: str = Field(min_length=1, pattern=r"^[^/]+$")
    day: date
    currency_code: str | None = Field(default=None, pattern=r"^[A-Z]{3}$")
    prices: list[PricePoint]
