"""IPv6, extension headers, ICMPv6, NDP and MLDv2: fixed bytes, impossible lengths,
RFC 8200 walking rules, round-trips, and scapy as the independent decoder."""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import given
from hypothesis import strategies as st
from scapy.layers.inet import UDP as SUDP
from scapy.layers.inet6 import (
    ICMPv6MLDMultAddrRec,
    ICMPv6MLReport2,
    ICMPv6ND_NA,
    ICMPv6ND_NS,
    ICMPv6ND_RA,
    ICMPv6ND_Redirect,
    ICMPv6ND_RS,
    ICMPv6NDOptMTU,
    ICMPv6NDOptPrefixInfo,
    ICMPv6NDOptSrcLLAddr,
    ICMPv6NDOptUnknown,
    IPv6,
    IPv6ExtHdrDestOpt,
    IPv6ExtHdrFragment,
    IPv6ExtHdrHopByHop,
    IPv6ExtHdrRouting,
    in6_chksum,
)
from scapy.packet import Raw

from miragekit.macaddr import MacAddr
from miragekit.wire import (
    FragmentRepr,
    Icmpv6Packet,
    Icmpv6Repr,
    Icmpv6Type,
    Ipv6Packet,
    Ipv6Repr,
    ParameterProblem,
    UdpPacket,
    UdpRepr,
    WireError,
)
from miragekit.wire import icmpv6 as ic
from miragekit.wire import ipv6 as w6

A1 = ipaddress.IPv6Address("fe80::1")
A2 = ipaddress.IPv6Address("fe80::ff:fe00:2")
M1 = MacAddr("02:00:00:00:00:01")
ipv6s = st.integers(0, 2**128 - 1).map(ipaddress.IPv6Address)

ECHO = bytes.fromhex(
    "60000000000c3a40fe800000000000000000000000000001fe80000000000000000000fffe000002"
    "800092ae1234000170696e67"
)
NS = bytes.fromhex(
    "6000000000203afffe800000000000000000000000000001ff0200000000000000000001ff000002"
    "87007b9700000000fe80000000000000000000fffe0000020101020000000001"
)


# --- the fixed header ------------------------------------------------------------------


def test_ipv6_deconstruct_and_construct() -> None:
    p = Ipv6Packet.checked(ECHO)
    r = Ipv6Repr.parse(p)
    assert r == Ipv6Repr(src=A1, dst=A2, next_header=58, payload_len=12, hop_limit=64)
    assert bytes(p.payload) == ECHO[40:]
    buf = bytearray(ECHO)
    buf[:40] = bytes(40)
    r.emit(Ipv6Packet(buf))
    assert bytes(buf) == ECHO


@pytest.mark.parametrize(("data", "field"), [(ECHO[:39], "length"), (ECHO[:51], "payload_len")])
def test_ipv6_impossible_lengths(data: bytes, field: str) -> None:
    with pytest.raises(WireError) as e:
        Ipv6Repr.parse(Ipv6Packet(data))
    assert e.value.field == field


def test_ipv6_bad_version() -> None:
    with pytest.raises(WireError) as e:
        Ipv6Repr.parse(Ipv6Packet(b"\x40" + ECHO[1:]))
    assert e.value.field == "version"


@given(
    ipv6s,
    ipv6s,
    st.integers(0, 255),
    st.integers(0, 200),
    st.integers(0, 255),
    st.integers(0, 255),
    st.integers(0, 0xFFFFF),
)
def test_ipv6_round_trip_and_scapy(
    src: ipaddress.IPv6Address, dst: ipaddress.IPv6Address, nh: int, pl: int, hl: int, tc: int,
    fl: int,
) -> None:  # fmt: skip
    r = Ipv6Repr(src, dst, nh, pl, hl, tc, fl)
    buf = bytearray(40 + pl)
    r.emit(Ipv6Packet(buf))
    assert Ipv6Repr.parse(Ipv6Packet(buf)) == r
    # Only the fixed header goes to scapy: the payload is zeros, which scapy's own
    # dissector of some next headers (43 with one byte) fails on; plen is still ours.
    s = IPv6(bytes(buf[:40]))
    got = (ipaddress.IPv6Address(s.src), ipaddress.IPv6Address(s.dst), s.nh, s.plen, s.hlim)
    assert got == (src, dst, nh, pl, hl) and (s.tc, s.fl) == (tc, fl)


