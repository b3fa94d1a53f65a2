"""32-bit modular sequence-number arithmetic (RFC 9293 3.4, RFC 1982).

The connection keeps its own numbers as unbounded Python ints (no wraparound inside);
these helpers convert at the wire boundary and compare raw 32-bit numbers where needed.
"""

from __future__ import annotations

from typing import Final

__all__ = [
    "MASK",
    "acceptable",
    "seq_add",
    "seq_diff",
    "seq_ge",
    "seq_gt",
    "seq_le",
    "seq_lt",
    "unwrap",
    "wrap",
]

MOD: Final = 1 << 32
MASK: Final = MOD - 1
HALF: Final = 1 << 31


def wrap(n: int) -> int:
    """The 32-bit wire value of an unbounded sequence number."""
    return n & MASK


def seq_add(a: int, n: int) -> int:
    return (a + n) & MASK


def seq_diff(a: int, b: int) -> int:
    """Signed distance ``a - b`` in (-2**31, 2**31]: positive when ``a`` is after ``b``."""
    d = (a - b) & MASK
    return d - MOD if d > HALF else d


def seq_lt(a: int, b: int) -> bool:
    return seq_diff(a, b) < 0


def seq_le(a: int, b: int) -> bool:
    return seq_diff(a, b) <= 0


def seq_gt(a: int, b: int) -> bool:
    return seq_diff(a, b) > 0


def seq_ge(a: int, b: int) -> bool:
    return seq_diff(a, b) >= 0


def acceptable(seq: int, seglen: int, rcv_nxt: int, wnd: int) -> bool:
    """RFC 9293 3.10.7.4's acceptability test of a segment (unbounded numbers): does any
    of it fall in the receive window?"""
    if seglen == 0:
        return seq == rcv_nxt if wnd == 0 else rcv_nxt <= seq < rcv_nxt + wnd
    if wnd == 0:
        return False
    end = seq + seglen - 1
    return (rcv_nxt <= seq < rcv_nxt + wnd) or (rcv_nxt <= end < rcv_nxt + wnd)


def unwrap(seq32: int, reference: int) -> int:
    """The unbounded number nearest to ``reference`` whose low 32 bits are ``seq32``."""
    return reference + seq_diff(seq32, reference & MASK)
