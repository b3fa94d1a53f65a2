"""Mutations that keep checksums valid: mutate a packet, then recompute its sums.

Why: random bytes fail a 16-bit checksum 65,535 times in 65,536, so a fuzzer that does
not recompute it tests the checksum check and almost nothing behind it. Here the
checksums (IPv4 header; TCP, UDP, ICMP and ICMPv6 over either family, through IPv6
extension headers) are recomputed after the mutation with an implementation of this
file's own (not the stack's), so the parsers behind the checks get the input.
"""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st

#: Offset of the checksum field within each upper-layer header.
_SUM_AT = {6: 16, 17: 6, 1: 2, 58: 2}
_EXT = (0, 43, 60)  # hop-by-hop, routing, destination options: (next, len8) headers
_FRAG = 44


def inet_sum(data: bytes | bytearray | memoryview, initial: int = 0) -> int:
    """The Internet checksum (RFC 1071), written out plainly: the complement of the
    ones'-complement sum of the 16-bit words, the odd byte padded with zero."""
    b = bytes(data)
    if len(b) % 2:
        b += b"\0"
    s = initial
    for i in range(0, len(b), 2):
        s += b[i] << 8 | b[i + 1]
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


def _pseudo(src: bytes, dst: bytes, proto: int, length: int) -> int:
    s = proto + length
    for a in (src, dst):
        for i in range(0, len(a), 2):
            s += a[i] << 8 | a[i + 1]
    return s


def fix_l4(f: bytearray, proto: int, start: int, end: int, src: bytes, dst: bytes) -> None:
    """Recompute the TCP/UDP/ICMP/ICMPv6 checksum of ``f[start:end]`` in place."""
    at = _SUM_AT.get(proto)
    if at is None or start + at + 2 > end:
        return
    f[start + at : start + at + 2] = b"\0\0"
    if proto == 1:
        s = inet_sum(f[start:end])
    else:
        s = inet_sum(f[start:end], _pseudo(src, dst, proto, end - start))
        if proto == 17 and s == 0:
            s = 0xFFFF  # zero means "no checksum" in UDP
    f[start + at : start + at + 2] = s.to_bytes(2, "big")


def fix_ipv4(f: bytearray, o: int = 14) -> None:
    """IPv4 at offset ``o``: the header checksum, then (unless a fragment) the payload's."""
    if len(f) < o + 20:
        return
    ihl = (f[o] & 0x0F) * 4
    if ihl < 20 or len(f) < o + ihl:
        return
    f[o + 10 : o + 12] = b"\0\0"
    f[o + 10 : o + 12] = inet_sum(f[o : o + ihl]).to_bytes(2, "big")
    if (f[o + 6] << 8 | f[o + 7]) & 0x3FFF:
        return  # a fragment: the sum covers the whole datagram
    end = min(o + int.from_bytes(f[o + 2 : o + 4], "big"), len(f))
    fix_l4(f, f[o + 9], o + ihl, end, bytes(f[o + 12 : o + 16]), bytes(f[o + 16 : o + 20]))


def fix_ipv6(f: bytearray, o: int = 14) -> None:
    """IPv6 at offset ``o``: through the extension headers to the upper layer's sum."""
    if len(f) < o + 40:
        return
    end = min(o + 40 + int.from_bytes(f[o + 4 : o + 6], "big"), len(f))
    nh, p = f[o + 6], o + 40
    for _ in range(16):
        if nh in _EXT and p + 2 <= end:
            nh, p = f[p], p + (f[p + 1] + 1) * 8
        elif nh == _FRAG and p + 8 <= end:
            if (f[p + 2] << 8 | f[p + 3]) & 0xFFF9:
                return  # not an atomic fragment: the sum covers the whole datagram
            nh, p = f[p], p + 8
        else:
            break
    fix_l4(f, nh, p, end, bytes(f[o + 8 : o + 24]), bytes(f[o + 24 : o + 40]))


def fix_frame(f: bytearray) -> bytearray:
    """Every checksum of an Ethernet frame, recomputed in place (and returned)."""
    if len(f) >= 14:
        kind = f[12] << 8 | f[13]
        if kind == 0x0800:
            fix_ipv4(f)
        elif kind == 0x86DD:
            fix_ipv6(f)
    return f


def fix_lengths(f: bytearray) -> None:
    """Make the IP length field match the frame again (a mutation may have grown it)."""
    if len(f) >= 34 and f[12:14] == b"\x08\x00":
        f[16:18] = min(len(f) - 14, 0xFFFF).to_bytes(2, "big")
    elif len(f) >= 54 and f[12:14] == b"\x86\xdd":
        f[18:20] = min(len(f) - 54, 0xFFFF).to_bytes(2, "big")


@st.composite
def mutation(draw: Any, seed: bytes, start: int = 0, end: int | None = None) -> bytearray:
    """``seed`` with a few changes inside ``seed[start:end]``: bytes set, bits flipped,
    bytes inserted or deleted, an interesting value (0, 0xFF, 0x7F, 0x80) written."""
    b = bytearray(seed)
    stop = len(b) if end is None else min(end, len(b))
    for _ in range(draw(st.integers(1, 6))):
        if stop <= start:
            break
        i = draw(st.integers(start, stop - 1))
        how = draw(st.sampled_from(["set", "flip", "insert", "delete", "special"]))
        if how == "set":
            b[i] = draw(st.integers(0, 255))
        elif how == "flip":
            b[i] ^= 1 << draw(st.integers(0, 7))
        elif how == "insert":
            chunk = draw(st.binary(min_size=1, max_size=8))
            b[i:i] = chunk
            stop += len(chunk)
        elif how == "delete":
            del b[i : i + draw(st.integers(1, 4))]
            stop = min(stop, len(b))
        else:
            b[i] = draw(st.sampled_from([0, 0xFF, 0x7F, 0x80, 1]))
    return b


@st.composite
def valid_sum_frame(
    draw: Any, seeds: list[bytes], start: int = 14, end: int | None = None
) -> bytes:
    """An Ethernet frame from ``seeds``, mutated in ``[start:end]``, lengths made
    consistent half the time, every checksum then recomputed."""
    f = draw(mutation(draw(st.sampled_from(seeds)), start, end))
    if draw(st.booleans()):
        fix_lengths(f)
    return bytes(fix_frame(f))