def test_helpers_eui64_solicited_node_multicast_mac() -> None:
    assert w6.link_local(M1.packed) == ipaddress.IPv6Address("fe80::ff:fe00:1")
    mac = bytes.fromhex("525400123456")
    assert w6.link_local(mac) == ipaddress.IPv6Address("fe80::5054:ff:fe12:3456")
    assert w6.solicited_node(A2) == ipaddress.IPv6Address("ff02::1:ff00:2")
    assert w6.multicast_mac(w6.solicited_node(A2).packed) == bytes.fromhex("3333ff000002")
    with pytest.raises(ValueError, match="mac"):
        w6.interface_id(b"\0" * 5)


# --- extension headers ---------------------------------------------------------------------


def chain(pkt: object, *, mcast: bool = False) -> w6.HeaderChain:
    return w6.walk_chain(bytes(pkt), multicast_dst=mcast)  # type: ignore[call-overload]


def test_walk_plain_and_through_options_and_routing() -> None:
    assert chain(IPv6() / SUDP()) == w6.HeaderChain(17, 40, 6)
    p = (
        IPv6()
        / IPv6ExtHdrHopByHop(options=[])
        / IPv6ExtHdrDestOpt()
        / IPv6ExtHdrRouting(segleft=0, addresses=["::1"])
        / SUDP()
    )
    c = chain(p)
    assert c.next_header == 17 and c.offset == 40 + 8 + 8 + 24 and c.nh_pos == 40 + 16


def test_walk_stops_at_fragment_and_parses_it() -> None:
    p = bytes(IPv6() / IPv6ExtHdrFragment(offset=3, m=1, id=0xDEADBEEF, nh=17) / (b"x" * 8))
    c = w6.walk_chain(p, multicast_dst=False)
    assert (c.next_header, c.offset, c.nh_pos) == (44, 40, 6)
    f = FragmentRepr.parse(p[40:])
    assert f == FragmentRepr(next_header=17, offset=24, more=True, ident=0xDEADBEEF)
    out = bytearray(8)
    f.emit(out)
    assert bytes(out) == p[40:48]
    c2 = w6.walk_chain(p, multicast_dst=False, next_header=17, offset=48, nh_pos=40)
    assert (c2.next_header, c2.offset) == (17, 48)


def test_walk_router_alert_and_padding() -> None:
    hbh = w6.options_header(58, [w6.Ipv6Option(5, b"\0\0")])
    assert len(hbh) == 8
    pkt = bytes(IPv6(nh=0, plen=8)) + hbh
    c = w6.walk_chain(pkt, multicast_dst=True)
    assert c.router_alert and c.next_header == 58 and c.offset == 48
    assert IPv6(pkt)[IPv6ExtHdrHopByHop].options[0].otype == 5  # scapy reads our header


@pytest.mark.parametrize(
    ("action", "mcast", "report"),
    [(1, False, False), (2, False, True), (2, True, True), (3, False, True), (3, True, False)],
)
def test_walk_unknown_option_actions(action: int, mcast: bool, report: bool) -> None:
    opt = w6.Ipv6Option((action << 6) | 0x1E, b"ab")
    pkt = bytes(IPv6(nh=60, plen=8)) + w6.options_header(17, [opt])
    with pytest.raises(ParameterProblem) as e:
        w6.walk_chain(pkt, multicast_dst=mcast)
    assert (e.value.code, e.value.pointer, e.value.report) == (2, 42, report)


