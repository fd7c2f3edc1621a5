"""The pricing engine (pure: no I/O, no clock): meter record + location profile -> a priced
result, in its written form (`cost_*`, the adapters' path) or as the `EnergyCost` model
(`price_*`)."""

from meterflow.costing.engine import (
    MAX_ENERGY_KWH,
    cost_record,
    price_record,
    tariff_direction_of,
)
from meterflow.costing.money import round_money
from meterflow.costing.payload import (
    cost_payload,
    cost_request,
    meter_record_id,
    parse_record,
    price_payload,
    price_request,
    referenced_record_id,
)

__all__ = [
    "MAX_ENERGY_KWH",
    "cost_payload",
    "cost_record",
    "cost_request",
    "meter_record_id",
    "parse_record",
    "price_payload",
    "price_record",
    "price_request",
    "referenced_record_id",
    "round_money",
    "tariff_direction_of",
]
