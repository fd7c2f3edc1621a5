"""The fast JSON paths (msgspec) against the reference (simplejson): same values, same bytes.

`models.loads` decodes with msgspec and falls back to simplejson on anything msgspec refuses;
`models._base.encode_flat` writes a flat object with msgspec. Both are only correct if, wherever
msgspec answers, it answers exactly what simplejson would.
"""

from __future__ import annotations

import re
from datetime import datetime
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from meterflow.api.schemas import ReportRow
from meterflow.models import (
    CostValue,
    EnergyValue,
    dumps,
    loads,
    loads_with_text,
    parse_instant,
)
from meterflow.models._base import (
    _DECODER,
    LONE_SURROGATE,
    NUMBER_OUT_OF_RANGE,
    TOO_DEEP,
    encode_any,
    encode_flat,
)


def _typed(value: Any) -> Any:
    """A value with its types spelled out, so that 1 == Decimal(1) == True cannot pass."""
    if isinstance(value, dict):
        return {key: _typed(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_typed(item) for item in value]
    if isinstance(value, Decimal):
        return ("Decimal", str(value))
    return (type(value).__name__, value)


def _reference(data: bytes) -> Any:
    """simplejson, then I-JSON's rule the brute-force way: a value with no UTF-8 form is refused."""
    import simplejson

    value = _DECODER.decode(data.decode())
    try:
        simplejson.dumps(value, use_decimal=True, ensure_ascii=False).encode()
    except UnicodeEncodeError:
        raise ValueError(LONE_SURROGATE) from None
    return value


def _outcome(decode: Any, data: bytes) -> tuple[str, Any]:
    """("value", the typed value) or ("error", the error's type and message)."""
    try:
        return "value", _typed(decode(data))
    except ValueError as error:
        return "error", (type(error).__name__, str(error))


scalars = (
    st.none()
    | st.booleans()
    | st.integers(-(10**30), 10**30)
    | st.decimals(allow_nan=False, allow_infinity=False)
    | st.text()
)
documents = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=12,
)


@settings(max_examples=300)
@given(documents, st.sampled_from([(",", ":"), (", ", ": "), (" ,\n", " :\t")]))
def test_loads_decodes_what_simplejson_decodes(document: Any, separators: tuple[str, str]) -> None:
    import simplejson

    text = simplejson.dumps(document, use_decimal=True, separators=separators, ensure_ascii=False)
    data = text.encode("utf-8", "surrogatepass")
    assert _outcome(loads, data) == _outcome(_reference, data)


json_bytes = st.lists(
    st.sampled_from(
        [
            b"{",
            b"}",
            b"[",
            b"]",
            b",",
            b":",
            b'"',
            b"\\",
            b"u",
            b"d800",
            b"0",
            b"1",
            b"-",
            b".",
            b"e",
            b"E",
            b"+",
            b" ",
            b"\t",
            b"\n",
            b"\x00",
            b"\x1f",
            b"\xef\xbb\xbf",
            b"\xff",
            b"\xc3\xa9",
            b"\\u2028",
            b"true",
            b"null",
            b"NaN",
            b"Infinity",
            b'"a"',
        ]
    ),
    max_size=14,
).map(b"".join)


@settings(max_examples=500)
@given(json_bytes)
def test_loads_agrees_on_arbitrary_bytes(data: bytes) -> None:
    """Malformed input raises ValueError with the reference's message; valid input decodes
    alike."""
    assert _outcome(loads, data) == _outcome(_reference, data)


@settings(max_examples=500)
@given(json_bytes | documents.map(lambda value: b" " + encode_any(value).encode() + b"\n"))
def test_loads_with_text_keeps_text_that_stays_json_inside_another_document(data: bytes) -> None:
    """`loads`' value or error; the text kept is the input without its surrounding whitespace,
    and a document carrying it (a result echoing a record) decodes, on both decoders, to one
    holding that value."""
    outcome = _outcome(loads, data)
    assert _outcome(lambda text: loads_with_text(text)[0], data) == outcome
    if outcome[0] == "error":
        return
    value, kept = loads_with_text(data)
    if kept is None:  # the reference decoder's alone: a byte-order mark
        assert data.startswith(b"\xef\xbb\xbf")
        return
    text = bytes(kept)
    assert text == data.strip()
    carrier = b'{"request":' + text + b',"n":1}'
    assert (
        _typed(loads(carrier)) == _typed(_reference(carrier)) == _typed({"request": value, "n": 1})
    )


