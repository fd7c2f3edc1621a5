"""The exact shape of an `energy_cost` event, as the sink's text path accepts it.

`text_rows` vouches for a document only when it has exactly these keys and values; anything
else goes to the model path, the authority on what is poison.
"""

from __future__ import annotations

import re

COST_KEYS = frozenset(
    {
        "id",
        "object",
        "account_id",
        "object_id",
        "location_id",
        "device_id",
        "meter_record_id",
        "live_mode",
        "non_persistent",
        "energy_flow_direction",
        "tariff_direction",
        "location_timezone",
        "currency_code",
        "energy_units",
        "request",
        "data",
        "time_created",
    }
)
DATA_KEYS = frozenset(
    {
        "start_time",
        "end_time",
        "session_reference_id",
        "record_reference_id",
        "energy",
        "cost",
        "breakdown",
    }
)
ENERGY_KEYS = frozenset({"value"})
VALUE_KEYS = frozenset({"value", "confidence"})
TAXED_VALUE_KEYS = VALUE_KEYS | {"tax", "total"}
"""`data.cost` of a location with `tax_percentage` (design §11): both or neither."""
ITEM_KEYS = frozenset({"start_time", "end_time", "rate", "energy", "cost"})
COMPONENT_ITEM_KEYS = ITEM_KEYS | {"component"}
"""A breakdown item of a version with components (design §11)."""
FLOWS = frozenset({"INBOUND", "OUTBOUND"})
TARIFF_DIRECTIONS = frozenset({"IMPORT", "EXPORT"})

RESULT_ID = re.compile(r"ecs_[A-Za-z0-9_]+").fullmatch
RECORD_ID = re.compile(r"mre_[A-Za-z0-9_]+").fullmatch
