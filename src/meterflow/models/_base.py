"""Shared model plumbing: exact JSON decoding and the conventions every document follows."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal
from enum import Enum
from typing import Annotated, Any, TypeVar

import msgspec
import simplejson
from pydantic import BaseModel, BeforeValidator, ConfigDict, TypeAdapter, WithJsonSchema

_DECODER = simplejson.JSONDecoder(parse_float=Decimal)
_FAST_DECODER = msgspec.json.Decoder(float_hook=Decimal)


LONE_SURROGATE = "a string holds an unpaired surrogate escape (such as \\ud800): no text has one"
"""Why `loads` refuses a JSON text that RFC 8259 lets through but I-JSON (RFC 7493 §2.1) does
not: such a string cannot be written as UTF-8 (a result echoing it, a Postgres row, a log line
would fail long after the input was accepted)."""

TOO_DEEP = "nested too deeply"

NUMBER_OUT_OF_RANGE = "a number is written with an exponent no decimal can hold"
"""Why `loads` refuses `1e9999999999999999999`: `Decimal` raises InvalidOperation for an
exponent beyond ±999,999,999,999,999,999, which is not a ValueError (it was a 500)."""


def loads(data: bytes | str) -> Any:
    """Decode JSON with every non-integer number as `Decimal`.

    pydantic reads JSON numbers as binary floats before turning them into `Decimal`, which loses
    digits; money must never pass through a float, so documents are decoded here first.

    msgspec decodes first (4x faster; a number with a fraction or an exponent goes to
    `float_hook` as its text, so `Decimal` sees the exact digits). Whatever it refuses goes to
    simplejson, the reference: it raises the error messages callers report (dead letters quote
    them) and decodes the few texts msgspec is stricter about (a leading BOM, a lone surrogate
    escape, which is then refused: `LONE_SURROGATE`). Where both decode, they agree value for
    value and type for type (`tests/unit/test_models_json.py`). Every refusal is a ValueError,
    nesting too deep for either decoder's recursion included.
    """
    try:
        return _FAST_DECODER.decode(data)
    except (msgspec.DecodeError, ValueError, ArithmeticError):
        pass
    except RecursionError:
        raise ValueError(TOO_DEEP) from None
    return _reference_only(data)


def loads_with_text(data: bytes) -> tuple[Any, msgspec.Raw | None]:
    """`loads(data)`, with `data` as raw JSON when msgspec read it: strict RFC 8259 text, which
    a document may then carry byte for byte (a result's `request`, "the record as received",
    design §2: writing it again was 0.4 µs of a record's ~11). None when only the reference
    decoder took it (a leading BOM): that text is not JSON every reader takes."""
    try:
        return _FAST_DECODER.decode(data), msgspec.Raw(data.strip())
    except (msgspec.DecodeError, ValueError, ArithmeticError):
        pass
    except RecursionError:
        raise ValueError(TOO_DEEP) from None
    return _reference_only(data), None


def _reference_only(data: bytes | str) -> Any:
    """What `loads` makes of a text msgspec refused."""
    document = _reference_loads(data)
    if _has_lone_surrogate(document):
        raise ValueError(LONE_SURROGATE)
    return document


def loads_tolerant(data: bytes | str) -> Any:
    """`loads` that lets a lone surrogate escape through, for reading what another process
    wrote and must not be lost over one character (a dead letter's reason is made storable
    after); never for input to price. simplejson alone: it decodes as msgspec does wherever
    both decode, and these texts are not on a hot path."""
    return _reference_loads(data)


def _reference_loads(data: bytes | str) -> Any:
    text = data.decode() if isinstance(data, bytes | bytearray) else data
    try:
        return _DECODER.decode(text)
    except RecursionError:
        raise ValueError(TOO_DEEP) from None
    except ArithmeticError:  # decimal.InvalidOperation from `parse_float`
        raise ValueError(NUMBER_OUT_OF_RANGE) from None


def _has_lone_surrogate(document: Any) -> bool:
    """Walked without recursion: the document may be as deep as the decoder allows."""
    pending = [document]
    while pending:
        item = pending.pop()
        if isinstance(item, str):
            if not item.isascii():
                try:
                    item.encode()
                except UnicodeEncodeError:
                    return True
        elif isinstance(item, dict):
            pending.extend(item)
            pending.extend(item.values())
        elif isinstance(item, list):
            pending.extend(item)
    return False


def rfc3339(value: datetime) -> str:
    """`value.isoformat()`, in UTC when its offset has seconds: RFC 3339 writes offsets in hours
    and minutes, and a zone's local mean time before its first standard offset had seconds
    (Africa/Monrovia, -00:44:30 until 1972): a report row's time was written so, which no
    client (nor `parse_instant`) reads back."""
    offset = value.utcoffset()
    if offset is not None and (offset.seconds % 60 or offset.microseconds):
        value = value.astimezone(UTC)
    return value.isoformat()


def _default(value: object) -> object:
    if isinstance(value, datetime):
        return rfc3339(value)
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, BaseModel):
        return value.model_dump(mode="python", by_alias=True, exclude_none=False)
    raise TypeError(f"cannot encode {type(value).__name__} as JSON")


_ENCODER = simplejson.JSONEncoder(
    use_decimal=True,
    default=_default,
    separators=(",", ":"),
    ensure_ascii=False,
    namedtuple_as_object=False,
    for_json=False,
    check_circular=False,
)

MAX_MESSAGE_BYTES = 1_000_000
"""The most bytes a written document (a result, a profile) may take: each travels as one Kafka
message, and a broker refuses more than `message.max.bytes` (1 MiB by default, a little of it
the key and headers). A producer that met the refusal stopped the worker, which met the same
record again on restart; the engine and the API refuse such a document first, with a reason."""

FAST_ENCODERS: dict[type, Callable[[Any], bytes]] = {}
"""Encoders for hot documents that are not models (the engine's `PricedCost`); each must give
exactly the bytes the generic path below writes for the model it stands for (a property test
checks this on random documents)."""


def dumps(value: BaseModel | Any) -> bytes:
    """Encode a document as compact UTF-8 JSON, writing `Decimal` as an exact JSON number.

    pydantic writes `Decimal` as a string; Flatpeak clients expect numbers, so encoding goes
    through simplejson, which prints the decimal's own digits.
    """
    fast = FAST_ENCODERS.get(type(value))
    if fast is not None:
        return fast(value)
    return dumps_generic(value)


def dumps_generic(value: BaseModel | Any) -> bytes:
    """`dumps` without the fast encoders: the reference output."""
    if isinstance(value, BaseModel):
        value = value.model_dump(mode="python", by_alias=True)
    text: str = _ENCODER.encode(value)
    return text.encode()


def encode_any(value: Any) -> str:
    """JSON text of plain values (dicts, lists, Decimal, datetimes), as `dumps` writes them."""
    text: str = _ENCODER.encode(value)
    return text


_FAST_ENCODER = msgspec.json.Encoder(decimal_format="number")
_FLAT = frozenset({str, int, Decimal, bool, type(None)})
"""Types msgspec writes exactly as simplejson does (a Decimal by its own digits, a big int in
full, strings escaped alike: `tests/unit/test_models_json.py`); it writes a datetime with `Z`
and a float by another rule, so anything else goes through simplejson."""


FAST_ENCODING_ERRORS = (TypeError, UnicodeEncodeError, ValueError)
"""What msgspec raises where simplejson would not: a non-str key, a lone surrogate."""


def is_flat(value: dict[str, Any]) -> bool:
    """Whether every value of `value` is a JSON scalar msgspec writes as simplejson does."""
    return _FLAT.issuperset(map(type, value.values()))  # in C: a generator was ~1 µs


fast_encode: Callable[[Any], bytes] = _FAST_ENCODER.encode
"""msgspec's encoding of `value`, which must hold only strings, ints, Decimals, bools, None,
StrEnum members, raw JSON and dicts, lists and Structs of them (then it is `dumps_generic`'s
output for the model those mirror); raises one of `FAST_ENCODING_ERRORS` where msgspec cannot
write it. The encoder's own method: a Python function around it was one more call per result."""


def encode_flat(value: dict[str, Any]) -> bytes:
    """`encode_any(value).encode()`, 10x faster for a flat object of JSON scalars (a decoded
    meter record: the `request` every result echoes); other objects take the reference path."""
    if not is_flat(value):
        return encode_any(value).encode()
    try:
        return _FAST_ENCODER.encode(value)
    except FAST_ENCODING_ERRORS:
        return encode_any(value).encode()


_T = TypeVar("_T")
_R = TypeVar("_R")


def by_identity(function: Callable[[_T], _R], limit: int = 8192) -> Callable[[_T], _R]:
    """`function` remembered per argument *object* (the entry holds the object, which keeps its
    id unique), at most `limit` entries: for the texts of instants, which a stream repeats as
    shared objects (`_instant` below hands out one datetime per text)."""
    cache: dict[int, tuple[_T, _R]] = {}

    def remembered(value: _T) -> _R:
        hit = cache.get(id(value))
        if hit is not None and hit[0] is value:
            return hit[1]
        result = function(value)
        if len(cache) >= limit:
            cache.clear()
        cache[id(value)] = (value, result)
        return result

    return remembered


_RFC3339 = re.compile(
    r"^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(?:\.\d{1,6}(\d{0,3}))?(?:[Zz]|[+-]\d{2}:\d{2})$"
)
"""Group 1: the digits beyond the microsecond, which must be zeros (.NET writes seven)."""
_COMMON_RFC3339 = re.compile(
    r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d{1,6})?(?:Z|[+-](?:[01]\d|2[0-3]):[0-5]\d)"
)
"""The shape nearly every producer sends, which `datetime.fromisoformat` reads exactly as
pydantic does (`tests/unit/test_models_records.py` compares them)."""
_INSTANTS: dict[str, datetime] = {}
_INSTANTS_LIMIT = 8192


def _instant(value: object) -> object:
    """Only RFC 3339 text with an offset, or an aware datetime built in code: no epoch numbers,
    no partial or naive times.

    Text of the common shape is parsed once and the datetime shared: a stream repeats the same
    half-hours for every meter, and a shared object is written from its remembered text
    (`models.costs`). One validator instead of a before/after pair: each Python call in a
    record's validation costs about 0.4 µs, a third of it.
    """
    if type(value) is str:
        found = _INSTANTS.get(value)
        if found is not None:
            return found
        if _COMMON_RFC3339.fullmatch(value):
            try:
                parsed = datetime.fromisoformat(value)
            except ValueError:  # e.g. hour 25: pydantic's parse gives the error
                return value
            if len(_INSTANTS) >= _INSTANTS_LIMIT:
                _INSTANTS.clear()
            _INSTANTS[value] = parsed
            return parsed
        match = _RFC3339.match(value)
        if match:
            if (match.group(1) or "0").strip("0"):  # pydantic would drop them silently
                raise ValueError("is finer than a microsecond, the finest instant priced")
            return value  # other RFC 3339 forms: pydantic parses them (an offset is given)
    elif isinstance(value, datetime):
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError("must carry a UTC offset or Z (RFC 3339)")
        return value
    raise ValueError("must be an RFC 3339 timestamp with Z or an offset")


DECIMAL_PATTERN = r"^-?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?$"
"""A decimal string in the JSON Schemas, and in the models (`text_like`)."""
DECIMAL_SCHEMA = {"anyOf": [{"type": "number"}, {"type": "string", "pattern": DECIMAL_PATTERN}]}


def text_like(pattern: str, what: str) -> BeforeValidator:
    """A validator refusing a string that does not match `pattern` as a JSON Schema reads it
    (`\\d` is 0-9 alone, `$` the end), other values left to the type: `Decimal` reads far more
    than a schema's decimal string (`"1_000"` as 1000, other scripts' digits, spaces around),
    so a value the published schema refuses was priced."""
    match = re.compile(pattern, re.ASCII).fullmatch

    def check(value: Any) -> Any:
        if type(value) is str and match(value) is None:
            shown = value if len(value) <= 40 else value[:40] + "…"
            raise ValueError(f"{shown!r} is not {what}")
        return value

    return BeforeValidator(check)


Money = Annotated[
    Decimal,
    text_like(DECIMAL_PATTERN, "a decimal number (digits 0-9, a point, an exponent: e.g. 0.25)"),
    WithJsonSchema(DECIMAL_SCHEMA),
]
"""A finite decimal (money, energy, rate): a JSON number or a decimal string, never a float
(pydantic refuses NaN and infinities in a `Decimal` by default: `finite_number`)."""

MAX_EXPONENT = 1000
"""The largest |exponent| a stored input number may be written with (a profile's, a record's
confidence, a record's energy: `costing.engine`): PostgreSQL's jsonb (a profile's mirror, a
result's echoed request) reads no more than 16,383 decimal places (`1e-16384` or `0E-999999`
was a 500, or a result the sink could not store), the sink's amounts stay within ±1000, and no
price or meter needs more than a handful."""


def exponent_in_range(value: Decimal) -> bool:
    """Whether `value` is written with an exponent within ±`MAX_EXPONENT`."""
    exponent = value.as_tuple().exponent
    return isinstance(exponent, int) and -MAX_EXPONENT <= exponent <= MAX_EXPONENT


def exponent_stored(value: Decimal) -> Decimal:
    """`exponent_in_range`, as a validator (`AfterValidator`)."""
    if not exponent_in_range(value):
        raise ValueError(f"is written with an exponent beyond ±{MAX_EXPONENT}")
    return value


MAX_DIGITS = 50
"""The most significant digits an input number may be written with (a record's energy, a
profile's rate, surcharge, standing charge or percentage): the engine's context
(`costing.money.CONTEXT`) has this many, so it holds every input exactly and only the one
final rounding can round what an input says (0.0000005 + 1e-60 as a standing charge was
rounded to 0.0000005 first, then half-even to 0.000000)."""


def digits_held(value: Decimal) -> Decimal:
    """A validator (`AfterValidator`) refusing a number of more than `MAX_DIGITS` digits."""
    if len(value.as_tuple().digits) > MAX_DIGITS:
        raise ValueError(f"has more than {MAX_DIGITS} significant digits")
    return value


AwareDatetime = Annotated[datetime, BeforeValidator(_instant)]
"""An instant with an explicit offset; a naive timestamp is invalid input, not local time."""

_AWARE_DATETIME: TypeAdapter[datetime] = TypeAdapter(AwareDatetime)


def parse_instant(text: str) -> datetime:
    """`text` read as a record's instants are (RFC 3339 with `Z` or an offset), for an adapter
    reading one from a query parameter or an option; pydantic's ValidationError if it is not."""
    return _AWARE_DATETIME.validate_python(text)


class Document(BaseModel):
    """Base of the contract's documents: unknown keys are errors, never silently ignored.

    A document's field values are its `__dict__` (pydantic keeps them there; `trusted` writes
    it), and the pricing path reads a record's fields from it: an attribute read costs 0.1 µs
    on a pydantic model (`BaseModel.__getattr__` sends every attribute read down CPython's
    slow path), an item of the `__dict__` 0.02 µs, and a record's pricing reads ~30."""

    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=False)
