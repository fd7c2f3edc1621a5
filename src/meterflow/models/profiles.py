"""LocationProfile and tariffs: everything needed to price one location (design §2).

These models check shape only. Whole-profile rules (TOU coverage, overlapping versions and
prices) are in `meterflow.tariffs`, which names the gap or overlap precisely.
"""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from enum import StrEnum
from typing import Annotated, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import AfterValidator, Field, WithJsonSchema, field_validator, model_validator

from meterflow.models._base import (
    DECIMAL_PATTERN,
    AwareDatetime,
    Document,
    Money,
    digits_held,
    exponent_stored,
)
from meterflow.models.records import DeviceId, TariffDirection

_HHMM_PATTERN = r"^(?:[01][0-9]|2[0-3]):[0-5][0-9]$|^24:00$"
"""A wall-clock time in the JSON Schemas; the models look it up in `_MINUTES`."""


class Weekday(StrEnum):
    MON = "MON"
    TUE = "TUE"
    WED = "WED"
    THU = "THU"
    FRI = "FRI"
    SAT = "SAT"
    SUN = "SUN"


_MINUTES = {f"{h:02d}:{m:02d}": h * 60 + m for h in range(24) for m in range(60)} | {"24:00": 1440}
"""Every wall-clock time there is, as written, with its minutes: one dict look-up validates and
reads a rule bound (a 5-period profile has ten; reading 100,000 profiles spent ~10 % of its
time in a regex and a split here). A regex once let "24:00\\n" through (its `$`)."""


def minutes_of(hhmm: str) -> int:
    """Minutes since local midnight of a validated "HH:MM" (or "24:00") wall-clock time."""
    return _MINUTES[hhmm]


def _decimal_schema(**bounds: int) -> WithJsonSchema:
    """A decimal number or string (as `Money`), with the bounds on the number form."""
    return WithJsonSchema(
        {"anyOf": [{"type": "number", **bounds}, {"type": "string", "pattern": DECIMAL_PATTERN}]}
    )


ProfileDecimal = Annotated[Money, AfterValidator(exponent_stored), AfterValidator(digits_held)]
"""A profile's number: held exactly by the engine (`digits_held`) and by PostgreSQL."""

MAX_RATE = 10**9
"""Above this magnitude (a billion a kWh) a rate is absurd; a bound keeps every cost, with the
largest energy a record may have, far inside the 50-digit context (a rate of 1e60 made the
final rounding itself fail)."""


def _unsigned_zero(value: Decimal) -> Decimal:
    """`-0` is `0`: a rate is written in every breakdown item and rates answer as it is."""
    return value if value else value.copy_abs()


Rate = Annotated[
    ProfileDecimal,
    Field(ge=-MAX_RATE, le=MAX_RATE),
    AfterValidator(_unsigned_zero),
    _decimal_schema(minimum=-MAX_RATE, maximum=MAX_RATE),
]
"""Money per kWh, may be negative."""


class TimeOfUseRule(Document):
    months: list[Annotated[int, Field(ge=1, le=12, strict=True)]] | None = Field(
        default=None, min_length=1
    )  # strict: `true`, "2" or 3.0 are not months
    days: list[Weekday] | None = Field(default=None, min_length=1)
    from_: str = Field(alias="from", json_schema_extra={"pattern": _HHMM_PATTERN})
    to: str = Field(json_schema_extra={"pattern": _HHMM_PATTERN})
    rate: Rate

    model_config = Document.model_config | {"populate_by_name": True}

    @field_validator("from_", "to")
    @classmethod
    def _hhmm(cls, value: str) -> str:
        if value not in _MINUTES:  # every HH:MM there is (a regex let "24:00\n" through)
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
    rate: Rate

    @model_validator(mode="after")
    def _ordered(self) -> PricePoint:
        if self.valid_to <= self.valid_from:
            raise ValueError("`valid_to` must be after `valid_from`")
        return self


def _zero_to_100(value: Decimal) -> Decimal:
    if not 0 <= value <= 100:
        raise ValueError("must be between 0 and 100 (a percentage: 5 means 5 %)")
    return value


MAX_SURCHARGE_PERCENTAGE = 10**6


def _surcharge_percentage(value: Decimal) -> Decimal:
    if not -100 <= value <= MAX_SURCHARGE_PERCENTAGE:
        raise ValueError(
            f"must be between -100 and {MAX_SURCHARGE_PERCENTAGE:,} (a percentage: 12 means 12 %)"
        )
    return value