def test_walk_unknown_option_skipped_with_action_0() -> None:
    pkt = bytes(IPv6(nh=60, plen=8)) + w6.options_header(17, [w6.Ipv6Option(0x1E, b"ab")])
    assert w6.walk_chain(pkt, multicast_dst=False).next_header == 17


def test_walk_routing_with_segments_left_is_a_parameter_problem() -> None:
    p = IPv6() / IPv6ExtHdrRouting(segleft=1, addresses=["::1"]) / SUDP()
    with pytest.raises(ParameterProblem) as e:
        chain(p)
    assert (e.value.code, e.value.pointer, e.value.field) == (0, 42, "routing_type")


def test_walk_hop_by_hop_not_first() -> None:
    p = IPv6() / IPv6ExtHdrDestOpt() / IPv6ExtHdrHopByHop() / SUDP()
    with pytest.raises(ParameterProblem) as e:
        chain(p)
    assert (e.value.code, e.value.pointer) == (1, 40)


def test_walk_truncated_and_too_long() -> None:
    p = bytes(IPv6() / IPv6ExtHdrDestOpt() / SUDP())
    with pytest.raises(WireError) as e:
        w6.walk_chain(p[:45], multicast_dst=False)
    assert e.value.field == "ext_len"
    many = bytes(IPv6(nh=60)) + b"".join(w6.options_header(60, []) for _ in range(9))
    with pytest.raises(WireError) as e:
        w6.walk_chain(many, multicast_dst=False)
    assert e.value.field == "next_header"
    bad = bytes(IPv6(nh=60)) + bytes((17, 0, 1, 9)) + b"\0\0\0\0"  # PadN longer than header
    with pytest.raises(WireError) as e:
        w6.walk_chain(bad, multicast_dst=False)
    assert e.value.field == "option_len"


@given(st.binary(max_size=120), st.booleans())
def test_walk_never_fails_otherwise(tail: bytes, mcast: bool) -> None:
    pkt = bytes(IPv6(nh=0)) + tail
    try:
        c = w6.walk_chain(pkt, multicast_dst=mcast)
    except WireError:
        return
    assert 40 <= c.offset <= len(pkt) and c.nh_pos < c.offset


# --- ICMPv6 --------------------------------------------------------------------------------


def test_icmpv6_echo_deconstruct_and_construct() -> None:
    p = Icmpv6Packet.checked(ECHO[40:])
    r = Icmpv6Repr.parse(p, A1, A2)
    assert r == Icmpv6Repr.echo(request=True, ident=0x1234, seq=1, data=b"ping")
    assert (r.echo_ident, r.echo_seq) == (0x1234, 1)
    buf = bytearray(r.buffer_len())
    r.emit(Icmpv6Packet(buf), A1, A2)
    assert bytes(buf) == ECHO[40:]


def test_icmpv6_impossible_and_bad_checksum() -> None:
    with pytest.raises(WireError) as e:
        Icmpv6Repr.parse(Icmpv6Packet(ECHO[40:47]), A1, A2)
    assert e.value.field == "length"
    with pytest.raises(WireError) as e:
        Icmpv6Repr.parse(Icmpv6Packet(ECHO[40:]), A2, A1 + 1)  # another pseudo-header
    assert e.value.field == "checksum"


def test_icmpv6_error_quote_bounded() -> None:
    r = Icmpv6Repr.error(1, 4, bytes(3000))
    assert r.buffer_len() + 40 == 1280 and r.msg_type is Icmpv6Type.DEST_UNREACHABLE
    with pytest.raises(ValueError, match="msg_type"):
        Icmpv6Repr.error(128, 0, b"")


@given(st.integers(0, 255), st.integers(0, 255), st.integers(0, 2**32 - 1), st.binary(max_size=64))
def test_icmpv6_round_trip_and_scapy_checksum(t: int, c: int, rest: int, data: bytes) -> None:
    r = Icmpv6Repr(t, c, rest, data)
    buf = bytearray(r.buffer_len())
    r.emit(Icmpv6Packet(buf), A1, A2)
    assert Icmpv6Repr.parse(Icmpv6Packet(buf), A1, A2) == r
    zeroed = bytes(buf[:2]) + b"\0\0" + bytes(buf[4:])
    assert in6_chksum(58, IPv6(src=str(A1), dst=str(A2)), zeroed) == Icmpv6Packet(buf).checksum  # type: ignore[no-untyped-call]


