"""32-bit sequence arithmetic across wraparound."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from miragekit.tcp.seqnum import (
    MASK,
    acceptable,
    seq_add,
    seq_diff,
    seq_ge,
    seq_gt,
    seq_le,
    seq_lt,
    unwrap,
    wrap,
)


def test_wraparound_comparisons() -> None:
    a = 0xFFFFFFF0
    b = seq_add(a, 0x20)
    assert b == 0x10
    assert seq_lt(a, b) and seq_le(a, b) and seq_gt(b, a) and seq_ge(b, a)
    assert not seq_lt(b, a) and seq_le(a, a) and seq_ge(a, a)
    assert seq_diff(b, a) == 0x20 and seq_diff(a, b) == -0x20
    assert wrap(2**32 + 5) == 5


def test_unwrap_near_reference() -> None:
    ref = (1 << 32) - 3  # unbounded, just below the first wrap
    assert unwrap(2, ref) == (1 << 32) + 2
    assert unwrap(0xFFFFFFF0, ref) == 0xFFFFFFF0
    assert unwrap(5, (3 << 32) + 10) == (3 << 32) + 5


@given(st.integers(0, 2**40), st.integers(-(2**31) + 1, 2**31))
def test_unwrap_inverts_wrap(ref: int, delta: int) -> None:
    n = ref + delta
    if n >= 0:
        assert unwrap(n & MASK, ref) == n
        assert seq_diff(n & MASK, ref & MASK) == delta


def test_acceptability_table_of_rfc_9293() -> None:
    # (seq, seglen, RCV.NXT, RCV.WND): the four cases of RFC 9293 3.10.7.4.
    assert acceptable(100, 0, 100, 0) and not acceptable(101, 0, 100, 0)
    assert acceptable(150, 0, 100, 100) and not acceptable(200, 0, 100, 100)
    assert not acceptable(99, 0, 100, 100)
    assert not acceptable(100, 10, 100, 0)
    assert acceptable(95, 10, 100, 100)  # its tail is in the window
    assert not acceptable(90, 10, 100, 100)  # wholly old
    assert acceptable(199, 10, 100, 100) and not acceptable(200, 10, 100, 100)
