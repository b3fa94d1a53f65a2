"""Ethernet, ARP, IPv4, ICMPv4, UDP: fixed bytes, impossible lengths, round-trips, scapy."""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import given
from hypothesis import strategies as st
from scapy.layers.inet import ICMP, IP, UDP
from scapy.layers.l2 import ARP, Ether

from miragekit.macaddr import MacAddr
from miragekit.wire import (
    ArpOperation,
    ArpPacket,
    ArpRepr,
    EthernetFrame,
    EthernetRepr,
    EtherType,
    Icmpv4Packet,
    Icmpv4Repr,
    Icmpv4Type,
    IpProtocol,
    Ipv4Packet,
    Ipv4Repr,
    UdpPacket,
    UdpRepr,
    WireError,
)

A1 = ipaddress.IPv4Address("10.77.0.1")
A2 = ipaddress.IPv4Address("10.77.0.2")
M1 = MacAddr("02:00:00:00:00:01")
M2 = MacAddr("52:54:00:12:34:56")

macs = st.binary(min_size=6, max_size=6).map(MacAddr)
ipv4s = st.integers(0, 2**32 - 1).map(ipaddress.IPv4Address)

# --- Ethernet --------------------------------------------------------------------------

ETH = bytes.fromhex("5254001234560200000000010806") + b"payload"


def test_ethernet_deconstruct_and_construct() -> None:
    f = EthernetFrame.checked(ETH)
    assert f.dst == M2 and f.src == M1 and f.ethertype is EtherType.ARP
    assert bytes(f.payload) == b"payload"
    r = EthernetRepr.parse(f)
    assert r == EthernetRepr(src=M1, dst=M2, ethertype=EtherType.ARP)
    buf = bytearray(r.buffer_len() + 7)
    r.emit(EthernetFrame(buf))
    buf[14:] = b"payload"
    assert bytes(buf) == ETH


def test_ethernet_unknown_type_kept() -> None:
    f = EthernetFrame(ETH[:12] + b"\x88\xb5")
    assert f.ethertype == 0x88B5 and not isinstance(f.ethertype, EtherType)


@pytest.mark.parametrize("n", [0, 1, 13])
def test_ethernet_impossible_length(n: int) -> None:
    with pytest.raises(WireError) as e:
        EthernetFrame.checked(ETH[:n])
    assert e.value.field == "length"


@given(macs, macs, st.integers(0x0600, 0xFFFF))  # below 0x600 scapy reads 802.3
def test_ethernet_round_trip_and_scapy(src: MacAddr, dst: MacAddr, et: int) -> None:
    r = EthernetRepr(src=src, dst=dst, ethertype=et)
    buf = bytearray(14)
    r.emit(EthernetFrame(buf))
    assert EthernetRepr.parse(EthernetFrame(buf)) == r
    s = Ether(bytes(buf))
    assert (s.src, s.dst, s.type) == (str(src), str(dst), et)
    assert bytes(Ether(src=str(src), dst=str(dst), type=et)) == bytes(buf)


# --- ARP -------------------------------------------------------------------------------

ARP_REQ = bytes.fromhex("00010800060400010200000000010a4d00010000000000000a4d0002")


def test_arp_deconstruct_and_construct() -> None:
    p = ArpPacket.checked(ARP_REQ)
    r = ArpRepr.parse(p)
    assert r == ArpRepr(ArpOperation.REQUEST, M1, A1, MacAddr(bytes(6)), A2)
    buf = bytearray(r.buffer_len())
    r.emit(ArpPacket(buf))
    assert bytes(buf) == ARP_REQ


@pytest.mark.parametrize("n", [0, 7, 27])
def test_arp_impossible_length(n: int) -> None:
    with pytest.raises(WireError) as e:
        ArpRepr.parse(ArpPacket(ARP_REQ[:n]))
    assert e.value.field == "length"


def test_arp_other_types_rejected_by_field() -> None:
    with pytest.raises(WireError) as e:
        ArpRepr.parse(ArpPacket(b"\x00\x06" + ARP_REQ[2:]))
    assert e.value.field == "htype"
    with pytest.raises(WireError) as e:
        ArpRepr.parse(ArpPacket(ARP_REQ[:2] + b"\x86\xdd" + ARP_REQ[4:]))
    assert e.value.field == "ptype"


@given(st.integers(0, 0xFFFF), macs, ipv4s, macs, ipv4s)
def test_arp_round_trip_and_scapy(
    op: int, sm: MacAddr, si: ipaddress.IPv4Address, tm: MacAddr, ti: ipaddress.IPv4Address
) -> None:
    r = ArpRepr(op, sm, si, tm, ti)
    buf = bytearray(28)
    r.emit(ArpPacket(buf))
    assert ArpRepr.parse(ArpPacket(buf)) == r
    s = ARP(bytes(buf))
    assert (s.op, s.hwsrc, s.psrc, s.hwdst, s.pdst) == (op, str(sm), str(si), str(tm), str(ti))
    built = bytes(ARP(op=op, hwsrc=str(sm), psrc=str(si), hwdst=str(tm), pdst=str(ti)))
    assert ArpRepr.parse(ArpPacket(built)) == r


