"""The contract's documents (design §2) as pydantic models, plus exact JSON encoding."""

from meterflow.models._base import AwareDatetime, Money, dumps, loads
from meterflow.models.costs import BreakdownItem, CostData, CostValue, EnergyCost, EnergyValue
from meterflow.models.errors import (
    DeadLetter,
    ErrorCode,
    ErrorInfo,
    PricingError,
    SourceRef,
    dead_letter,
    original_payload,
    validation_summary,
)
from meterflow.models.profiles import (
    DynamicTariff,
    FixedTariff,
    LocationProfile,
    MarketPrices,
    PricePoint,
    TariffVersion,
    TimeOfUseRule,
    TimeOfUseTariff,
    Weekday,
)
from meterflow.models.records import EnergyFlowDirection, EnergyUnit, MeterRecord, TariffDirection

__all__ = [
    "AwareDatetime",
    "BreakdownItem",
    "CostData",
    "CostValue",
    "DeadLetter",
    "DynamicTariff",
    "EnergyCost",
    "EnergyFlowDirection",
    "EnergyUnit",
    "EnergyValue",
    "ErrorCode",
    "ErrorInfo",
    "FixedTariff",
    "LocationProfile",
    "MarketPrices",
    "MeterRecord",
    "Money",
    "PricePoint",
    "PricingError",
    "SourceRef",
    "TariffDirection",
    "TariffVersion",
    "TimeOfUseRule",
    "TimeOfUseTariff",
    "Weekday",
    "dead_letter",
    "dumps",
    "loads",
    "original_payload",
    "validation_summary",
]
