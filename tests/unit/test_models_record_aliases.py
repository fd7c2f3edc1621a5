"""The older Flatpeak release's record names (`direction`, `tariff_rate`) and the published
MeterRecord schema saying exactly what the model accepts."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema_rs  # schemathesis validates with it too (a dependency of the test extra)
import pytest
from pydantic import ValidationError

from meterflow.costing import tariff_direction_of
from meterflow.models import EnergyFlowDirection, MeterRecord, TariffDirection
from meterflow.models.records import OLDER_NAMES

ROOT = Path(__file__).resolve().parents[2]
TIMES = {"start_time": "2025-06-01T10:00:00Z", "end_time": "2025-06-01T10:30:00Z"}
BASE: dict[str, Any] = {"location_id": "loc_1", "units": "KWH", "value": "1.5"} | TIMES


@pytest.mark.parametrize(
    ("older", "flow", "tariff"),
    [
        ({"direction": "IMPORT"}, EnergyFlowDirection.INBOUND, TariffDirection.IMPORT),
        ({"direction": "EXPORT"}, EnergyFlowDirection.OUTBOUND, TariffDirection.EXPORT),
        ({"tariff_rate": "EXPORT"}, EnergyFlowDirection.INBOUND, TariffDirection.EXPORT),
        (
            {"direction": "EXPORT", "tariff_rate": "IMPORT"},
            EnergyFlowDirection.OUTBOUND,
            TariffDirection.IMPORT,
        ),
    ],
)
def test_older_names_mean_the_new_ones(
    older: dict[str, str], flow: EnergyFlowDirection, tariff: TariffDirection
) -> None:
    record = MeterRecord.model_validate(BASE | older)
    assert tariff_direction_of(record) == (flow, tariff)
    written = record.model_dump(mode="json")
    assert "direction" not in written
    assert "tariff_rate" not in written
    assert record == MeterRecord.model_validate(written)  # held under the new names alone
    assert written["energy_flow_direction"] == flow
    given = {*BASE, *(OLDER_NAMES[name] for name in older)}
    assert record.model_dump(exclude_unset=True).keys() == given


@pytest.mark.parametrize(
    "both",
    [
        {"direction": "IMPORT", "energy_flow_direction": "INBOUND"},  # even when they agree
        {"direction": "EXPORT", "energy_flow_direction": "INBOUND"},
        {"tariff_rate": "IMPORT", "tariff_direction": "IMPORT"},
        {"tariff_rate": "EXPORT", "tariff_direction": None},
    ],
)
def test_a_record_with_both_names_is_refused(both: dict[str, Any]) -> None:
    with pytest.raises(ValidationError, match="give one, not both"):
        MeterRecord.model_validate(BASE | both)


@pytest.mark.parametrize(
    "older",
    [
        {"direction": "OUTBOUND"},
        {"direction": "LOCAL"},
        {"tariff_rate": "LOCAL"},
        {"direction": []},  # unhashable: a TypeError once, "unexpected error" in a letter
        {"direction": {}},
    ],
)
def test_older_names_take_only_their_own_values(older: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        MeterRecord.model_validate(BASE | older)


ENERGY: dict[str, Any] = {"location_id": "loc_1", "energy": "-2"} | TIMES
CASES: list[dict[str, Any]] = [
    BASE,
    ENERGY,
    ENERGY | {"units": None, "value": None},
    BASE | {"energy": None},
    BASE | {"energy": "1"},
    ENERGY | {"units": "KWH"},
    {"location_id": "loc_1", "units": "KWH"} | TIMES,
    {"location_id": "loc_1"} | TIMES,
    BASE | {"direction": "EXPORT"},
    BASE | {"direction": "EXPORT", "energy_flow_direction": "OUTBOUND"},
    BASE | {"tariff_rate": "EXPORT", "tariff_direction": "EXPORT"},
    BASE | {"direction": "OUTBOUND"},
    BASE | {"direction": None},  # an older name is a value or absent, never null
    BASE | {"tariff_rate": None},
    BASE | {"tariff_rate": "IMPORT", "tariff_direction": None},
    BASE | {"confidence": "0.5"},
    BASE | {"confidence": ".25"},
    BASE | {"confidence": "1.0"},
    BASE | {"confidence": "1.5"},
    BASE | {"confidence": "x"},
    BASE | {"confidence": 0.75},
    BASE | {"confidence": 2},
]


@pytest.mark.parametrize("document", CASES)
def test_the_published_schema_accepts_exactly_what_the_model_accepts(
    document: dict[str, Any],
) -> None:
    schema = json.loads((ROOT / "schemas" / "MeterRecord.schema.json").read_text())
    by_schema = jsonschema_rs.validator_for(schema).is_valid(document)
    try:
        MeterRecord.model_validate(document)
        by_model = True
    except ValidationError:
        by_model = False
    assert by_schema == by_model
