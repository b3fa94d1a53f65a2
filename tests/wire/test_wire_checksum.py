"""The Internet checksum against a plain RFC 1071 loop, including odd lengths and splits."""

from __future__ import annotations

import ipaddress

from hypothesis import given
from hypothesis import strategies as st

from miragekit.wire import (
    checksum,
    checksum_add,
    checksum_v,
    ones_sum,
    ones_sum_v,
    pseudo_sum_v4,
    pseudo_sum_v6,
)


def reference_sum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    s = 0
    for i in range(0, len(data), 2):
        s += (data[i] << 8) | data[i + 1]
        s = (s & 0xFFFF) + (s >> 16)
    return s


def test_rfc1071_example() -> None:
    # RFC 1071 section 3: the bytes 00 01 f2 03 f4 f5 f6 f7 sum to 0xddf2.
    data = bytes.fromhex("0001f203f4f5f6f7")
    assert ones_sum(data) == 0xDDF2
    assert checksum(data) == 0x220D


def test_known_ipv4_header() -> None:
    hdr = bytes.fromhex("450000730000400040110000c0a80001c0a800c7")
    assert checksum(hdr) == 0xB861
    fixed = hdr[:10] + b"\xb8\x61" + hdr[12:]
    assert checksum(fixed) == 0


def test_zero_and_all_ones() -> None:
    assert ones_sum(b"") == 0
    assert ones_sum(b"\0\0\0") == 0
    assert checksum(b"\0\0") == 0xFFFF
    # Non-zero data whose sum is "negative zero": never 0.
    assert ones_sum(b"\xff\xff") == 0xFFFF
    assert ones_sum(b"\x80\x00\x7f\xff") == 0xFFFF
    assert checksum(b"\xff\xff") == 0


@given(st.binary(max_size=3000))
def test_matches_reference(data: bytes) -> None:
    assert ones_sum(data) == reference_sum(data)
    assert ones_sum(memoryview(bytearray(data))) == reference_sum(data)


@given(st.lists(st.binary(max_size=64), max_size=8), st.integers(0, 0xFFFF))
def test_split_buffers(parts: list[bytes], initial: int) -> None:
    whole = b"".join(parts)
    assert ones_sum_v(parts) == reference_sum(whole)
    assert checksum_v(parts, initial) == (~checksum_add(initial, reference_sum(whole)) & 0xFFFF)


@given(st.binary(min_size=4, max_size=4), st.binary(min_size=4, max_size=4), st.integers(0, 0xFFFF))
def test_pseudo_v4(src: bytes, dst: bytes, length: int) -> None:
    hdr = src + dst + bytes([0, 17]) + length.to_bytes(2, "big")
    assert pseudo_sum_v4(src, dst, 17, length) == reference_sum(hdr)


def test_pseudo_v6() -> None:
    src = ipaddress.IPv6Address("2001:db8::1").packed
    dst = ipaddress.IPv6Address("fe80::abcd:1").packed
    length = 0x12345
    hdr = src + dst + length.to_bytes(4, "big") + bytes([0, 0, 0, 6])
    assert pseudo_sum_v6(src, dst, 6, length) == reference_sum(hdr)
