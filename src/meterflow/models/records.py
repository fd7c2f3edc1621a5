"""MeterRecord: what producers publish on `meter-records` and POST to the API (design §2)."""

from __future__ import annotations

import re
from decimal import Decimal
from enum import StrEnum
from typing import Annotated, Any, Literal, Self

from pydantic import (
    AfterValidator,
    ConfigDict,
    Field,
    WithJsonSchema,
    model_validator,
)

from meterflow.models._base import AwareDatetime, Document, Money, exponent_stored, text_like


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


_CONFIDENCE_PATTERN = r"^(?:0*(?:0(?:\.\d*)?|\.\d+)|0*1(?:\.0*)?)$"
_CONFIDENCE_SCHEMA = {
    "anyOf": [
        {"type": "number", "minimum": 0, "maximum": 1},
        {"type": "string", "pattern": _CONFIDENCE_PATTERN},
    ]
}
"""0 to 1, as a number or a plain decimal string (pydantic's own schema allowed any string)."""

Confidence = Annotated[
    Decimal,
    text_like(_CONFIDENCE_PATTERN, "a confidence from 0 to 1 (digits 0-9 and a point)"),
    Field(ge=0, le=1),
    WithJsonSchema(_CONFIDENCE_SCHEMA),
    AfterValidator(exponent_stored),
]
"""A record's or a reading's confidence: 0 to 1, written with a stored exponent."""

OLDER_NAMES = {"direction": "energy_flow_direction", "tariff_rate": "tariff_direction"}
"""Flatpeak's older release (zero, 2024-08-24) named two record fields differently; both names
are accepted on input (never both at once) and records are always written with the new ones."""

NO_CONTROL_CHARACTERS = r"^[^\x00-\x1f\x7f-\x9f]*$"
"""A reference is a client's name for a record or a session: printable text. A control
character (C0, DEL, C1) is refused, as more than 256 characters are, and an empty
`record_reference_id`: it identifies the record (design §8.1), so "" would make every record of
a device one record."""

_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def control_characters(text: str) -> str:
    """Why `text` breaks `NO_CONTROL_CHARACTERS`, in words: `validation_summary` says this in
    place of pydantic's pattern message."""
    found = _CONTROL.search(text)
    where = f" (U+{ord(found.group()):04X} at {found.start()})" if found is not None else ""
    return f"must not contain control characters{where}"


Reference = Annotated[str, Field(max_length=256, pattern=NO_CONTROL_CHARACTERS)]
"""A client's name for a record or a session (`record_reference_id` is also at least one
character long)."""

MAX_INPUT_VALUE = Decimal("1e15")
"""Any `energy`/`value` (or register) beyond this magnitude is absurd: the engine refuses it
before arithmetic, and a reading's model refuses it."""

BATCH_INDEX_MAX = 2**31 - 1
"""A record's 0-based position in its batch; stored as PostgreSQL `int`."""

_OLDER_FLOW = {"IMPORT": EnergyFlowDirection.INBOUND, "EXPORT": EnergyFlowDirection.OUTBOUND}
"""The older `direction` said IMPORT/EXPORT where `energy_flow_direction` says INBOUND/OUTBOUND."""
OlderFlow = Literal["IMPORT", "EXPORT"]


def _record_schema(schema: dict[str, Any]) -> None:
    """What the validators below enforce, said in JSON Schema so that clients and fuzzers know:
    one energy form (`energy`, or `units` with `value`), the older names, never both names."""
    given = {"not": {"type": "null"}}
    absent = {"type": "null"}
    schema["properties"]["direction"] = {
        "enum": list(_OLDER_FLOW),
        "deprecated": True,
        "description": "older name of energy_flow_direction: IMPORT = INBOUND, EXPORT = OUTBOUND",
    }
    schema["properties"]["tariff_rate"] = {
        "enum": [direction.value for direction in TariffDirection],
        "deprecated": True,
        "description": "older name of tariff_direction",
    }
    schema["allOf"] = [
        {
            "anyOf": [
                {
                    "required": ["energy"],
                    "properties": {"energy": given, "units": absent, "value": absent},
                },
                {
                    "required": ["units", "value"],
                    "properties": {"energy": absent, "units": given, "value": given},
                },
            ]
        },
        *({"not": {"required": [old, new]}} for old, new in OLDER_NAMES.items()),
    ]


