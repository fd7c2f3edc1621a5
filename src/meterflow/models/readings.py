"""MeterReading: a cumulative register reading, as published on `meter-readings` (design §10).

Meters, inverters and EV chargers report "the counter read 1553 Wh at 10:42:17", not intervals;
the worker turns consecutive readings of one meter into interval records
(`costing.readings`).
"""

from __future__ import annotations

from decimal import Decimal
from enum import StrEnum

from pydantic import Field

from meterflow.models._base import AwareDatetime, Document, Money
from meterflow.models.records import (
    BATCH_INDEX_MAX,
    MAX_INPUT_VALUE,
    Confidence,
    DeviceId,
    EnergyFlowDirection,
    Reference,
)


class RegisterUnit(StrEnum):
    """A register counts energy; power units (W, KW) make no sense for it."""

    WH = "WH"
    KWH = "KWH"


REGISTER_PLACES = 20
"""Decimal places a register may carry. Up to `MAX_INPUT_VALUE`, a register in kWh and the
increase between two are then at most 36 digits: exact in the engine's 50-digit context."""


class MeterReading(Document):
    """One reading of a meter's cumulative energy register (never negative)."""

    location_id: str = Field(min_length=1, max_length=128)
    device_id: DeviceId | None = None
    energy_flow_direction: EnergyFlowDirection = EnergyFlowDirection.INBOUND
    time: AwareDatetime
    value: Money = Field(ge=0, le=MAX_INPUT_VALUE, decimal_places=REGISTER_PLACES)
    units: RegisterUnit
    # a meter record's rules: they become the references of the interval this reading closes
    session_reference_id: Reference | None = None
    record_reference_id: Reference | None = Field(default=None, min_length=1)
    confidence: Confidence | None = None
    # Set by the API on each accepted reading of `PUT /meters/cumulative/epoch` (design §9):
    # its dead letters and the interval it closes carry them, so the batch's status finds both.
    batch_id: str | None = Field(default=None, max_length=64, pattern=r"^bat_[0-9a-f]+$")
    batch_index: int | None = Field(default=None, ge=0, le=BATCH_INDEX_MAX, strict=True)

    @property
    def object_id(self) -> str:
        """Whose register this is (design §8.1): the device if given, else the location."""
        return self.device_id if self.device_id is not None else self.location_id

    @property
    def kwh(self) -> Decimal:
        """The register in kWh, exactly: a WH value's exponent moves by 3 (a product by
        0.001 would round in the default context, past 28 digits)."""
        if self.units is RegisterUnit.KWH:
            return self.value
        sign, digits, exponent = self.value.as_tuple()
        assert isinstance(exponent, int)  # the model refuses NaN and infinities
        return Decimal((sign, digits, exponent - 3))
