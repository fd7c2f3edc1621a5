"""Raw `energy-costs` bytes -> COPY text lines, numbers and instants kept as their JSON text.

The sink spent ~60 µs of Python per result, most of it building `Decimal`s and `datetime`s
(`models.loads` and a dict reader: ~20 µs) only for asyncpg to encode them again into binary COPY
(~30 µs for a result and its two breakdown rows). PostgreSQL parses numeric and timestamptz
text in C for about the same server CPU as the binary forms, so this path never builds those
objects: it decodes the JSON with numbers left as their exact text, checks every value it writes
against a strict pattern, and renders PostgreSQL's COPY text format directly (~20 µs per result,
all included).

It only answers when it is sure: anything it does not fully recognise gives None and the record
takes the model path, which stays the authority on poison. In particular it defers on any
backslash, tab, CR or LF in the record: without them no decoded string can hold a character
the COPY text format would need to escape (JSON forbids raw control characters inside strings),
and no `\\u0000` or lone surrogate can appear.
`tests/unit/test_sink_text_rows.py` and `tests/integration/test_sink_text_copy.py` check on
random documents that PostgreSQL stores the same values from these lines as from the model
path's rows.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from datetime import datetime
from typing import Any, NamedTuple

from meterflow.sink.event_shape import (
    COMPONENT_ITEM_KEYS,
    COST_KEYS,
    DATA_KEYS,
    ENERGY_KEYS,
    FLOWS,
    ITEM_KEYS,
    RECORD_ID,
    RESULT_ID,
    TARIFF_DIRECTIONS,
    TAXED_VALUE_KEYS,
    VALUE_KEYS,
)
from meterflow.sink.rows import Source


class TextRows(NamedTuple):
    """One result as COPY text lines, each ending in a newline: its `energy_costs` line and
    its `energy_cost_breakdown` lines (none or several)."""

    id: str
    cost: str
    breakdown: str


class _Number(str):
    """The exact text of a JSON number: a type of its own, so a JSON string "1.5" (which the
    model would coerce) is never mistaken for a number."""

    __slots__ = ()


class _UnsureError(Exception):
    """The text path does not vouch for this document: use the next path."""


def _refuse(text: str) -> Any:
    raise _UnsureError  # NaN/Infinity: the model path decides


# At most 18 integer digits, 30 decimals and a two-digit exponent: the magnitude stays far inside
# the sink's 10^±1000 (larger numbers are the model path's to refuse) and NUMERIC's limits.
_NUMBER = re.compile(
    r"-?(?:0|[1-9][0-9]{0,17})(?:\.[0-9]{1,30})?(?:[eE][+-]?[0-9]{1,2})?"
).fullmatch


def _integer(text: str) -> _Number:
    if len(text) > 640:  # the model path's int() refuses > 4300 digits: let it decide
        raise _UnsureError
    return _Number(text)


def _fraction(text: str) -> _Number:
    """Every number of the document, not only those written to columns: `request` goes to
    jsonb as received, and a record that gives a member twice keeps the first value there,
    which nothing validated (`"energy":1e-20000,"energy":1.5` was priced, then refused by
    PostgreSQL). The model path writes the request as decoded: the last value alone."""
    if _NUMBER(text) is None:
        raise _UnsureError
    return _Number(text)


_DECODER = json.JSONDecoder(parse_float=_fraction, parse_int=_integer, parse_constant=_refuse)
_decode = _DECODER.decode
# (text, index) -> (value, end): where the `request` value ends. Set by JSONDecoder.__init__.
_scan: Callable[[str, int], tuple[Any, int]] = _DECODER.scan_once  # type: ignore[attr-defined]
# The RFC 3339 subset on which pydantic and `datetime.fromisoformat` agree (ASCII digits, an
# upper-case T, at most microseconds), narrowed to what PostgreSQL reads the same way: years
# 1000-2999 (no overflow when shifted to UTC) and offsets up to 15:59 (PostgreSQL refuses more).
_INSTANT = re.compile(
    r"[12][0-9]{3}-[0-9]{2}-[0-9]{2}T(?:[01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](?:\.[0-9]{1,6})?"
    r"(?:Z|[+-](?:0[0-9]|1[0-5]):[0-5][0-9])"
).fullmatch
_REQUEST_KEY = '"request"'

_instants: set[str] = set()
"""Recently checked timestamps: a result repeats its bounds in its breakdown, a batch its
`time_created`. Only text that passed every check below is stored."""


def _instant(value: object) -> str:
    if value in _instants:  # only str values are ever stored, so a hit is a str
        return value
    if type(value) is not str or _INSTANT(value) is None:
        raise _UnsureError
    datetime.fromisoformat(value)  # an impossible date (Feb 30) raises ValueError: unsure too
    if len(_instants) >= 4096:
        _instants.clear()
    _instants.add(value)
    return value


def _number(value: object) -> str:
    if type(value) is not _Number or _NUMBER(value) is None:
        raise _UnsureError
    return value


def _text(value: object) -> str:
    if type(value) is not str:
        raise _UnsureError
    return value


def _optional_text(value: object) -> str:
    if value is None:
        return "\\N"
    if type(value) is not str:
        raise _UnsureError
    return value


def _dict(value: object, keys: frozenset[str]) -> dict[str, Any]:
    if type(value) is not dict or value.keys() != keys:
        raise _UnsureError
    return value


def _tax_and_total(value: object) -> tuple[dict[str, Any], str, str]:
    """`data.cost`, with the `tax` and `total` fields' text (NULL, NULL when untaxed)."""
    if type(value) is not dict:
        raise _UnsureError
    keys = value.keys()
    if keys == VALUE_KEYS:
        return value, "\\N", "\\N"
    if keys == TAXED_VALUE_KEYS:
        return value, _number(value["tax"]), _number(value["total"])
    raise _UnsureError


