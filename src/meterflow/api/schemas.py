"""The API's own documents (requests and answers that are not contract documents).

They define the OpenAPI schema too, so what is served, what is validated and what is documented
cannot drift apart.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, WithJsonSchema

from meterflow.models import (
    AwareDatetime,
    CostValue,
    EnergyValue,
    LocationProfile,
    Money,
    RegisterUnit,
    TariffDirection,
    TariffVersion,
)
from meterflow.models.profiles import TaxPercentage
from meterflow.models.records import NO_CONTROL_CHARACTERS, DeviceId


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ErrorBody(_Body):
    object: Literal["error"] = "error"
    type: str
    code: str
    message: str


class FailedRecord(_Body):
    record_num: int = Field(ge=0, description="0-based position of the record in the array")
    record_reference_id: str | None = None
    error: str


class MeterBatch(_Body):
    id: str = Field(pattern=r"^bat_[0-9a-f]+$")
    object: Literal["meter_batch"] = "meter_batch"
    account_id: str
    live_mode: bool
    records_submitted: int = Field(ge=0)
    records_accepted: int = Field(ge=0)
    failed_records: list[FailedRecord]
    time_created: datetime


class RecordStatus(StrEnum):
    ACCEPTED = "ACCEPTED"
    PRICED = "PRICED"
    FAILED = "FAILED"


class RecordError(_Body):
    code: str
    message: str


class BatchRecord(_Body):
    """One submitted record's status in `GET /meters/batch` (docs/api.md, Batch status)."""

    index: int = Field(ge=0, description="0-based position of the record in the array")
    status: RecordStatus
    meter_record_id: str | None = Field(
        description="null for a record refused at acceptance; a reading's once its interval "
        "is PRICED (null for a reading that was its meter's baseline)"
    )
    energy_cost_id: str | None = Field(description="the stored result's id, once PRICED")
    error: RecordError | None


class MeterBatchStatus(MeterBatch):
    """`GET /meters/batch`: the `meter_batch` of the PUT, now with each record's status.

    `failed_records` lists every FAILED record (refused at acceptance or failed in the
    pipeline), so a client reading only Flatpeak's fields sees late failures too.
    """

    records_processed: int = Field(ge=0, description="records PRICED or FAILED")
    records_failed: int = Field(ge=0)
    data: list[BatchRecord]


READING_ITEM_SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "required": ["time", "value"],
    "properties": {
        "time": {"type": "integer", "minimum": 0, "description": "Unix seconds of the reading"},
        "value": {"type": "number", "minimum": 0, "description": "the register, in `units`"},
        "record_reference_id": {
            "type": "string",
            "minLength": 1,
            "maxLength": 256,
            "pattern": NO_CONTROL_CHARACTERS,
            "description": "becomes the reference of the interval the reading closes",
        },
    },
}
"""One item of `data` (Flatpeak's): what the handler checks, item by item (api/readings.py)."""


class CumulativeReadings(_Body):
    """`PUT /meters/cumulative/epoch` (Flatpeak's body, design §10): readings of one meter's
    cumulative register. Items are judged one by one: a bad item is listed in
    `failed_records`, it does not refuse the request."""

    location_id: str = Field(min_length=1, max_length=128)
    device_id: str | None = Field(default=None, min_length=1, max_length=128)
    session_reference_id: str | None = Field(
        default=None, max_length=256, pattern=NO_CONTROL_CHARACTERS
    )
    direction: TariffDirection | None = Field(
        default=None, description="IMPORT (= INBOUND, the default) or EXPORT (= OUTBOUND)"
    )
    units: RegisterUnit
    data: Annotated[
        list[Any],
        WithJsonSchema(
            {
                "type": "array",
                "maxItems": 10_000,
                "items": {
                    "description": (
                        "A reading. Any other JSON value is not refused with the request: it "
                        "is listed in `failed_records` (with `record_num`)."
                    ),
                    "anyOf": [READING_ITEM_SCHEMA, {}],
                },
            }
        ),
    ]


class LocationBody(_Body):
    """`PUT /locations/{id}`: a LocationProfile whose owner comes from the API key.

    `location_id`, `account_id` and `live_mode` may be omitted; when given they must agree with
    the path and the key. The stored resource's own fields (`id`, `object`, `time_updated`)
    are read-only and may be sent back as a GET wrote them (`id` must agree with the path too).
    """

    id: str | None = Field(default=None, min_length=1, max_length=128)
    object: Literal["location"] | None = None
    time_updated: AwareDatetime | None = None
    location_id: str | None = Field(default=None, min_length=1, max_length=128)
    account_id: str | None = Field(default=None, min_length=1, max_length=128)
    live_mode: StrictBool | None = None  # the schema says boolean: 0 or "true" are refused
    timezone: str
    currency_code: str = Field(pattern=r"^[A-Z]{3}$")
    devices: list[DeviceId] = Field(default_factory=list)
    tariffs: dict[TariffDirection, list[TariffVersion]] = Field(default_factory=dict)
    tax_percentage: TaxPercentage | None = None


