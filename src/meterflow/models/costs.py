"""EnergyCost: the priced result, emitted on `energy-costs` and answered by the API (design §2)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any, Literal

import msgspec
from pydantic import Field, WithJsonSchema

from meterflow.models._base import (
    DECIMAL_SCHEMA,
    FAST_ENCODERS,
    FAST_ENCODING_ERRORS,
    AwareDatetime,
    Document,
    Money,
    by_identity,
    encode_any,
    fast_encode,
    is_flat,
    loads,
)
from meterflow.models.profiles import LocationProfile
from meterflow.models.records import EnergyFlowDirection, MeterRecord, TariffDirection


def _absent(value: object) -> bool:
    return value is None


_OMITTED_WHEN_NONE = "left out when it does not apply (never null)"
OptionalMoney = Annotated[
    Money | None,
    WithJsonSchema({**DECIMAL_SCHEMA, "description": _OMITTED_WHEN_NONE}, mode="serialization"),
]
"""Serialized only when set: older consumers see exactly the first release's documents."""
OptionalName = Annotated[
    str | None,
    WithJsonSchema({"type": "string", "description": _OMITTED_WHEN_NONE}, mode="serialization"),
]


class BreakdownItem(Document):
    """One stretch of the record at one rate.

    Without components the items partition `[start_time, end_time)` and carry no `component`.
    When the tariff has components (design §11), each period of constant rates has one item
    per component, `"energy"` first: same times and energy, that component's rate and cost.
    """

    start_time: AwareDatetime
    end_time: AwareDatetime
    rate: Money
    energy: Money
    cost: Money
    component: OptionalName = Field(default=None, min_length=1, exclude_if=_absent)


class EnergyValue(Document):
    value: Money


class CostValue(Document):
    """`value` is the net cost; with a profile `tax_percentage`, `tax` and `total` follow."""

    value: Money
    confidence: Money
    tax: OptionalMoney = Field(default=None, exclude_if=_absent)
    total: OptionalMoney = Field(default=None, exclude_if=_absent)


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
    non_persistent: bool = Field(default=False, strict=True)  # never `"yes"` read as true
    energy_flow_direction: EnergyFlowDirection
    tariff_direction: TariffDirection
    location_timezone: str
    currency_code: str
    energy_units: Literal["KWH"] = "KWH"
    request: dict[str, Any]
    data: CostData
    time_created: datetime


iso: Callable[[datetime], str] = by_identity(datetime.isoformat)
"""`value.isoformat()`, remembered per object. `isoformat` costs about 1 µs with a UTC offset: a
result writes the record's bounds twice (data, and a one-item breakdown), a worker's batch
shares one `time_created`, and instants of the common shape are shared objects, so most
instants a result writes were written before."""


# The written form of a result (what `dumps` makes of the models above), built from plain
# values: the engine builds it directly (`PricedCost`), no model on the hot path. msgspec
# Structs, not dicts: a Struct is built in C from positional values and written with its field
# names encoded once, where a dict's keys were inserted, then escaped and written, per result.
# Each mirrors one model, field for field and in its order (checked below, at import).


Written = msgspec.Raw
"""A value already written (`written`): what a result repeats, written once, not per item."""


def written(value: Decimal | str) -> Written:
    """`value` as `dumps` writes it inside a result, ahead of time: a dynamic price's rate and
    boundary texts serve every record of the day, a record's energy all its equal parts."""
    return msgspec.Raw(fast_encode(value))


class WireItem(msgspec.Struct, omit_defaults=True, gc=False):
    """A `BreakdownItem` as written; instants as their `isoformat` text; `component` only when
    set. Positional: `WireItem(start_time, end_time, rate, energy, cost[, component])`."""

    start_time: str | Written
    end_time: str | Written
    rate: Decimal | Written
    energy: Decimal | Written
    cost: Decimal
    component: str | None = None


class WireCost(msgspec.Struct, omit_defaults=True, gc=False):
    """A `CostValue` as written: `tax` and `total` only when set."""

    value: Decimal
    confidence: Decimal
    tax: Decimal | None = None
    total: Decimal | None = None


class WireEnergy(msgspec.Struct, gc=False):
    value: Decimal


class WireData(msgspec.Struct, gc=False):
    """`CostData` as written (its nulls written too, as the model writes them)."""

    start_time: str
    end_time: str
    session_reference_id: str | None
    record_reference_id: str | None
    energy: WireEnergy
    cost: WireCost
    breakdown: list[WireItem]


