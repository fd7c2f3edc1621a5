"""The sink's fast row decoder (`sink/fast_rows.py`) against the model path (hypothesis).

(a) on random valid EnergyCosts, `decode_cost` gives exactly the rows the model path gives
    (Decimal digits and exponents, instants and offsets, types), and the fast path does answer;
(b) on random broken documents, `decode_cost` gives exactly the outcome of the model path
    (the same Poison message, or the same rows), so the fast path never accepts what the model
    rejects; it may only defer.
"""

from __future__ import annotations

import copy
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any
from unittest.mock import patch

from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from meterflow.models import dumps, loads
from meterflow.sink import decode
from meterflow.sink.decode import CostOutcome, Persist, Poison, Simulated, decode_cost
from meterflow.sink.fast_rows import fast_cost_rows
from meterflow.sink.rows import Source

SOURCE = Source("energy-costs", 3, 42)
NOW = datetime(2026, 5, 1, tzinfo=UTC)
SETTINGS = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])

ids = st.from_regex(r"\A[A-Za-z0-9_]{1,20}\Z")
texts = st.text(st.characters(exclude_categories=["Cs"]), max_size=12)
plain_texts = st.one_of(ids, texts)
money = st.one_of(
    st.decimals(allow_nan=False, allow_infinity=False),
    st.decimals(allow_nan=False, allow_infinity=False, places=6, min_value=-1000, max_value=1000),
    st.integers(-(10**20), 10**20),
)
offsets = st.one_of(
    st.just("Z"),
    st.integers(-23 * 60 - 59, 23 * 60 + 59).map(
        lambda m: f"{'-' if m < 0 else '+'}{abs(m) // 60:02d}:{abs(m) % 60:02d}"
    ),
)


@st.composite
def instants(draw: st.DrawFn) -> str:
    """RFC 3339 text: mostly the plain form, sometimes what only the model path reads."""
    bounds = datetime(1971, 1, 1, tzinfo=UTC), datetime(2099, 12, 31, tzinfo=UTC)
    naive = [bound.replace(tzinfo=None) for bound in bounds]  # hypothesis wants naive bounds
    moment = draw(st.datetimes(min_value=naive[0], max_value=naive[1]))
    digits = draw(st.sampled_from([0, 0, 1, 3, 6, 7, 9]))
    fraction = f".{moment.microsecond:06d}{'123'[: max(digits - 6, 0)]}"[: digits + 1]
    separator = draw(st.sampled_from(["T", "T", "T", "t", " "]))
    zone = draw(offsets)
    zone = draw(st.sampled_from([zone, zone, zone, zone.lower()]))
    return f"{moment:%Y-%m-%d}{separator}{moment:%H:%M:%S}{fraction if digits else ''}{zone}"


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | money | texts,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(texts, inner, max_size=3),
    max_leaves=8,
)


@st.composite
def energy_costs(draw: st.DrawFn) -> dict[str, Any]:
    items = [
        {
            "start_time": draw(instants()),
            "end_time": draw(instants()),
            "rate": draw(money),
            "energy": draw(money),
            "cost": draw(money),
        }
        for _ in range(draw(st.integers(0, 3)))
    ]
    return {
        "id": f"ecs_{draw(ids)}",
        "object": "energy_cost",
        "account_id": draw(plain_texts),
        "object_id": draw(plain_texts),
        "location_id": draw(plain_texts),
        "device_id": draw(st.none() | plain_texts),
        "meter_record_id": f"mre_{draw(ids)}",
        "live_mode": draw(st.booleans()),
        "non_persistent": draw(st.sampled_from([False, False, False, True])),
        "energy_flow_direction": draw(st.sampled_from(["INBOUND", "OUTBOUND"])),
        "tariff_direction": draw(st.sampled_from(["IMPORT", "EXPORT"])),
        "location_timezone": draw(st.sampled_from(["Europe/London", "UTC", "Asia/Kolkata"])),
        "currency_code": draw(st.sampled_from(["GBP", "EUR", "USD"])),
        "energy_units": "KWH",
        "request": draw(st.dictionaries(texts, json_values, max_size=4)),
        "data": {
            "start_time": draw(instants()),
            "end_time": draw(instants()),
            "session_reference_id": draw(st.none() | plain_texts),
            "record_reference_id": draw(st.none() | plain_texts),
            "energy": {"value": draw(money)},
            "cost": {"value": draw(money), "confidence": draw(money)},
            "breakdown": items,
        },
        "time_created": draw(instants()),
    }


