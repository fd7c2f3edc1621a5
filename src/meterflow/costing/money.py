"""The one decimal context and the one rounding of results (design §3.4)."""

from __future__ import annotations

from decimal import ROUND_HALF_EVEN, Context, Decimal, DivisionByZero, InvalidOperation, Overflow

CONTEXT = Context(
    prec=50, rounding=ROUND_HALF_EVEN, traps=[InvalidOperation, DivisionByZero, Overflow]
)
"""50 digits: every product and sum of the engine is exact for any sane input, so the only
rounding a result sees is `round_money`, once, at the end."""
_SIX_PLACES = Decimal("0.000001")
_ZERO = Decimal("0.000000")


_quantize = CONTEXT.quantize  # the context rounds half-even; keyword arguments cost ~1 µs


def round_money(value: Decimal) -> Decimal:
    """Half-even to 6 decimal places; never a negative zero."""
    return _quantize(value, _SIX_PLACES) or _ZERO
