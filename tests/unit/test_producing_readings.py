"""`synthetic_readings` (`meterflow produce --readings`): what the readings agent will make of
them, decided by the agent's own pure rules (`costing.readings.advance`)."""

from __future__ import annotations

import itertools
from collections import Counter
from typing import Any

from meterflow.costing.readings import Baseline, Duplicate, Interval, Rejected, advance, meter_key
from meterflow.models import ErrorCode, LocationProfile, MeterReading, dumps, loads
from meterflow.stream.producing import synthetic_readings

METERS = ["loc_a", "loc_b", "loc_c"]
OWNER = LocationProfile.model_validate(
    {"location_id": "loc_a", "account_id": "acc", "timezone": "UTC", "currency_code": "GBP"}
)


def decisions(readings: list[dict[str, Any]]) -> Counter[str]:
    states: dict[bytes, Any] = {}
    seen: Counter[str] = Counter()
    for offset, document in enumerate(readings):
        reading = MeterReading.model_validate(loads(dumps(document)))
        key = meter_key(reading, OWNER)
        step = advance(states.get(key), reading, offset, committed=None, max_record_hours=744)
        if step.state is not None:
            states[key] = step.state
        decision = step.decision
        if isinstance(decision, Rejected):
            seen[decision.code.value] += 1
        else:
            seen[type(decision).__name__] += 1
    return seen


def test_every_rule_shows_up_and_nothing_is_stale() -> None:
    readings = list(synthetic_readings(METERS, 1300, duplicate_every=50, reset_every=200))
    assert len(readings) == 1300
    seen = decisions(readings)
    assert seen[Baseline.__name__] == 3  # one per meter
    assert seen[Duplicate.__name__] >= 3 * 8  # every 50th reading of each meter, twice
    assert seen[ErrorCode.REGISTER_RESET.value] == 3 * 2  # two per meter, each at its slots
    assert ErrorCode.STALE_READING.value not in seen
    assert seen[Interval.__name__] == 1300 - sum(
        n for name, n in seen.items() if name != Interval.__name__
    )


def test_each_meter_rises_between_resets_and_the_stream_is_deterministic() -> None:
    first = list(synthetic_readings(METERS, 700))
    assert first == list(synthetic_readings(METERS, 700))
    for meter in METERS:
        values = [r["value"] for r in first if r["location_id"] == meter]
        drops = sum(1 for a, b in itertools.pairwise(values) if b < a)
        assert drops == 1  # the meter's reset (slot 200, 193 or 186)
    assert all(r["units"] == "WH" for r in first)


def test_the_cli_defaults_show_duplicates_and_resets() -> None:
    """`meterflow produce --readings` (100 meters, 1,000 readings: 10 each) showed neither."""
    meters = [f"loc_demo_{i:05d}" for i in range(100)]
    seen = decisions(list(synthetic_readings(meters, 1000)))
    assert seen[Duplicate.__name__] >= 10
    assert seen[ErrorCode.REGISTER_RESET.value] >= 3
    assert ErrorCode.STALE_READING.value not in seen
