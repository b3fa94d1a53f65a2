"""The Internet checksum (RFC 1071), computed by C-speed builtins.

The ones'-complement sum of big-endian 16-bit words equals the big-endian integer value
of the data reduced modulo 0xFFFF (because 2**16 == 1 mod 0xFFFF), except that the
end-around-carry sum of non-zero data is never 0: it is 0xFFFF where the remainder is 0.
``int.from_bytes`` plus one ``%`` measured 3.5x faster than ``sum(memoryview.cast("H"))``
on 1500 B and 64 KiB (``bench/checksum.py``), so that is what we use.

Sums here are *folded* ones'-complement sums in ``[0, 0xFFFF]`` (0 only for all-zero
data); :func:`checksum_add` combines two of them, :func:`checksum_finish` turns one into the checksum field.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Final

_Buf = bytes | bytearray | memoryview

# Bound once: compiled code calls a method of an object by name with a look-up in its
# type at every call (several hundred instructions), a bound method directly.
_from_bytes: Final = int.from_bytes

# Folding before the remainder: ``v % 0xFFFF`` walks the integer one 30-bit digit at a
# time with a division each, a chain of dependent divisions. ``hi * 2**s + lo`` leaves
# the remainder unchanged when 16 divides ``s`` (2**16 == 1 mod 0xFFFF), and at a
# multiple of 240 bits (a multiple of the digit size too) the shift and mask only move
# digits. Three such folds take a full-sized segment (1448..1480 bytes, ~11800 bits)
# down to ~1900 bits before the remainder: measured 30% faster on the whole
# from_bytes + remainder. Used between FOLD_FROM and FOLD_WIDE bytes.
FOLD1: Final = 5760
FOLD2: Final = 2880
FOLD3: Final = 1440
MASK1: Final = (1 << FOLD1) - 1
MASK2: Final = (1 << FOLD2) - 1
MASK3: Final = (1 << FOLD3) - 1
FOLD4: Final = 720
MASK4: Final = (1 << FOLD4) - 1
HALF: Final = FOLD1 // 8
"""Bytes of the low half of a segment-sized integer: read apart, the two halves sum to
what the first fold would give (TcpSender.burst folds so)."""
FOLD_FROM: Final = 1000
"""Bytes from which the three folds pay for themselves."""
FOLD_WIDE: Final = 2048
"""Bytes from which the three folds no longer pay (they are sized for one segment; a
64 KiB sum takes the plain remainder)."""
# residue()'s bounds and folds are imported by name by a loop that writes its steps out
# (the TCP driver's burst, where a call a frame costs).


def residue(data: _Buf) -> int:
    """A number below 2**24 congruent modulo 0xFFFF to the sum of ``data``'s big-endian
    words (an odd length padded with a zero byte): the raw material of every sum here.
    Callers add more terms (pseudo-header, header fields) and take one last ``% 0xFFFF``.

    The bytes are read as a *little*-endian integer, whose value modulo 0xFFFF is the
    sum of the byte-swapped words (the padding falls in place by itself), and 256 times
    that is the big-endian sum (256 * 256 == 1 modulo 0xFFFF). With a fourth fold this
    measured 9% faster than the big-endian integer with three (1.59 against 1.74 µs on a
    full-sized segment), what every sent segment's checksum costs."""
    v = _from_bytes(data, "little")
    n = len(data)
    if FOLD_FROM < n < FOLD_WIDE:
        v = (v >> FOLD1) + (v & MASK1)
        v = (v >> FOLD2) + (v & MASK2)
        v = (v >> FOLD3) + (v & MASK3)
        v = (v >> FOLD4) + (v & MASK4)
    return v % 0xFFFF << 8


def sums_to_zero(data: _Buf, extra: int = 0) -> bool:
    """Whether the ones'-complement sum of ``data`` (big-endian words, an odd length
    zero-padded) plus ``extra`` (a sum of such words, e.g. the rest of a pseudo-header)
    is zero (0xFFFF or 0 when folded): how a received checksum is verified.

    The bytes are read as a *little*-endian integer: that value modulo 0xFFFF is the
    sum of byte-swapped words, 256 times the big-endian residue (for an odd length as
    well), and 256 is invertible modulo 0xFFFF, so one is zero exactly when the other
    is. ``int.from_bytes`` little-endian and a fourth fold measured ~8% faster than
    :func:`residue` on a full-sized segment, the fastest of the candidates in
    ``bench/checksum.py``."""
    v = _from_bytes(data, "little")
    n = len(data)
    if FOLD_FROM < n < FOLD_WIDE:
        v = _fold4(v)
    return not (v + (extra << 8)) % 0xFFFF


def _fold4(v: int) -> int:
    """``v`` folded four times (same remainder modulo 0xFFFF, ~720 bits left): for the
    sums of one full-sized segment, read little-endian."""
    v = (v >> FOLD1) + (v & MASK1)
    v = (v >> FOLD2) + (v & MASK2)
    v = (v >> FOLD3) + (v & MASK3)
    return (v >> FOLD4) + (v & MASK4)