def test_loads_with_text_keeps_no_text_msgspec_refused() -> None:
    assert loads_with_text(b"\xef\xbb\xbf{}") == ({}, None)
    value, kept = loads_with_text(b' {"a": 1, "a": 2}\r\n')
    assert value == {"a": 2}
    assert kept is not None
    assert bytes(kept) == b'{"a": 1, "a": 2}'  # as received


@pytest.mark.parametrize(
    ("text", "value"),
    [
        (b"\xef\xbb\xbf{}", {}),  # msgspec refuses a byte-order mark, simplejson reads it
        (b"1E+400", Decimal("1E+400")),
        (b"123456789012345678901234567890", 123456789012345678901234567890),
    ],
)
def test_loads_edge_cases(text: bytes, value: Any) -> None:
    assert _typed(loads(text)) == _typed(value)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (b'"\\ud800"', LONE_SURROGATE),  # simplejson reads it; nothing could write it again
        (b'{"a": ["\\udc00 and \\ud83d\\ude00"]}', LONE_SURROGATE),
        (b'\xef\xbb\xbf{"\\ud800": 1}', LONE_SURROGATE),  # in a key, on the BOM's path
        (b"[" * 100_000 + b"]" * 100_000, TOO_DEEP),  # msgspec's RecursionError
        (b"\xef\xbb\xbf" + b"[" * 100_000 + b"]" * 100_000, TOO_DEEP),  # simplejson's
        (b'{"energy": 1e9999999999999999999}', NUMBER_OUT_OF_RANGE),  # InvalidOperation: a 500
        (b"[-1E-9999999999999999999]", NUMBER_OUT_OF_RANGE),
        (b"\xef\xbb\xbf1e9999999999999999999", NUMBER_OUT_OF_RANGE),  # on the BOM's path
    ],
)
def test_loads_refuses_what_cannot_be_written_again_or_nested_too_deep(
    text: bytes, message: str
) -> None:
    with pytest.raises(ValueError, match="^" + re.escape(message) + "$"):
        loads(text)
    assert loads(b"[" * 200 + b"]" * 200) is not None  # deep, but not too deep


flat_objects = st.dictionaries(
    st.text(),
    st.none()
    | st.booleans()
    | st.integers(-(10**40), 10**40)
    | st.decimals(allow_nan=False, allow_infinity=False)
    | st.text(),
    max_size=8,
)


@settings(max_examples=300)
@given(flat_objects)
def test_encode_flat_writes_the_reference_bytes(value: dict[str, Any]) -> None:
    try:
        expected = encode_any(value).encode()
    except UnicodeEncodeError:  # a lone surrogate: the reference cannot write it either
        with pytest.raises(UnicodeEncodeError):
            encode_flat(value)
        return
    assert encode_flat(value) == expected


@pytest.mark.parametrize(
    "value",
    [
        {"nested": {"a": Decimal("1.50")}},
        {"list": [1, Decimal("2E+3")]},
        {"float": 0.1},
        {"big": 10**40, "neg_zero": Decimal("-0"), "tiny": Decimal("0E-7")},
        {"text": '\x00\x1f\x7f\u2028\u2029"\\é'},
    ],
)
def test_encode_flat_other_shapes_take_the_reference_path(value: dict[str, Any]) -> None:
    assert encode_flat(value) == encode_any(value).encode()


def test_a_time_whose_zone_offset_has_seconds_is_written_in_utc() -> None:
    """A report row in a zone's local mean time (Africa/Monrovia, -00:44:30 until 1972) was
    written with that offset, which RFC 3339 has no form for: it is written in UTC, the same
    instant; offsets of whole minutes stay as they are."""
    monrovia = datetime(1971, 6, 1, tzinfo=ZoneInfo("Africa/Monrovia"))
    london = datetime(2024, 6, 1, tzinfo=ZoneInfo("Europe/London"))
    row = ReportRow(
        start_time=monrovia,
        end_time=london,
        records=1,
        energy=EnergyValue(value=Decimal(1)),
        cost=CostValue(value=Decimal(1), confidence=Decimal(1)),
    )
    written = loads(dumps(row))
    assert (written["start_time"], written["end_time"]) == (
        "1971-06-01T00:44:30+00:00",
        "2024-06-01T00:00:00+01:00",
    )
    assert parse_instant(written["start_time"]) == monrovia
