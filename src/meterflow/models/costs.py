"""EnergyCost: the priced result, emitted on `energy-costs` and answered by the API (design §2)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import Field

from meterflow.models._base import AwareDatetime, Document, Money
from meterflow.models.records import EnergyFlowDirection, TariffDirection


class BreakdownItem(Document):
    """One stretch of the record at one rate; the items partition `[start_time, end_time)`."""

    start_time: AwareDatetime
    end_time: AwareDatetime
    rate: Money
    energy: Money
    cost: Money


class EnergyValue(Document):
    value: Money


class CostValue(Document):
    value: Money
    confidence: Money


class CostData(Document):
    start_time: AwareDatetime
    end_time: AwareDatetime
    session_reference_id: str | None = None
    record_reference_id: str | None = None
    energy: EnergyValue
    cost: CostValue
    breakdown: list[BreakdownItem]


class EnergyCost(Document):
    id: str = Field(pattern=r"^ecs_[A-Za-z0-9_]+$")
    object: Literal["energy_cost"] = "energy_cost"
    account_id: str
    object_id: str
    location_id: str
    device_id: str | None = None
    meter_record_id: str = Field(pattern=r"^mre_[A-Za-z0-9_]+$")
    live_mode: bool
    non_persistent: bool = False
    energy_flow_direction: EnergyFlowDirection
    tariff_direction: TariffDirection
    location_timezone: str
    currency_code: str
    energy_units: Literal["KWH"] = "KWH"
    request: dict[str, Any]
    data: CostData
    time_created: datetime