# --- IPv4 ------------------------------------------------------------------------------

IP_HDR = bytes.fromhex("450000730000400040110000c0a80001c0a800c7")
IP_HDR = IP_HDR[:10] + b"\xb8\x61" + IP_HDR[12:]


def test_ipv4_deconstruct() -> None:
    pkt = IP_HDR + bytes(0x73 - 20)
    p = Ipv4Packet.checked(pkt)
    assert p.version == 4 and p.header_len == 20 and p.total_len == 0x73
    assert p.dont_frag and not p.more_frags and p.frag_offset == 0
    assert p.ttl == 64 and p.protocol is IpProtocol.UDP and p.checksum == 0xB861
    assert str(p.src) == "192.168.0.1" and str(p.dst) == "192.168.0.199"
    assert p.verify_checksum()
    r = Ipv4Repr.parse(p)
    assert r.payload_len == 0x73 - 20 and r.dont_frag and r.ident == 0


def test_ipv4_construct() -> None:
    r = Ipv4Repr(
        src=ipaddress.IPv4Address("192.168.0.1"),
        dst=ipaddress.IPv4Address("192.168.0.199"),
        protocol=IpProtocol.UDP,
        payload_len=0x73 - 20,
        ttl=64,
        dont_frag=True,
    )
    buf = bytearray(20)
    r.emit(Ipv4Packet(buf))
    assert bytes(buf) == IP_HDR


def test_ipv4_options_skipped() -> None:
    # IHL 6: one 4-byte option (NOP NOP NOP EOL) before the payload.
    hdr = bytearray(b"\x46" + IP_HDR[1:20] + b"\x01\x01\x01\x00")
    hdr[2:4] = (24 + 4).to_bytes(2, "big")
    p = Ipv4Packet(hdr + b"abcd")
    p.fill_checksum()
    r = Ipv4Repr.parse(p)
    assert r.payload_len == 4 and bytes(p.payload) == b"abcd" and bytes(p.options) == b"\1\1\1\0"


@pytest.mark.parametrize(
    ("data", "field"),
    [
        (IP_HDR[:19], "length"),
        (b"\x44" + IP_HDR[1:], "ihl"),
        (b"\x4f" + IP_HDR[1:], "ihl"),
        (IP_HDR[:2] + b"\x00\x13" + IP_HDR[4:], "total_len"),
        (IP_HDR, "total_len"),  # says 0x73 bytes, has 20
    ],
)
def test_ipv4_impossible_lengths(data: bytes, field: str) -> None:
    with pytest.raises(WireError) as e:
        Ipv4Repr.parse(Ipv4Packet(data))
    assert e.value.field == field


def test_ipv4_bad_version_and_checksum() -> None:
    pkt = bytearray(IP_HDR + bytes(0x73 - 20))
    bad = bytearray(pkt)
    bad[11] ^= 1
    with pytest.raises(WireError) as e:
        Ipv4Repr.parse(Ipv4Packet(bad))
    assert e.value.field == "checksum"
    pkt[0] = 0x65
    with pytest.raises(WireError) as e:
        Ipv4Repr.parse(Ipv4Packet(pkt))
    assert e.value.field == "version"


ipv4_reprs = st.builds(
    Ipv4Repr,
    src=ipv4s,
    dst=ipv4s,
    protocol=st.integers(0, 255),
    payload_len=st.integers(0, 200),
    ttl=st.integers(0, 255),
    ident=st.integers(0, 0xFFFF),
    dont_frag=st.booleans(),
    more_frags=st.booleans(),
    frag_offset=st.integers(0, 0x1FFF).map(lambda x: x * 8),
    dscp_ecn=st.integers(0, 255),
)


@given(ipv4_reprs)
def test_ipv4_round_trip_and_scapy(r: Ipv4Repr) -> None:
    buf = bytearray(20 + r.payload_len)
    r.emit(Ipv4Packet(buf))
    assert Ipv4Repr.parse(Ipv4Packet(buf)) == r
    s = IP(bytes(buf))
    flags = (2 if r.dont_frag else 0) | (1 if r.more_frags else 0)
    assert (s.src, s.dst, s.proto, s.ttl, s.id, int(s.flags), s.frag * 8, s.tos, s.len) == (
        str(r.src),
        str(r.dst),
        r.protocol,
        r.ttl,
        r.ident,
        flags,
        r.frag_offset,
        r.dscp_ecn,
        20 + r.payload_len,
    )
    s.chksum = None
    assert bytes(s) == bytes(buf)  # scapy recomputes the same checksum


# --- ICMPv4 ----------------------------------------------------------------------------

