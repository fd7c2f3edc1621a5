"""Random and broken EnergyCost documents for the sink's decoder tests (hypothesis)."""

from __future__ import annotations

import copy
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

from samples import energy_cost

NOW = datetime(2026, 5, 1, tzinfo=UTC)
SETTINGS = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])

ids = st.from_regex(r"\A[A-Za-z0-9_]{1,20}\Z")
texts = st.text(st.characters(exclude_categories=["Cs"]), max_size=12)
plain_texts = st.one_of(ids, texts)
unescaped_texts = st.text(
    st.characters(exclude_categories=["Cs", "Cc"], exclude_characters='"\\'), max_size=12
)
"""Strings JSON writes without a backslash (any Unicode but quotes and controls)."""
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


def json_values(strings: st.SearchStrategy[str]) -> st.SearchStrategy[Any]:
    return st.recursive(
        st.none() | st.booleans() | st.integers() | money | strings,
        lambda inner: st.lists(inner, max_size=3) | st.dictionaries(strings, inner, max_size=3),
        max_leaves=8,
    )


@st.composite
def energy_costs(draw: st.DrawFn, strings: st.SearchStrategy[str] = plain_texts) -> dict[str, Any]:
    """A random EnergyCost; `strings` draws its free-text values and the request's."""
    components = draw(st.sampled_from([None, None, "energy", "duos"]) | strings)
    items = [
        {
            "start_time": draw(instants()),
            "end_time": draw(instants()),
            "rate": draw(money),
            "energy": draw(money),
            "cost": draw(money),
        }
        | ({} if components is None else {"component": components})
        for _ in range(draw(st.integers(0, 3)))
    ]
    cost = {"value": draw(money), "confidence": draw(money)}
    if draw(st.booleans()):  # a location with `tax_percentage` (design §11)
        cost |= {"tax": draw(money), "total": draw(money)}
    return {
        "id": f"ecs_{draw(ids)}",
        "object": "energy_cost",
        "account_id": draw(strings),
        "object_id": draw(strings),
        "location_id": draw(strings),
        "device_id": draw(st.none() | strings),
        "meter_record_id": f"mre_{draw(ids)}",
        "live_mode": draw(st.booleans()),
        "non_persistent": draw(st.sampled_from([False, False, False, True])),
        "energy_flow_direction": draw(st.sampled_from(["INBOUND", "OUTBOUND"])),
        "tariff_direction": draw(st.sampled_from(["IMPORT", "EXPORT"])),
        "location_timezone": draw(st.sampled_from(["Europe/London", "UTC", "Asia/Kolkata"])),
        "currency_code": draw(st.sampled_from(["GBP", "EUR", "USD"])),
        "energy_units": "KWH",
        "request": draw(st.dictionaries(strings, json_values(strings), max_size=4)),
        "data": {
            "start_time": draw(instants()),
            "end_time": draw(instants()),
            "session_reference_id": draw(st.none() | strings),
            "record_reference_id": draw(st.none() | strings),
            "energy": {"value": draw(money)},
            "cost": cost,
            "breakdown": items,
        },
        "time_created": draw(instants()),
    }


def exact(value: object) -> object:
    """A value with everything `==` forgets: a Decimal's exponent, an instant's offset, bool/int."""
    if isinstance(value, tuple | list):
        return [exact(item) for item in value]
    if isinstance(value, datetime):
        return ("datetime", value.isoformat(), value.utcoffset())
    return (type(value).__name__, str(value))


def _as_recorded(value: Any) -> Any:
    """A request's JSON value with each fraction as a priced record's are: below 1e15
    (`MAX_INPUT_VALUE`) with a handful of decimals. The text path defers on a number beyond
    18 integer digits or 30 decimals, which no record it prices holds (text_rows `_NUMBER`)."""
    if isinstance(value, Decimal) and not (
        abs(value) < 10**15 and value.as_tuple().exponent >= -30
    ):
        return Decimal("1.5")
    if isinstance(value, dict):
        return {key: _as_recorded(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_as_recorded(item) for item in value]
    return value


def plain(document: dict[str, Any]) -> dict[str, Any]:
    """The document as the pipeline writes it: canonical timestamps, in-range Decimals, the
    request's numbers as a priced record's."""
    plain = copy.deepcopy(document)
    plain["request"] = _as_recorded(plain["request"])
    plain["non_persistent"] = False
    stamp = "2026-03-29T00:30:00.250000+01:00"
    plain["time_created"] = plain["data"]["start_time"] = plain["data"]["end_time"] = stamp
    for item in plain["data"]["breakdown"]:
        item.update(start_time=stamp, end_time="2026-03-29T01:00:00Z", rate=Decimal("0.245"))
        item.update(energy=Decimal("1.5E-3"), cost=Decimal("-0.000"))
    plain["data"]["energy"] = {"value": Decimal("0.30000000000000004")}
    taxed = "tax" in plain["data"]["cost"]
    plain["data"]["cost"] = {"value": Decimal(12), "confidence": 1}
    if taxed:
        plain["data"]["cost"] |= {"tax": Decimal("0.600000"), "total": Decimal("12.600000")}
    for item in plain["data"]["breakdown"]:
        if "component" in item:
            item["component"] = "duos"
    return plain


def set_path(document: dict[str, Any], path: tuple[str | int, ...], new: object) -> None:
    target: Any = document
    for step in path[:-1]:
        target = target[step]
    if new is DELETE:
        del target[path[-1]]
    else:  # a copy: the strategies share their values, and a later change may edit this one
        target[path[-1]] = copy.deepcopy(new)


def with_changes(
    document: dict[str, Any], changes: list[tuple[tuple[str | int, ...], object]]
) -> dict[str, Any]:
    """`plain(document)` with each change applied where its path still exists."""
    broken = plain(document)
    for path, new in changes:
        try:
            set_path(broken, path, new)
        except (KeyError, IndexError, TypeError):
            continue  # that path no longer exists in this document
    return broken


DELETE = object()
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
    ("data", "cost", "tax"),
    ("data", "cost", "total"),
    ("data", "breakdown"),
    ("data", "breakdown", 0),
    ("data", "breakdown", 0, "end_time"),
    ("data", "breakdown", 0, "rate"),
    ("data", "breakdown", 0, "component"),
    ("unexpected",),
    ("data", "unexpected"),
    ("data", "breakdown", 0, "unexpected"),
]
WRONG_VALUES: list[object] = [
    DELETE,
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


def valid() -> dict[str, Any]:
    start = datetime(2026, 3, 29, tzinfo=timezone(timedelta(hours=1)))
    return energy_cost(
        "ecs_1",
        "mre_1",
        start,
        start,
        [],
        request={"energy": Decimal("1.50")},
        time_created=start,
        live_mode=True,
        export=True,
    )