DeviceId = Annotated[str, Field(min_length=1, max_length=128)]
"""A device's id, wherever one is named: a record's, a reading's, a location's `devices` (a
longer one, accepted once, could never be metered)."""


class MeterRecord(Document):
    """One interval of metered energy.

    Two body shapes are accepted: the seed's signed `energy` in kWh (negative = export) and
    Flatpeak's `units` + `value`. Exactly one must be present; which one is checked here, while
    the energy rules (direction conflicts, power → energy) live in `meterflow.costing`.
    """

    model_config = ConfigDict(json_schema_extra=_record_schema)

    id: str | None = Field(default=None, pattern=r"^mre_[A-Za-z0-9_]+$")
    location_id: str = Field(min_length=1, max_length=128)
    device_id: DeviceId | None = None
    energy_flow_direction: EnergyFlowDirection = EnergyFlowDirection.INBOUND
    energy: Money | None = None
    units: EnergyUnit | None = None
    value: Money | None = None
    start_time: AwareDatetime
    end_time: AwareDatetime
    session_reference_id: Reference | None = None
    record_reference_id: Reference | None = Field(default=None, min_length=1)
    tariff_direction: TariffDirection | None = None
    confidence: Confidence = Decimal(1)
    non_persistent: bool = Field(default=False, strict=True)  # never `"yes"` read as true
    # Set by the API on each accepted record of `PUT /meters/interval` (design §9), so that a
    # failure found after acceptance (a dead letter) can be shown in that batch's status.
    batch_id: str | None = Field(default=None, max_length=64, pattern=r"^bat_[0-9a-f]+$")
    batch_index: int | None = Field(default=None, ge=0, le=BATCH_INDEX_MAX, strict=True)

    # The older release's names (`OLDER_NAMES`): read, never held. `_shape` moves a value given
    # under one to its new name and leaves these None; a model dump never writes them. Typed
    # without None, so that a null is refused, as the published schema refuses it.
    direction: OlderFlow = Field(default=None, exclude=True, repr=False)  # type: ignore[arg-type]
    tariff_rate: TariffDirection = Field(default=None, exclude=True, repr=False)  # type: ignore[assignment]

    @model_validator(mode="after")
    def _shape(self) -> Self:
        """One energy form, and the older names moved to the new ones (a record giving both
        names is an error: a silent pick would price it by whichever name happened to win).

        A check of the validated record (`mode="after"`), not of its input: pydantic runs a
        `mode="before"` validator of a 16-field model at 0.45 µs a record, this at 0.15. A
        null field counts as absent, as its default is None."""
        fields = self.__dict__  # read as `models.Document` says
        if fields["direction"] is not None or fields["tariff_rate"] is not None:
            self._take_older_names(fields)
        if fields["energy"] is not None:
            if fields["units"] is not None or fields["value"] is not None:
                raise ValueError("give either `energy` (kWh) or `units` with `value`, not both")
        elif fields["units"] is None or fields["value"] is None:
            raise ValueError("`energy` (kWh), or both `units` and `value`, are required")
        return self

    def _take_older_names(self, fields: dict[str, Any]) -> None:
        """Each older name's value under its new name, in the fields and in the set of fields
        given (written as `costing._trusted` writes a frozen model, whose slots it guards)."""
        given = self.__pydantic_fields_set__
        for old, new in OLDER_NAMES.items():
            value = fields[old]
            if value is None:
                continue
            if new in given:
                raise ValueError(f"`{old}` is the older name of `{new}`: give one, not both")
            fields[new] = _OLDER_FLOW[value] if old == "direction" else value
            fields[old] = None
            given = (given - {old}) | {new}
        object.__setattr__(self, "__pydantic_fields_set__", given)