def test_udp_over_ipv6_checksum_matches_scapy() -> None:
    r = UdpRepr(1234, 7, b"hello")
    buf = bytearray(r.buffer_len())
    r.emit(UdpPacket(buf), A1, A2)
    s = IPv6(bytes(IPv6(src=str(A1), dst=str(A2)) / SUDP(sport=1234, dport=7) / b"hello"))
    assert bytes(s[SUDP]) == bytes(buf)
    z = bytearray(buf)
    z[6:8] = b"\0\0"
    assert not UdpPacket(z).verify_checksum(A1, A2)  # no zero checksum over IPv6


# --- NDP -------------------------------------------------------------------------------------


def test_ns_deconstruct_and_construct() -> None:
    icmp = Icmpv6Repr.parse(Icmpv6Packet(NS[40:]), A1, ipaddress.IPv6Address("ff02::1:ff00:2"))
    ns = ic.parse_ndp(icmp)
    assert ns == ic.NeighborSolicit(A2, (ic.LinkAddrOption(True, M1),))
    assert ns.to_icmp() == icmp
    assert ic.link_addr(ns.options, source=True) == M1
    assert ic.link_addr(ns.options, source=False) is None


def ndp_via_scapy(pkt: object) -> ic.NdpRepr:
    raw = bytes(pkt)  # type: ignore[call-overload]
    return ic.parse_ndp(Icmpv6Repr.parse(Icmpv6Packet(raw), A1, A2, verify_checksum=False))


def test_ndp_messages_from_scapy() -> None:
    ra = ndp_via_scapy(
        ICMPv6ND_RA(chlim=64, M=1, O=0, routerlifetime=1800, reachabletime=30000, retranstimer=1000)
        / ICMPv6NDOptSrcLLAddr(lladdr=str(M1))
        / ICMPv6NDOptMTU(mtu=1400)
        / ICMPv6NDOptPrefixInfo(
            prefix="2001:db8:1::",
            prefixlen=64,
            L=1,
            A=1,
            validlifetime=86400,
            preferredlifetime=14400,
        )
        / ICMPv6NDOptUnknown(type=99, len=1, data=b"abcdef")
    )
    pi = ic.PrefixInfo(ipaddress.IPv6Address("2001:db8:1::"), 64, True, True, 86400, 14400)
    assert ra == ic.RouterAdvert(
        64, True, False, 1800, 30000, 1000,
        (ic.LinkAddrOption(True, M1), ic.MtuOption(1400), pi, ic.UnknownOption(99, b"abcdef")),
    )  # fmt: skip
    assert pi.network == ipaddress.IPv6Network("2001:db8:1::/64")
    assert ndp_via_scapy(ICMPv6ND_RS()) == ic.RouterSolicit()
    na = ndp_via_scapy(ICMPv6ND_NA(R=0, S=1, O=1, tgt=str(A2)))
    assert na == ic.NeighborAdvert(False, True, True, A2)
    rd = ndp_via_scapy(ICMPv6ND_Redirect(tgt=str(A1), dst="2001:db8::9"))
    assert rd == ic.Redirect(A1, ipaddress.IPv6Address("2001:db8::9"))


def emitted(msg: ic.NdpRepr | ic.Mldv2Report) -> bytes:
    r = msg.to_icmp()
    buf = bytearray(r.buffer_len())
    r.emit(Icmpv6Packet(buf), A1, A2)
    return bytes(buf)


def scapy_of(raw: bytes) -> object:
    return IPv6(bytes(IPv6(src=str(A1), dst=str(A2), nh=58) / Raw(raw))).payload


