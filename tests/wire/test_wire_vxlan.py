"""VXLAN headers: fixed bytes, impossible lengths, flags, round-trips, scapy as decoder."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from scapy.layers.inet import UDP
from scapy.layers.l2 import Ether
from scapy.layers.vxlan import VXLAN

from miragekit.wire import VxlanPacket, VxlanRepr, WireError, vxlan

INNER = bytes.fromhex("ffffffffffff020000000001 0806".replace(" ", "")) + b"arp..."
PKT = bytes.fromhex("08000000 00002a00".replace(" ", "")) + INNER


def test_deconstruct() -> None:
    p = VxlanPacket.checked(PKT)
    assert p.flags == 0x08 and p.reserved1 == 0 and p.vni == 42 and p.reserved2 == 0
    assert bytes(p.payload) == INNER
    assert VxlanRepr.parse(p) == VxlanRepr(vni=42)


def test_construct() -> None:
    buf = bytearray(8)
    p = VxlanPacket(buf)
    p.flags = 0x08
    p.vni = 0xABCDEF
    p.reserved1 = 0x010203
    p.reserved2 = 0x04
    assert bytes(buf) == bytes.fromhex("0801020 3abcdef04".replace(" ", ""))
    assert (p.reserved1, p.reserved2, p.vni) == (0x010203, 4, 0xABCDEF)


def test_emit_exact_buffer() -> None:
    r = VxlanRepr(vni=0xFFFFFF)
    buf = bytearray(r.buffer_len())
    r.emit(VxlanPacket(buf))
    assert bytes(buf) == b"\x08\x00\x00\x00\xff\xff\xff\x00"
    assert vxlan.header(0xFFFFFF) == bytes(buf)


@pytest.mark.parametrize("n", [0, 1, 7])
def test_impossible_length(n: int) -> None:
    with pytest.raises(WireError) as e:
        VxlanPacket.checked(PKT[:n])
    assert e.value.field == "length"
    with pytest.raises(WireError):
        VxlanRepr.parse(VxlanPacket(PKT[:n]))


def test_header_only_is_valid_with_empty_payload() -> None:
    p = VxlanPacket.checked(PKT[:8])
    assert len(p.payload) == 0


@pytest.mark.parametrize("flags", [0x00, 0x80, 0x04, 0xF7])
def test_i_flag_missing(flags: int) -> None:
    with pytest.raises(WireError) as e:
        VxlanRepr.parse(VxlanPacket(bytes([flags]) + PKT[1:]))
    assert e.value.field == "flags" and "I flag" in e.value.msg


@pytest.mark.parametrize("flags", [0x88, 0x0C, 0x09, 0xFF])
def test_reserved_flags_ignored_unless_strict(flags: int) -> None:
    p = VxlanPacket(bytes([flags]) + PKT[1:])
    assert VxlanRepr.parse(p) == VxlanRepr(42)  # RFC 7348: ignored on receipt
    with pytest.raises(WireError) as e:
        VxlanRepr.parse(p, strict=True)
    assert e.value.field == "flags" and "reserved" in e.value.msg


def test_reserved_fields_ignored() -> None:
    p = VxlanPacket(b"\x08\xff\xff\xff\x00\x00\x2a\xff" + INNER)
    assert VxlanRepr.parse(p, strict=True) == VxlanRepr(42)


@pytest.mark.parametrize("vni", [-1, 1 << 24])
def test_vni_out_of_range(vni: int) -> None:
    with pytest.raises(ValueError, match="vni"):
        VxlanRepr(vni).emit(VxlanPacket(bytearray(8)))
    with pytest.raises(ValueError, match="vni"):
        vxlan.header(vni)


def test_overheads() -> None:
    assert vxlan.OVERHEAD_V4 == 20 + 8 + vxlan.HEADER_LEN + 14
    assert vxlan.OVERHEAD_V6 == 40 + 8 + vxlan.HEADER_LEN + 14
    assert vxlan.UDP_PORT == 4789


@given(st.integers(0, vxlan.VNI_MAX), st.binary(max_size=64))
def test_round_trip_and_scapy(vni: int, inner: bytes) -> None:
    r = VxlanRepr(vni)
    buf = bytearray(r.buffer_len()) + inner
    r.emit(VxlanPacket(buf))
    assert VxlanRepr.parse(VxlanPacket(buf), strict=True) == r
    s = VXLAN(bytes(buf))
    assert s.vni == vni and int(s.flags) == 0x08 and s.reserved1 == 0 and s.reserved2 == 0
    assert bytes(VXLAN(vni=vni, flags=0x08)) == bytes(buf[:8])


def test_scapy_encapsulated_frame_in_udp() -> None:
    """scapy builds UDP/VXLAN/Ether; our view finds the same VNI and inner frame."""
    inner = Ether(src="02:00:00:00:00:01", dst="ff:ff:ff:ff:ff:ff", type=0x0806) / (b"x" * 28)
    dgram = bytes(UDP(sport=50000, dport=4789) / VXLAN(vni=4242, flags=0x08) / inner)
    p = VxlanPacket.checked(dgram[8:])
    assert VxlanRepr.parse(p, strict=True).vni == 4242
    assert bytes(p.payload) == bytes(inner)
    assert UDP(dgram)[VXLAN][Ether].src == "02:00:00:00:00:01"
