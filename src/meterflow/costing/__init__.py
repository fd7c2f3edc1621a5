"""The pricing engine (pure: no I/O, no clock): meter record + location profile -> a priced
result in its written form (`cost_*`, what the adapters send; `.model()` is the `EnergyCost`),
or `price_payload` for the model straight away."""

from meterflow.costing.engine import (
    MAX_ENERGY_KWH,
    check_energy,
    check_time_range,
    cost_record,
    tariff_direction_of,
)
from meterflow.costing.money import round_money
from meterflow.costing.payload import (
    cost_payload,
    cost_request,
    meter_record_id,
    parse_record,
    price_payload,
    referenced_record_id,
)

__all__ = [
    "MAX_ENERGY_KWH",
    "check_energy",
    "check_time_range",
    "cost_payload",
    "cost_record",
    "cost_request",
    "meter_record_id",
    "parse_record",
    "price_payload",
    "referenced_record_id",
    "round_money",
    "tariff_direction_of",
]
