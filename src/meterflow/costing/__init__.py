"""The pricing engine (pure: no I/O, no clock): meter record + location profile -> EnergyCost."""

from meterflow.costing.engine import MAX_ENERGY_KWH, price_record, tariff_direction_of
from meterflow.costing.money import round_money
from meterflow.costing.payload import (
    meter_record_id,
    parse_record,
    price_payload,
    price_request,
    referenced_record_id,
)

__all__ = [
    "MAX_ENERGY_KWH",
    "meter_record_id",
    "parse_record",
    "price_payload",
    "price_record",
    "price_request",
    "referenced_record_id",
    "round_money",
    "tariff_direction_of",
]
