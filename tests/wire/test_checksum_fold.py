"""The folded remainder (wire/_checksum FOLD*) against a word-by-word reference sum."""

from __future__ import annotations

import random

from hypothesis import given, settings
from hypothesis import strategies as st
from scapy.layers.inet import IP, TCP
from tests.wire.test_wire_checksum import reference_sum

from miragekit.wire._checksum import ipv4_sums_to_zero, ones_sum, sums_to_zero
from miragekit.wire.tcp import TCPChecksumError, TCPRepr

PROTO_TCP = 6


@settings(max_examples=300, deadline=None)
@given(size=st.integers(0, 70000), seed=st.integers(0, 2**32), fill=st.sampled_from([0, 255, -1]))
def test_ones_sum_matches_the_reference(size: int, seed: int, fill: int) -> None:
    data = random.Random(seed).randbytes(size) if fill < 0 else bytes([fill]) * size
    assert ones_sum(data) == reference_sum(data)


@settings(max_examples=300, deadline=None)
@given(
    size=st.integers(0, 4000),
    seed=st.integers(0, 2**32),
    extra=st.integers(0, 2**34),
    fill=st.sampled_from([0, 255, -1]),
)
def test_sums_to_zero_matches_the_reference(size: int, seed: int, extra: int, fill: int) -> None:
    """The little-endian check against the word-by-word sum: for data with any sum, and
    for the same data completed by the word that makes its sum zero (0xFFFF), at every
    length around the folds (odd ones too)."""
    data = random.Random(seed).randbytes(size) if fill < 0 else bytes([fill]) * size
    s = reference_sum(data) + extra
    while s > 0xFFFF:
        s = (s & 0xFFFF) + (s >> 16)
    assert sums_to_zero(data, extra) == (s in (0, 0xFFFF))
    # Make the sum zero with a leading word (leading keeps the rest at its offsets).
    word = (~s & 0xFFFF).to_bytes(2, "big")
    assert sums_to_zero(word + data, extra)
    # Both representations of a zero sum (0xFFFF and, for a zero word, 0) verify.
    if word == b"\0\0":
        assert sums_to_zero(b"\xff\xff" + data, extra)
    assert not sums_to_zero((int.from_bytes(word, "big") ^ 1).to_bytes(2, "big") + data, extra)


@settings(max_examples=200, deadline=None)
@given(plen=st.integers(900, 1500), seed=st.integers(0, 2**32 - 1))
def test_full_sized_segments_verify_and_emit_like_scapy(plen: int, seed: int) -> None:
    payload = random.Random(seed).randbytes(plen)
    pkt = IP(src="10.0.0.1", dst="10.0.0.2") / TCP(sport=1, dport=2, seq=seed) / payload
    raw = bytes(pkt)
    src, dst = bytes([10, 0, 0, 1]), bytes([10, 0, 0, 2])
    seg = TCPRepr.parse(raw[20:], src, dst)
    assert bytes(seg.to_bytes(src, dst)) == raw[20:]
    bad = bytearray(raw[20:])
    bad[-1] ^= 1
    try:
        TCPRepr.parse(bytes(bad), src, dst)
    except TCPChecksumError:
        pass
    else:
        raise AssertionError("a flipped bit verified")


@settings(max_examples=300, deadline=None)
@given(
    plen=st.integers(0, 2000),
    seed=st.integers(0, 2**32 - 1),
    bad=st.sampled_from(["none", "ip", "tcp"]),
    at=st.integers(0, 10**6),
)
def test_ipv4_sums_to_zero_is_both_checks(plen: int, seed: int, bad: str, at: int) -> None:
    """One read for both sums of an IPv4 packet (the receive path's) against scapy's
    packets and the two separate checks, with a bit flipped in either part or none,
    at sizes around the folds."""
    payload = random.Random(seed).randbytes(plen)
    raw = bytearray(bytes(IP(src="10.0.0.1", dst="10.0.0.2") / TCP(seq=seed) / payload))
    if bad == "ip":
        raw[at % 20 if at % 20 not in (12, 13, 14, 15, 16, 17, 18, 19) else 8] ^= 1 << at % 8
    elif bad == "tcp":
        raw[20 + at % (len(raw) - 20)] ^= 1 << at % 8
    extra = PROTO_TCP + len(raw) - 20  # the pseudo-header's protocol and TCP length
    separate = ones_sum(bytes(raw[:20])) == 0xFFFF and sums_to_zero(bytes(raw[12:]), extra)
    assert ipv4_sums_to_zero(memoryview(raw), extra) == separate == (bad == "none")
