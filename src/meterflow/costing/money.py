"""The one decimal context and the one rounding of results (design §3.4)."""

from __future__ import annotations

from decimal import ROUND_HALF_EVEN, Context, Decimal, DivisionByZero, InvalidOperation, Overflow

CONTEXT = Context(
    prec=50, rounding=ROUND_HALF_EVEN, traps=[InvalidOperation, DivisionByZero, Overflow]
)
"""50 digits: every product and sum of the engine is exact for any sane input. A quotient may
be rounded to 50 digits, so no amount is a product of one unless it is exact (`is_exact`): the
only rounding a written amount sees is `round_money`, once, at the end."""
_SIX_PLACES = Decimal("0.000001")
_ZERO = Decimal("0.000000")


_quantize = CONTEXT.quantize  # the context rounds half-even; keyword arguments cost ~1 µs
_WIDE = Context(prec=150, traps=[InvalidOperation, Overflow])
"""Wide enough that a 50-digit quotient times its divisor is exact."""


def round_money(value: Decimal) -> Decimal:
    """Half-even to 6 decimal places; never a negative zero."""
    return _quantize(value, _SIX_PLACES) or _ZERO


def is_exact(quotient: Decimal, divisor: Decimal, dividend: Decimal) -> bool:
    """Whether `quotient` (`dividend / divisor` in `CONTEXT`) is the exact quotient, not 50
    digits of a longer one. Products of an exact quotient are exact; of an inexact one they
    can land beside a half-way tie the exact amount sits on, so they must be divided anew."""
    return _WIDE.multiply(quotient, divisor) == dividend