def ipv4_sums_to_zero(packet: _Buf, extra: int) -> bool:
    """Whether both sums of an IPv4 packet without options check: its header's (the
    first 20 bytes) and its transport's, which :func:`sums_to_zero` takes from the
    packet's byte 12 on (the addresses lead the segment: one sum covers them) with
    ``extra`` the rest of the pseudo-header. A segment-sized packet is read three
    times, the header and the segment's two halves (split at FOLD1 bits, they sum to
    what the first fold gives, without the shift and mask of the whole): 0.15 µs less
    on a full-sized frame than one integer of the packet masked for the header and
    shifted for the segment (1.84 against 1.99 µs), which smaller packets keep. The
    folds are :func:`_fold4`'s, written out (a call is ~0.1 µs of every received
    segment); tests/wire/test_checksum_fold.py checks this against the two sums taken
    apart."""
    n = len(packet)
    if _FOLD_FROM_IP < n < _FOLD_WIDE_IP:
        if _from_bytes(packet[:20], "little") % 0xFFFF:
            return False
        v = _from_bytes(packet[12:_HALF_AT], "little") + _from_bytes(packet[_HALF_AT:], "little")
        v = (v >> FOLD2) + (v & MASK2)
        v = (v >> FOLD3) + (v & MASK3)
        v = (v >> FOLD4) + (v & MASK4)
    else:
        # Small (a pure ACK) or large: one read, masked for the header, shifted for the
        # segment (for a 52-byte packet 0.31 µs against 0.43 read apart).
        v = _from_bytes(packet, "little")
        if (v & _IPV4_HEADER) % 0xFFFF:
            return False
        v >>= 96
    return not (v + (extra << 8)) % 0xFFFF


# ipv4_sums_to_zero's bounds, for a packet whose segment's sum starts at its byte 12:
# where that sum splits, and the packet sizes its folds are for.
_HALF_AT: Final = 12 + HALF
_FOLD_FROM_IP: Final = FOLD_FROM + 12
_FOLD_WIDE_IP: Final = FOLD_WIDE + 12
_IPV4_HEADER: Final = (1 << 160) - 1  # the first 20 bytes of a packet read little-endian


def ones_sum(data: _Buf) -> int:
    """The folded ones'-complement sum of ``data`` as big-endian words (odd: zero-padded)."""
    r = residue(data) % 0xFFFF
    if r == 0 and int.from_bytes(data, "big"):
        return 0xFFFF  # non-zero data never sums to 0 with end-around carry
    return r


def checksum_add(a: int, b: int) -> int:
    """Ones'-complement addition of two folded sums."""
    s = a + b
    return (s & 0xFFFF) + (s >> 16)


def ones_sum_v(bufs: Iterable[_Buf], initial: int = 0) -> int:
    """The folded sum over the concatenation of ``bufs``, starting from ``initial``.

    A buffer that starts at an odd offset contributes its sum byte-swapped.
    """
    total = initial
    odd = False
    for b in bufs:
        n = len(b)
        if not n:
            continue
        s = ones_sum(b)
        if odd:
            s = ((s & 0xFF) << 8) | (s >> 8)
        total = checksum_add(total, s)
        if n & 1:
            odd = not odd
    return total


def checksum_finish(s: int) -> int:
    """The checksum field for folded sum ``s``: its ones' complement."""
    return ~s & 0xFFFF


def checksum(data: _Buf) -> int:
    """The Internet checksum of ``data``; a buffer including a correct checksum gives 0."""
    return ~ones_sum(data) & 0xFFFF


def checksum_v(bufs: Iterable[_Buf], initial: int = 0) -> int:
    """The Internet checksum over several buffers, with ``initial`` (e.g. a pseudo-header)."""
    return ~ones_sum_v(bufs, initial) & 0xFFFF


def pseudo_sum(src: _Buf, dst: _Buf, proto: int, length: int) -> int:
    """The folded sum of the TCP/UDP pseudo-header: IPv4 (4-byte addresses, RFC 768/9293)
    or IPv6 (16-byte addresses, RFC 8200 8.1); both sum the same words."""
    if len(src) not in (4, 16) or len(dst) != len(src):
        raise ValueError(
            f"src/dst: need two 4-byte or two 16-byte addresses, got {len(src)} and {len(dst)}"
        )
    s = int.from_bytes(src, "big") + int.from_bytes(dst, "big") + proto + length
    r = s % 0xFFFF
    return 0xFFFF if r == 0 and s else r


def pseudo_sum_v4(src: _Buf, dst: _Buf, proto: int, length: int) -> int:
    """The folded sum of the IPv4 pseudo-header (RFC 768/793): 4-byte addresses."""
    return pseudo_sum(src, dst, proto, length)


def pseudo_sum_v6(src: _Buf, dst: _Buf, next_header: int, length: int) -> int:
    """The folded sum of the IPv6 pseudo-header (RFC 8200 8.1): 16-byte addresses."""
    return pseudo_sum(src, dst, next_header, length)