class Location(LocationProfile):
    """A stored location: the profile plus Flatpeak's `id`/`object`."""

    id: str
    object: Literal["location"] = "location"
    time_updated: datetime


class LocationList(_Body):
    object: Literal["list"] = "list"
    url: str
    has_more: bool
    data: list[Location]


class DeletedLocation(_Body):
    id: str
    object: Literal["location"] = "location"
    deleted: Literal[True] = True


class Aggregation(StrEnum):
    DAY = "DAY"
    MONTH = "MONTH"


class ReportBody(_Body):
    """Body of `POST /costs/interval/{id}`; `aggregation`/`tariff_direction` may also be query
    parameters (Flatpeak passes them in the query): the query's `aggregation` wins, every
    direction given must agree (`api.http.query_direction`)."""

    start_time: AwareDatetime
    end_time: AwareDatetime
    tariff_direction: TariffDirection | None = None
    aggregation: Aggregation | None = None


class SessionBody(_Body):
    tariff_direction: TariffDirection | None = None


def _absent(value: object) -> bool:
    return value is None


class StandingChargeValue(_Body):
    """The standing charges a summed row holds (design §11): one per local day charged."""

    value: Money = Field(description="the exact sum of the days' standing charges (net of tax)")
    days: int = Field(ge=1, description="local days charged in this row: 1 on a DAY row")


class ReportRow(_Body):
    start_time: datetime
    end_time: datetime
    session_reference_id: str | None = None
    record_reference_id: str | None = None
    records: int = Field(ge=0, description="number of meter records summed into this row")
    revision: int | None = Field(
        default=None,
        ge=1,
        description="per-record rows: the stored version's revision (1, +1 per correction, "
        "design §8.3); null on summed rows",
    )
    energy: EnergyValue
    cost: CostValue = Field(
        description="`value`: the records' energy cost (net). `tax` and `total` on every row "
        "of a report that makes a bill (tax, or standing charges): the records' tax plus the "
        "tax on the row's standing charge (rounded once per row), and `total` = the records' "
        "totals + standing charge + its tax (docs/api.md, Bills in reports)"
    )
    standing_charge: StandingChargeValue | None = Field(
        default=None,
        exclude_if=_absent,
        description="DAY/MONTH rows of a location holding a charged local day; left out "
        "otherwise (never null)",
    )


class CostReport(_Body):
    id: str = Field(pattern=r"^ecs_[0-9a-f]+$")
    object: Literal["energy_cost"] = "energy_cost"
    account_id: str
    object_id: str
    live_mode: bool
    tariff_direction: TariffDirection
    location_timezone: str
    currency_code: str
    energy_units: Literal["KWH"] = "KWH"
    request: dict[str, Any]
    data: list[ReportRow]
    time_created: datetime


class LoginResponse(_Body):
    bearer_token: str
    expires_in: int = Field(ge=1)
    live_mode: bool


class Health(_Body):
    status: Literal["ok", "unavailable"]
    checks: dict[str, bool] = Field(default_factory=dict)


class ComponentRate(_Body):
    name: str = Field(description='"energy" (surcharges included) or a component\'s name')
    rate: Money


class RateTariff(_Body):
    rate: Money = Field(description="the rate in force per kWh, net of tax: energy + components")
    confidence: Money


class RatePeriod(_Body):
    valid_from: datetime
    valid_to: datetime
    tariff: RateTariff
    components: list[ComponentRate] = Field(description="sums to `tariff.rate`; energy first")


class TariffRates(_Body):
    """`GET /tariffs/rates/{location_id}` (design §12): the timeline the engine prices with."""

    object: Literal["tariff_rate"] = "tariff_rate"
    account_id: str
    live_mode: bool
    location_id: str
    location_timezone: str
    currency_code: str
    direction: TariffDirection
    request: dict[str, Any]
    data: list[RatePeriod]
    time_created: datetime


class SlotTariff(_Body):
    rate_avg: Money = Field(description="average rate per kWh over the slot, 6 places")
    confidence: Money


class SlotPeriod(_Body):
    start_time: datetime
    end_time: datetime
    tariff: SlotTariff


class SlotTime(_Body):
    """`GET /slots/time/{location_id}` (design §12): the cheapest or dearest whole minutes."""

    object: Literal["slot_time"] = "slot_time"
    account_id: str
    live_mode: bool
    location_id: str
    location_timezone: str
    currency_code: str
    direction: TariffDirection
    request: dict[str, Any]
    data: list[SlotPeriod]
    time_created: datetime
