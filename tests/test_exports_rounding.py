"""Derived numbers are rounded half up at 4 decimals of their decimal form, fast path or not."""

from decimal import ROUND_HALF_UP, Decimal

from hypothesis import example, given
from hypothesis import strategies as st

from exports.outcomes import round_half_up


def by_decimal(value: float) -> float:
    return float(Decimal(repr(value)).quantize(Decimal("0.0001"), rounding=ROUND_HALF_UP))


@given(st.floats(min_value=-1e9, max_value=1e9, allow_nan=False))
@example(0.00005)
@example(2.67345)
@example(-2.67345)
@example(1.00015)
@example(0.1 + 0.2)
@example(1e-7)
@example(123456.78905)
def test_rounding_matches_decimal_half_up(value):
    assert round_half_up(value) == by_decimal(value)


@given(
    st.integers(min_value=-(10**9), max_value=10**9),
    st.integers(min_value=0, max_value=9999),
)
def test_halves_at_the_fifth_decimal_go_up(whole, fraction):
    """Exactly a half at the fifth decimal (where round() would go to even): away from zero."""
    text = f"{whole}.{fraction:04d}5"
    value = float(text)
    if repr(value) != text:  # not representable as that short decimal: not a tie
        return
    expected = Decimal(text).quantize(Decimal("0.0001"), rounding=ROUND_HALF_UP)
    assert round_half_up(value) == float(expected)


def test_empty_stays_empty():
    assert round_half_up(None) is None