def _item(cost_id: str, seq: int, item: object) -> str:
    """One breakdown line; `component` is NULL for an item of a version without components.
    A component name is any non-empty string (the model's rule): without a backslash, tab,
    CR or LF in the record it needs no COPY escape."""
    if type(item) is not dict:
        raise _UnsureError
    keys = item.keys()
    if keys == ITEM_KEYS:
        component = "\\N"
    elif keys == COMPONENT_ITEM_KEYS:
        component = item["component"]
        if type(component) is not str or not component:
            raise _UnsureError
    else:
        raise _UnsureError
    return (
        f"{cost_id}\t{seq}\t{_instant(item['start_time'])}\t{_instant(item['end_time'])}\t"
        f"{_number(item['rate'])}\t{_number(item['energy'])}\t{_number(item['cost'])}\t"
        f"{component}\n"
    )


def _request_text(text: str) -> str:
    """The JSON text of the top-level `request`, as received (PostgreSQL parses it into jsonb).

    Without backslashes every quote delimits a string, so a `"request"` in the text is a string
    of that value; if there is exactly one, it is the top-level key (no duplicate key, no nested
    one, whose value could differ in a way the decoded dict hides), and its value follows the
    colon.
    """
    key = text.find(_REQUEST_KEY)
    start = key + len(_REQUEST_KEY)
    if key < 0 or text.find(_REQUEST_KEY, start) >= 0 or text[start : start + 1] != ":":
        raise _UnsureError
    _, end = _scan(text, start + 1)  # StopIteration if whitespace follows the colon
    return text[start + 1 : end]


def _lines(text: str, source: Source) -> TextRows:
    cost = _dict(_decode(text), COST_KEYS)
    cost_id = cost["id"]
    meter_record_id = cost["meter_record_id"]
    live_mode = cost["live_mode"]
    if (
        type(cost_id) is not str
        or RESULT_ID(cost_id) is None
        or type(meter_record_id) is not str
        or RECORD_ID(meter_record_id) is None
        or cost["object"] != "energy_cost"
        or cost["energy_units"] != "KWH"
        or cost["non_persistent"] is not False  # simulated results take the model path
        or type(live_mode) is not bool
        or cost["energy_flow_direction"] not in FLOWS
        or cost["tariff_direction"] not in TARIFF_DIRECTIONS
        or type(cost["request"]) is not dict
    ):
        raise _UnsureError
    data = _dict(cost["data"], DATA_KEYS)
    value, tax, total = _tax_and_total(data["cost"])
    items = data["breakdown"]
    if type(items) is not list:
        raise _UnsureError
    breakdown = "".join([_item(cost_id, seq, item) for seq, item in enumerate(items)])
    row = "\t".join(
        (
            cost_id,
            _text(cost["account_id"]),
            "t" if live_mode else "f",
            _text(cost["object_id"]),
            _text(cost["location_id"]),
            _optional_text(cost["device_id"]),
            meter_record_id,
            _optional_text(data["session_reference_id"]),
            _optional_text(data["record_reference_id"]),
            cost["energy_flow_direction"],
            cost["tariff_direction"],
            _text(cost["currency_code"]),
            _text(cost["location_timezone"]),
            _instant(data["start_time"]),
            _instant(data["end_time"]),
            _number(_dict(data["energy"], ENERGY_KEYS)["value"]),
            _number(value["value"]),
            _number(value["confidence"]),
            _request_text(text),
            _instant(cost["time_created"]),
            source.topic,
            str(source.partition),
            str(source.offset),
            tax,
            total,
            _received_text(source),
        )
    )
    return TextRows(cost_id, row + "\n", breakdown)


def _received_text(source: Source) -> str:
    received = source.received_at
    return "\\N" if received is None else received.isoformat()


def text_cost_rows(value: bytes, source: Source) -> TextRows | None:
    """COPY text lines giving the rows `cost_rows(EnergyCost.model_validate(loads(value)))`
    gives, or None when this path cannot vouch for the record (the caller takes the next path).
    """
    if b"\\" in value or b"\n" in value or b"\t" in value or b"\r" in value:
        return None
    try:
        return _lines(value.decode(), source)
    except (_UnsureError, ValueError, TypeError, StopIteration, RecursionError):
        return None