def test_ndp_messages_to_scapy() -> None:
    pi = ic.PrefixInfo(ipaddress.IPv6Address("2001:db8::"), 64, True, False, 100, 50)
    ra = scapy_of(emitted(ic.RouterAdvert(255, False, True, 600, 0, 0, (pi, ic.MtuOption(1500)))))
    assert isinstance(ra, ICMPv6ND_RA)
    assert (ra.chlim, ra.M, ra.O, ra.routerlifetime) == (255, 0, 1, 600)
    p = ra[ICMPv6NDOptPrefixInfo]
    assert (p.prefix, p.prefixlen, p.L, p.A, p.validlifetime) == ("2001:db8::", 64, 1, 0, 100)
    assert ra[ICMPv6NDOptMTU].mtu == 1500
    na = scapy_of(
        emitted(ic.NeighborAdvert(True, False, True, A2, (ic.LinkAddrOption(False, M1),)))
    )
    assert isinstance(na, ICMPv6ND_NA)
    assert (na.R, na.S, na.O, na.tgt, na.lladdr) == (1, 0, 1, str(A2), str(M1))
    ns = scapy_of(emitted(ic.NeighborSolicit(A2)))
    assert isinstance(ns, ICMPv6ND_NS) and ns.tgt == str(A2)
    rd = scapy_of(emitted(ic.Redirect(A1, A2, (ic.RedirectedHeader(b"q" * 8),))))
    assert isinstance(rd, ICMPv6ND_Redirect)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (bytes(16) + b"\x01\x00" + bytes(6), "option_len"),  # length 0
        (bytes(16) + b"\x01\x02" + bytes(6), "option_len"),  # runs past the end
        (bytes(16) + b"\x03\x01" + bytes(6), "prefix_info"),
        (bytes(12), "length"),
        (b"\xff" + bytes(15), "target"),
    ],
)
def test_ndp_malformed(body: bytes, field: str) -> None:
    with pytest.raises(WireError) as e:
        ic.parse_ndp(Icmpv6Repr(135, 0, 0, body))
    assert e.value.field == field
    with pytest.raises(WireError) as e:
        ic.parse_ndp(Icmpv6Repr(135, 1, 0, bytes(16)))
    assert e.value.field == "code"


@given(st.lists(st.tuples(st.integers(1, 6), ipv6s), max_size=4))
def test_mldv2_report_round_trip_and_scapy(recs: list[tuple[int, ipaddress.IPv6Address]]) -> None:
    rep = ic.Mldv2Report(tuple(ic.McastRecord(t, g) for t, g in recs))
    raw = emitted(rep)
    assert ic.Mldv2Report.parse(Icmpv6Repr.parse(Icmpv6Packet(raw), A1, A2)) == rep
    s = scapy_of(raw)
    assert isinstance(s, ICMPv6MLReport2) and s.records_number == len(recs)
    got = []
    r = s.records[0] if recs else None
    while isinstance(r, ICMPv6MLDMultAddrRec):  # scapy chains records as payloads
        got.append((r.rtype, ipaddress.IPv6Address(r.dst)))
        r = r.payload
    assert got == recs


def test_mldv2_report_from_scapy_and_query() -> None:
    raw = bytes(ICMPv6MLReport2(records=[ICMPv6MLDMultAddrRec(rtype=4, dst="ff02::1:ff00:2")]))
    rep = ic.Mldv2Report.parse(Icmpv6Repr.parse(Icmpv6Packet(raw), A1, A2, verify_checksum=False))
    assert rep.records == (ic.McastRecord(4, ipaddress.IPv6Address("ff02::1:ff00:2")),)
    q = ic.MldQuery.parse(Icmpv6Repr(130, 0, 10000 << 16, bytes(16)))
    assert q == ic.MldQuery(10000, ipaddress.IPv6Address("::"))
    with pytest.raises(WireError):
        ic.MldQuery.parse(Icmpv6Repr(130, 0, 0, bytes(4)))
