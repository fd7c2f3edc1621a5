"""MeterRecord: what producers publish on `meter-records` and POST to the API (design §2)."""

from __future__ import annotations

from decimal import Decimal
from enum import StrEnum

from pydantic import Field, model_validator

from meterflow.models._base import AwareDatetime, Document, Money


class EnergyFlowDirection(StrEnum):
    INBOUND = "INBOUND"
    OUTBOUND = "OUTBOUND"


class TariffDirection(StrEnum):
    IMPORT = "IMPORT"
    EXPORT = "EXPORT"


class EnergyUnit(StrEnum):
    W = "W"
    KW = "KW"
    WH = "WH"
    KWH = "KWH"


class MeterRecord(Document):
    """One interval of metered energy.

    Two body shapes are accepted: the seed's signed `energy` in kWh (negative = export) and
    Flatpeak's `units` + `value`. Exactly one must be present; which one is checked here, while
    the energy rules (direction conflicts, power → energy) live in `meterflow.costing`.
    """

    id: str | None = Field(default=None, pattern=r"^mre_[A-Za-z0-9_]+$")
    location_id: str = Field(min_length=1, max_length=128)
    device_id: str | None = Field(default=None, min_length=1, max_length=128)
    energy_flow_direction: EnergyFlowDirection = EnergyFlowDirection.INBOUND
    energy: Money | None = None
    units: EnergyUnit | None = None
    value: Money | None = None
    start_time: AwareDatetime
    end_time: AwareDatetime
    session_reference_id: str | None = Field(default=None, max_length=256)
    record_reference_id: str | None = Field(default=None, max_length=256)
    tariff_direction: TariffDirection | None = None
    confidence: Decimal = Field(default=Decimal(1), ge=0, le=1)
    non_persistent: bool = False

    @model_validator(mode="after")
    def _one_energy_form(self) -> MeterRecord:
        has_energy = self.energy is not None
        has_units = self.units is not None or self.value is not None
        if has_energy and has_units:
            raise ValueError("give either `energy` (kWh) or `units` with `value`, not both")
        if not has_energy and (self.units is None or self.value is None):
            raise ValueError("`energy` (kWh), or both `units` and `value`, are required")
        return self