RequestEcho = dict[str, Any] | msgspec.Raw
"""A result's `request`: the record as decoded, or its text as received (`loads_with_text`),
which is written as it came instead of being written again."""


class WireEnergyCost(msgspec.Struct, gc=False):
    """An `EnergyCost` as written. StrEnum members stay members (msgspec writes their value)."""

    id: str
    object: str
    account_id: str
    object_id: str
    location_id: str
    device_id: str | None
    meter_record_id: str
    live_mode: bool
    non_persistent: bool
    energy_flow_direction: EnergyFlowDirection
    tariff_direction: TariffDirection
    location_timezone: str
    currency_code: str
    energy_units: str
    request: RequestEcho
    data: WireData
    time_created: str


def _same_fields(wire: type[msgspec.Struct], model: type[Document]) -> None:
    """A written form that drifted from its model fails at import, not in a consumer."""
    if wire.__struct_fields__ != tuple(model.model_fields):
        raise RuntimeError(f"{wire.__name__} no longer mirrors {model.__name__}'s fields")


def _check_written_forms() -> None:
    _same_fields(WireItem, BreakdownItem)
    _same_fields(WireCost, CostValue)
    _same_fields(WireEnergy, EnergyValue)
    _same_fields(WireData, CostData)
    _same_fields(WireEnergyCost, EnergyCost)


_check_written_forms()


def wire_energy_cost(
    record: MeterRecord,
    profile: LocationProfile,
    id: str,
    meter_record_id: str,
    energy_flow_direction: EnergyFlowDirection,
    tariff_direction: TariffDirection,
    request: RequestEcho,
    start_time: str,
    end_time: str,
    energy: Decimal,
    cost: WireCost,
    breakdown: list[WireItem],
    time_created: str,
    /,
) -> WireEnergyCost:
    """An `EnergyCost` as written, the record's and the profile's fields read here but its
    instants, given as their `iso` text (the breakdown writes them too). Positional: 21
    keyword arguments cost 1.3 µs a call. The record's and the profile's fields are read from
    their `__dict__` (`models.Document`)."""
    fields, settings = record.__dict__, profile.__dict__
    device_id, location_id = fields["device_id"], fields["location_id"]
    return WireEnergyCost(
        id,
        "energy_cost",
        settings["account_id"],
        device_id or location_id,
        location_id,
        device_id,
        meter_record_id,
        settings["live_mode"],
        fields["non_persistent"],
        energy_flow_direction,
        tariff_direction,
        settings["timezone"],
        settings["currency_code"],
        "KWH",
        request,
        WireData(
            start_time,
            end_time,
            fields["session_reference_id"],
            fields["record_reference_id"],
            WireEnergy(energy),
            cost,
            breakdown,
        ),
        time_created,
    )


class PricedCost:
    """A priced record in the form it is written in: what the engine returns.

    Writing it is one msgspec call (no pydantic object per result or per breakdown item: the
    agent's hot path). `model()` gives the `EnergyCost` for callers that read fields (tests,
    tools); it is read back from the bytes, so the model and the bytes cannot disagree.
    `dumps(priced)` writes it."""

    __slots__ = ("_written", "document", "location_id")

    def __init__(self, document: WireEnergyCost) -> None:
        self.document = document
        self.location_id: str = document.location_id
        self._written: bytes | None = None

    def encode(self) -> bytes:
        """msgspec in C; the echoed request by simplejson (the reference writer) when it is
        neither raw text nor flat, or msgspec refuses its text. Written once: the engine
        measures it (`MAX_MESSAGE_BYTES`) and the adapter sends the same bytes."""
        written = self._written
        if written is not None:
            return written
        document = self.document
        request = document.request
        if type(request) is msgspec.Raw or is_flat(request):
            try:
                written = fast_encode(document)
            except FAST_ENCODING_ERRORS:
                written = None  # a text msgspec refuses: the reference writer, below
        if written is None:
            if type(request) is not msgspec.Raw:
                request = msgspec.Raw(encode_any(request).encode())
            written = fast_encode(msgspec.structs.replace(document, request=request))
        self._written = written
        return written

    def model(self) -> EnergyCost:
        return EnergyCost.model_validate(loads(self.encode()))


FAST_ENCODERS[PricedCost] = PricedCost.encode