SurchargePercentage = Annotated[
    ProfileDecimal,
    AfterValidator(_surcharge_percentage),
    _decimal_schema(minimum=-100, maximum=MAX_SURCHARGE_PERCENTAGE),
]
"""A percentage applied to a rate: −100 (free) to 10⁶; may be negative (a discount)."""
MAX_STANDING_CHARGE = 10**9
"""Above this (a billion a day) a standing charge is absurd; a bound keeps a century of them,
taxed, exact in the 50-digit context."""


def _daily_charge(value: Decimal) -> Decimal:
    if not 0 <= value <= MAX_STANDING_CHARGE:
        raise ValueError(f"must be between 0 and {MAX_STANDING_CHARGE:,} (money per local day)")
    return value


StandingCharge = Annotated[
    ProfileDecimal,
    AfterValidator(_daily_charge),
    _decimal_schema(minimum=0, maximum=MAX_STANDING_CHARGE),
]
"""Money per local calendar day (design §11); never negative."""
TaxPercentage = Annotated[
    ProfileDecimal, AfterValidator(_zero_to_100), _decimal_schema(minimum=0, maximum=100)
]
"""A tax rate in percent (VAT 5 means 5 %), 0 to 100."""

ENERGY_COMPONENT = "energy"
"""The name breakdown items give the energy rate; no component may take it."""


class ComponentKind(StrEnum):
    NON_COMMODITY = "NON_COMMODITY"
    LEVY = "LEVY"


class _ComponentBase(Document):
    """A per-kWh charge stacked on the energy rate (network fee, levy), design §11."""

    name: str = Field(min_length=1, max_length=64, pattern=r"^\S(?:.*\S)?$")
    kind: ComponentKind

    @field_validator("name")
    @classmethod
    def _not_energy(cls, value: str) -> str:
        if value == ENERGY_COMPONENT:
            raise ValueError(f"{ENERGY_COMPONENT!r} names the energy rate itself")
        return value


class FixedComponent(_ComponentBase):
    type: Literal["FIXED"]
    rate: Rate


class TimeOfUseComponent(_ComponentBase):
    """Rules as a TIME_OF_USE tariff's, in local wall time, with their own coverage check."""

    type: Literal["TIME_OF_USE"]
    rules: list[TimeOfUseRule] = Field(min_length=1)


Component = Annotated[FixedComponent | TimeOfUseComponent, Field(discriminator="type")]


class _VersionBase(Document):
    """What every tariff version carries besides its energy rates (design §2, §11).

    The rate in force is `(energy rate + surcharge_fixed) × (1 + surcharge_percentage / 100)`
    plus every component's rate at that instant. `standing_charge` is not part of any record's
    cost: reports add it per local day.
    """

    effective_from: AwareDatetime
    effective_to: AwareDatetime | None = None
    surcharge_fixed: Rate | None = None
    surcharge_percentage: SurchargePercentage | None = None
    components: list[Component] | None = None
    standing_charge: StandingCharge | None = None

    @model_validator(mode="after")
    def _ordered(self) -> _VersionBase:
        if self.effective_to is not None and self.effective_to <= self.effective_from:
            raise ValueError("`effective_to` must be after `effective_from`")
        return self

    @model_validator(mode="after")
    def _unique_components(self) -> _VersionBase:
        seen: set[str] = set()
        for component in self.components or ():
            if component.name in seen:
                raise ValueError(f"two components are named {component.name!r}")
            seen.add(component.name)
        return self


class FixedTariff(_VersionBase):
    type: Literal["FIXED"]
    rate: Rate


class TimeOfUseTariff(_VersionBase):
    type: Literal["TIME_OF_USE"]
    rules: list[TimeOfUseRule] = Field(min_length=1)


class DynamicTariff(_VersionBase):
    """Market-linked prices: inline `prices`, or a `series_id` published on `market-prices`."""

    type: Literal["DYNAMIC"]
    # at least one: an empty list left every record of the version tariff_not_available
    prices: list[PricePoint] | None = Field(default=None, min_length=1)
    series_id: str | None = Field(default=None, min_length=1, pattern=r"^[^/]+$")

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
    devices: list[DeviceId] = Field(default_factory=list)
    tariffs: dict[TariffDirection, list[TariffVersion]] = Field(default_factory=dict)
    tax_percentage: TaxPercentage | None = None
    """Tax on every cost (VAT 5 means 5 %): costs then carry `cost.tax` and `cost.total`."""

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError, OSError):  # OSError: "Europe" is a folder
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
