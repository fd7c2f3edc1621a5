"""The pricing engine (pure: no I/O, no clock): meter record + location profile -> EnergyCost."""

from meterflow.costing.engine import (
    MAX_ENERGY_KWH,
    price_record,
    round_money,
    tariff_direction_of,
)
from meterflow.costing.payload import parse_record, price_payload

__all__ = [
    "MAX_ENERGY_KWH",
    "parse_record",
    "price_payload",
    "price_record",
    "round_money",
    "tariff_direction_of",
]
