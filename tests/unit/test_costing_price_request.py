"""`cost_request` is `cost_payload` without the JSON round trip: for a record built in process
(the readings agent's derived interval) both give the same result, byte for byte, dead letters
included."""

from __future__ import annotations

from datetime import UTC
from decimal import Decimal
from typing import Any

import msgspec
import pytest
from costing_support import NOW, fixed, no_market, profile

from meterflow.costing import cost_payload, cost_request
from meterflow.ids import new_batch_id
from meterflow.models import DeadLetter, MeterRecord, PricedCost, SourceRef, dumps, loads
from meterflow.models._base import dumps_generic
from meterflow.models.costs import BreakdownItem, WireCost, WireItem, _same_fields

LOCATION = profile(
    {"IMPORT": [fixed("0.25", effective_from="2024-06-01T00:00:00Z")]}, devices=["d1"]
)
BATCH = new_batch_id()
SOURCE = SourceRef(topic="meter-readings", partition=3, offset=17)


def interval(**changes: Any) -> dict[str, Any]:
    """Shaped like `costing.readings.interval_record`: what `loads(dumps(it))` gives back."""
    body: dict[str, Any] = {
        "location_id": "loc_test",
        "energy_flow_direction": "INBOUND",
        "energy": Decimal("0.537"),
        "start_time": "2025-01-01T00:00:00+00:00",
        "end_time": "2025-01-01T00:15:00+00:00",
        "record_reference_id": "rdg_abc",
        "confidence": Decimal("0.9"),
        "batch_id": BATCH,
        "batch_index": 4,
    }
    body.update(changes)
    return {k: v for k, v in body.items() if v is not None}


@pytest.mark.parametrize(
    ("changes", "outcome"),
    [
        ({}, "priced"),
        ({"device_id": "d1", "session_reference_id": "s"}, "priced"),
        ({"record_reference_id": None}, "priced"),  # then its source position names it
        ({"location_id": "loc_other"}, "unknown_location"),
        ({"device_id": "d9"}, "unknown_device"),
        (
            {"start_time": "2024-05-31T23:30:00+00:00", "end_time": "2024-05-31T23:45:00+00:00"},
            "tariff_not_available",
        ),
        ({"end_time": "2025-01-01T00:15:00"}, "invalid_record"),  # no offset
    ],
)
def test_cost_request_equals_cost_payload_of_the_encoded_record(
    changes: dict[str, Any], outcome: str
) -> None:
    request = interval(**changes)
    assert loads(dumps(request)) == request  # the precondition `cost_request` states
    kwargs: dict[str, Any] = {
        "profiles": lambda lid: LOCATION if lid == LOCATION.location_id else None,
        "market_prices": no_market,
        "now": NOW,
        "source": SOURCE,
    }
    direct = cost_request(request, **kwargs)
    encoded = cost_payload(dumps(request), **kwargs)
    assert dumps(direct) == dumps(encoded)
    if outcome != "invalid_record":  # the caller's model of the request is not validated again
        built = cost_request(request, record=MeterRecord.model_validate(request), **kwargs)
        assert dumps(built) == dumps(direct)
    if outcome == "priced":
        assert isinstance(direct, PricedCost)
    else:
        assert isinstance(direct, DeadLetter)
        assert direct.error.code.value == outcome


def test_a_request_msgspec_may_not_write_goes_through_the_reference_writer() -> None:
    """The written form is msgspec's, but for an echoed request that is not flat (here a list,
    an object and a datetime, which msgspec writes with `Z`): simplejson writes the request
    and the bytes are still the generic encoder's of the model."""
    priced = cost_request(interval(), profiles=lambda _: LOCATION, market_prices=no_market, now=NOW)
    assert isinstance(priced, PricedCost)
    nested = {"a": [Decimal("1.50"), {"b": None}], "at": NOW.astimezone(UTC)}
    odd = PricedCost(msgspec.structs.replace(priced.document, request=nested))
    expected = priced.model().model_copy(update={"request": nested})
    assert odd.encode() == dumps_generic(expected)
    assert f'"at":"{nested["at"].isoformat()}"'.encode() in odd.encode()  # not msgspec's `Z`


def test_the_written_form_mirrors_its_models_or_fails_at_import() -> None:
    _same_fields(WireItem, BreakdownItem)  # the pairs checked at import pass
    with pytest.raises(RuntimeError, match="WireCost no longer mirrors BreakdownItem"):
        _same_fields(WireCost, BreakdownItem)
