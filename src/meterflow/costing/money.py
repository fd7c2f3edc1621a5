"""The one decimal context and the one rounding of results (design §3.4)."""

from __future__ import annotations

from collections.abc import Iterable
from decimal import ROUND_HALF_EVEN, Context, Decimal, DivisionByZero, InvalidOperation, Overflow

from meterflow.models import MAX_DIGITS

CONTEXT = Context(
    prec=MAX_DIGITS,
    rounding=ROUND_HALF_EVEN,
    Emin=-100_000,
    traps=[InvalidOperation, DivisionByZero, Overflow],
)
"""50 digits: every product and sum of the engine is exact for any sane input. A quotient may
be rounded to 50 digits, so amounts derived from one go through `quotient_times`: the only
rounding a written amount sees is `round_money`, once, at the end. Its smallest exponent
(`Etiny`, from `Emin`) is far below any amount's and serves `rounded_quotients`."""
_SIX_PLACES = Decimal("0.000001")
ZERO = Decimal("0.000000")
"""The amount nothing comes to, written as every rounded amount is (`0.000000`)."""


_quantize = CONTEXT.quantize  # the context rounds half-even; keyword arguments cost ~1 µs
_WIDE = Context(prec=150, traps=[InvalidOperation, Overflow])
"""Wide enough that a 50-digit quotient times its divisor is exact."""


def round_money(value: Decimal) -> Decimal:
    """Half-even to 6 decimal places; never a negative zero."""
    return _quantize(value, _SIX_PLACES) or ZERO


def rounded_quotients(dividends: list[Decimal], factor: Decimal, divisor: Decimal) -> list[Decimal]:
    """`round_money(factor × dividend / divisor)` of each dividend (a record's parts' costs:
    its energy per µs × each part's weight), each rounded once, half-even, from the exact
    quotient. Run in `CONTEXT` (the operators compute in the thread's context).

    By operators alone, no method call per part (`quantize` parses its arguments: a quarter of
    a 48-part record's arithmetic): the divisor scaled up by `_SHIFT` makes every quotient
    subnormal in `CONTEXT`, whose smallest exponent (`Etiny`) is then the millionths, so the
    division itself rounds there; adding `_TINY_ZERO` writes all six places (and makes a
    negative zero positive) and × `_SHIFT` gives the amount back, exactly. The amounts are
    those of `round_money` on the 50-digit quotient: the two differ only for a quotient within
    half a 50-digit unit of a half-way tie that is not one, which a divisor below 10^20 (a
    record's µs × 1000) cannot make for an amount below 10^25."""
    scaled = divisor * _SHIFT
    return [(factor * dividend / scaled + _TINY_ZERO) * _SHIFT for dividend in dividends]


_TINY_ZERO = Decimal(f"0E{CONTEXT.Etiny()}")
_SHIFT = Decimal(f"1E{-CONTEXT.Etiny() - 6}")
"""10^100043: a quotient divided by it has its millionths at `CONTEXT.Etiny()`."""


def is_exact_quotient(quotient: Decimal, dividend: Decimal, divisor: Decimal) -> bool:
    """Whether `quotient` (`dividend / divisor` in `CONTEXT`) is exact: times the divisor, in a
    context wide enough to hold it, it gives the dividend back."""
    return _WIDE.multiply(quotient, divisor) == dividend


def quotient_times(
    quotient: Decimal, dividend: Decimal, divisor: Decimal, factors: Iterable[Decimal]
) -> list[Decimal]:
    """`quotient` (`dividend / divisor` in `CONTEXT`) times each factor, each to 50 digits of
    its exact value, ready for `round_money`.

    An exact quotient's products are exact. When the quotient is 50 digits of a longer one (a
    third of a record's energy), its products can land beside a half-way tie the exact amount
    sits on (0.0208333…3 × 0.2346 = 0.0048874999…, exactly 0.0048875), so each is divided
    afresh from `dividend`. Exact: the quotient times the divisor, in a context wide enough
    to hold it, gives the dividend back."""
    multiply = CONTEXT.multiply
    if is_exact_quotient(quotient, dividend, divisor):
        return [multiply(quotient, factor) for factor in factors]
    divide = CONTEXT.divide
    return [divide(multiply(dividend, factor), divisor) for factor in factors]


class _Lengths(dict[int, Decimal]):
    """`Decimal(n)` of lengths in µs, remembered: a stream's records and a breakdown's parts
    repeat a few lengths (half-hours), and a look-up costs 0.04 µs, a new Decimal 0.14."""

    def __missing__(self, length: int) -> Decimal:
        if len(self) >= 4096:
            self.clear()
        value = self[length] = Decimal(length)
        return value


LENGTHS = _Lengths()
"""`LENGTHS[n]` is `Decimal(n)`."""