ECHO = bytes.fromhex("0800000012340001") + b"ping"


def test_icmp_echo_deconstruct_and_construct() -> None:
    r = Icmpv4Repr.echo(request=True, ident=0x1234, seq=1, data=b"ping")
    buf = bytearray(r.buffer_len())
    r.emit(Icmpv4Packet(buf))
    p = Icmpv4Packet.checked(buf)
    assert p.msg_type is Icmpv4Type.ECHO_REQUEST and p.echo_ident == 0x1234 and p.echo_seq == 1
    assert p.verify_checksum() and bytes(buf[4:]) == ECHO[4:]
    assert Icmpv4Repr.parse(p) == r


def test_icmp_impossible_and_bad() -> None:
    with pytest.raises(WireError) as e:
        Icmpv4Repr.parse(Icmpv4Packet(ECHO[:7]))
    assert e.value.field == "length"
    with pytest.raises(WireError) as e:
        Icmpv4Repr.parse(Icmpv4Packet(ECHO))  # checksum 0 is wrong here
    assert e.value.field == "checksum"
    assert Icmpv4Packet(b"\x2a" + ECHO[1:]).msg_type == 42


# Types whose header scapy reads as 8 bytes (it expects more for e.g. timestamp, mask).
icmp_types = st.sampled_from([0, 3, 4, 5, 8, 11, 12, 42, 200])


@given(icmp_types, st.integers(0, 255), st.integers(0, 2**32 - 1), st.binary(max_size=64))
def test_icmp_round_trip_and_scapy(t: int, code: int, rest: int, data: bytes) -> None:
    r = Icmpv4Repr(t, code, rest, data)
    buf = bytearray(r.buffer_len())
    r.emit(Icmpv4Packet(buf))
    assert Icmpv4Repr.parse(Icmpv4Packet(buf)) == r
    s = ICMP(bytes(buf))
    assert (s.type, s.code) == (t, code)
    s.chksum = None
    assert bytes(s)[:4] == bytes(buf[:4])  # scapy's checksum agrees with ours


def test_icmp_scapy_echo_parsed() -> None:
    raw = bytes(ICMP(type=8, id=7, seq=9) / b"hello")
    r = Icmpv4Repr.parse(Icmpv4Packet(raw))
    assert (r.msg_type, r.echo_ident, r.echo_seq, r.data) == (8, 7, 9, b"hello")


# --- UDP -------------------------------------------------------------------------------


def test_udp_construct_and_deconstruct() -> None:
    r = UdpRepr(48896, 53, b"\xaa\x00\x00\xff")
    buf = bytearray(r.buffer_len())
    r.emit(UdpPacket(buf), A1, A2)
    p = UdpPacket.checked(buf)
    assert (p.src_port, p.dst_port, p.length) == (48896, 53, 12)
    assert p.verify_checksum(A1, A2)
    assert UdpRepr.parse(p, A1, A2) == r
    s = IP(bytes(IP(src=str(A1), dst=str(A2)) / UDP(bytes(buf))))
    assert s[UDP].chksum == p.checksum
    del s[UDP].chksum
    assert bytes(s[UDP]) == bytes(buf)


def test_udp_checksum_zero_means_none_on_v4_only() -> None:
    buf = bytearray(UdpRepr(1, 2, b"x").buffer_len())
    UdpRepr(1, 2, b"x").emit(UdpPacket(buf), A1, A2)
    buf[6:8] = b"\0\0"
    assert UdpPacket(buf).verify_checksum(A1, A2)
    v6 = ipaddress.IPv6Address("::1")
    assert not UdpPacket(buf).verify_checksum(v6, v6)


@pytest.mark.parametrize(
    ("data", "field"),
    [
        (b"\0\1\0\2\0\x08\0", "length"),
        (b"\0\1\0\2\0\x07\0\0", "length"),
        (b"\0\1\0\2\0\x09\0\0", "length"),
        (b"\0\1\0\0\0\x08\0\0", "dst_port"),
    ],
)
def test_udp_impossible(data: bytes, field: str) -> None:
    with pytest.raises(WireError) as e:
        UdpRepr.parse(UdpPacket(data), A1, A2, verify_checksum=False)
    assert e.value.field == field


@given(st.integers(0, 0xFFFF), st.integers(1, 0xFFFF), st.binary(max_size=300), ipv4s, ipv4s)
def test_udp_round_trip_and_scapy(
    sp: int, dp: int, data: bytes, src: ipaddress.IPv4Address, dst: ipaddress.IPv4Address
) -> None:
    r = UdpRepr(sp, dp, data)
    buf = bytearray(r.buffer_len())
    r.emit(UdpPacket(buf), src, dst)
    assert UdpRepr.parse(UdpPacket(buf), src, dst) == r
    built = IP(bytes(IP(src=str(src), dst=str(dst)) / UDP(sport=sp, dport=dp) / data))
    assert bytes(built[UDP]) == bytes(buf)