def model_path(value: bytes) -> CostOutcome:
    with patch.object(decode, "fast_cost_rows", lambda document, source: None):
        return decode_cost(b"key", value, SOURCE, NOW)


def exact(value: object) -> object:
    """A value with everything `==` forgets: a Decimal's exponent, an instant's offset, bool/int."""
    if isinstance(value, tuple | list):
        return [exact(item) for item in value]
    if isinstance(value, datetime):
        return ("datetime", value.isoformat(), value.utcoffset())
    return (type(value).__name__, str(value))


def assert_same(fast: CostOutcome, model: CostOutcome) -> None:
    assert type(fast) is type(model)
    if isinstance(fast, Persist):
        assert isinstance(model, Persist)
        assert fast.id == model.id
        assert exact(fast.rows.cost) == exact(model.rows.cost)
        assert exact(fast.rows.breakdown) == exact(model.rows.breakdown)
    elif isinstance(fast, Poison):
        assert isinstance(model, Poison)
        assert fast.dead_letter == model.dead_letter
    else:
        assert fast == model


@SETTINGS
@given(energy_costs())
def test_fast_rows_equal_model_rows_on_random_energy_costs(document: dict[str, Any]) -> None:
    value = dumps(document)
    assert_same(decode_cost(b"key", value, SOURCE, NOW), model_path(value))


def _plain(document: dict[str, Any]) -> dict[str, Any]:
    """The document as the pipeline writes it: canonical timestamps, in-range Decimals."""
    plain = copy.deepcopy(document)
    plain["non_persistent"] = False
    stamp = "2026-03-29T00:30:00.250000+01:00"
    plain["time_created"] = plain["data"]["start_time"] = plain["data"]["end_time"] = stamp
    for item in plain["data"]["breakdown"]:
        item.update(start_time=stamp, end_time="2026-03-29T01:00:00Z", rate=Decimal("0.245"))
        item.update(energy=Decimal("1.5E-3"), cost=Decimal("-0.000"))
    plain["data"]["energy"] = {"value": Decimal("0.30000000000000004")}
    plain["data"]["cost"] = {"value": Decimal(12), "confidence": 1}
    return plain


@SETTINGS
@given(energy_costs())
def test_fast_path_answers_for_documents_the_pipeline_writes(document: dict[str, Any]) -> None:
    value = dumps(_plain(document))
    assume(b"\\u0000" not in value)  # refused before either path (PostgreSQL text has no NUL)
    rows = fast_cost_rows(loads(value), SOURCE)
    assert rows is not None, "the fast path must not defer on a plain EnergyCost"
    assert_same(Persist(rows.cost[0], rows, b"key", value, SOURCE), model_path(value))


def _set(document: dict[str, Any], path: tuple[str | int, ...], new: object) -> None:
    target: Any = document
    for step in path[:-1]:
        target = target[step]
    if new is _DELETE:
        del target[path[-1]]
    else:
        target[path[-1]] = new


_DELETE = object()
PATHS: list[tuple[str | int, ...]] = [
    ("id",),
    ("object",),
    ("account_id",),
    ("device_id",),
    ("meter_record_id",),
    ("live_mode",),
    ("non_persistent",),
    ("energy_flow_direction",),
    ("tariff_direction",),
    ("energy_units",),
    ("request",),
    ("time_created",),
    ("data",),
    ("data", "start_time"),
    ("data", "session_reference_id"),
    ("data", "energy"),
    ("data", "energy", "value"),
    ("data", "cost", "value"),
    ("data", "cost", "confidence"),
    ("data", "breakdown"),
    ("data", "breakdown", 0),
    ("data", "breakdown", 0, "end_time"),
    ("data", "breakdown", 0, "rate"),
    ("unexpected",),
    ("data", "unexpected"),
    ("data", "breakdown", 0, "unexpected"),
]
WRONG_VALUES: list[object] = [
    _DELETE,
    None,
    True,
    1,
    0,
    -7,
    10**30,
    "1.5",
    "",
    "ecs_1\n",
    "ecs-1",
    "mre_1",
    "inbound",
    "EXPORT",
    "energy_cost",
    "2026-01-01T00:00:00",
    "2026-01-01T00:00:00+00:60",
    "2026-01-01T24:00:00Z",
    "2026-02-30T00:00:00Z",
    "2026-01-01T00:00:00Z\n",
    "1767225600",
    Decimal("1E+1001"),
    Decimal("-1E-1001"),
    Decimal("1E+1000"),
    [],
    {},
    {"value": Decimal(1)},
    ["x"],
]
WRONG = st.sampled_from(WRONG_VALUES)


@SETTINGS
@given(energy_costs(), st.lists(st.tuples(st.sampled_from(PATHS), WRONG), min_size=1, max_size=2))
def test_broken_documents_get_the_model_paths_outcome(
    document: dict[str, Any], changes: list[tuple[tuple[str | int, ...], object]]
) -> None:
    broken = _plain(document)
    for path, new in changes:
        try:
            _set(broken, path, new)
        except (KeyError, IndexError, TypeError):
            continue  # that path no longer exists in this document
    value = dumps(broken)
    assert_same(decode_cost(b"key", value, SOURCE, NOW), model_path(value))


def test_special_numbers_defer_to_the_model_path() -> None:
    assert fast_cost_rows({"id": "ecs_1"}, SOURCE) is None  # missing keys: defer
    for raw in (b"NaN", b"Infinity", b"-Infinity", b"1e5000", b"true"):
        value = dumps(_plain(_valid())).replace(b'"confidence":1', b'"confidence":' + raw)
        assert b'"confidence":' + raw in value
        outcome = decode_cost(b"key", value, SOURCE, NOW)
        assert isinstance(outcome, Poison), raw
        assert_same(outcome, model_path(value))


def test_simulated_results_still_skip() -> None:
    value = dumps(_plain(_valid()) | {"non_persistent": True})
    assert decode_cost(b"key", value, SOURCE, NOW) == Simulated("ecs_1")


def _valid() -> dict[str, Any]:
    start = datetime(2026, 3, 29, tzinfo=timezone(timedelta(hours=1)))
    return {
        "id": "ecs_1",
        "object": "energy_cost",
        "account_id": "acc_1",
        "object_id": "loc_1",
        "location_id": "loc_1",
        "device_id": None,
        "meter_record_id": "mre_1",
        "live_mode": True,
        "non_persistent": False,
        "energy_flow_direction": "OUTBOUND",
        "tariff_direction": "EXPORT",
        "location_timezone": "Europe/London",
        "currency_code": "GBP",
        "energy_units": "KWH",
        "request": {"energy": Decimal("1.50")},
        "data": {
            "start_time": start.isoformat(),
            "end_time": start.isoformat(),
            "session_reference_id": None,
            "record_reference_id": None,
            "energy": {"value": Decimal(0)},
            "cost": {"value": Decimal(0), "confidence": Decimal(1)},
            "breakdown": [],
        },
        "time_created": start.isoformat(),
    }


def test_every_single_breakage_gets_the_model_paths_outcome() -> None:
    """Each wrong value at each place, exhaustively (the random test above pairs them)."""
    base = _valid()
    base["data"]["breakdown"] = [
        {
            "start_time": base["time_created"],
            "end_time": base["time_created"],
            "rate": Decimal("0.245"),
            "energy": Decimal("1.5E-3"),
            "cost": Decimal("-0.000"),
        }
    ]
    assert isinstance(decode_cost(b"key", dumps(base), SOURCE, NOW), Persist)
    for path in PATHS:
        for new in WRONG_VALUES:
            broken = copy.deepcopy(base)
            if new is _DELETE and path[-1] == "unexpected":
                continue
            _set(broken, path, new)
            value = dumps(broken)
            assert_same(decode_cost(b"key", value, SOURCE, NOW), model_path(value))
