"""Neighbour discovery, DAD, SLAAC, ICMPv6, MLD, extension headers, reassembly and UDP over
IPv6 without a kernel: the sans-I/O NDP core fed with ``now``, and the whole IPv6 stack on
an in-memory link with scapy as the peer's decoder."""

from __future__ import annotations

import asyncio
import ipaddress
import random
from collections.abc import Coroutine
from typing import Any, TypeVar

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scapy.layers.inet import UDP
from scapy.layers.inet6 import (
    HBHOptUnknown,
    ICMPv6DestUnreach,
    ICMPv6EchoReply,
    ICMPv6EchoRequest,
    ICMPv6MLDMultAddrRec,
    ICMPv6MLQuery2,
    ICMPv6MLReport2,
    ICMPv6ND_NA,
    ICMPv6ND_NS,
    ICMPv6ND_RA,
    ICMPv6ND_Redirect,
    ICMPv6ND_RS,
    ICMPv6NDOptDstLLAddr,
    ICMPv6NDOptPrefixInfo,
    ICMPv6NDOptSrcLLAddr,
    ICMPv6PacketTooBig,
    ICMPv6ParamProblem,
    ICMPv6TimeExceeded,
    IPv6,
    IPv6ExtHdrDestOpt,
    IPv6ExtHdrFragment,
    IPv6ExtHdrHopByHop,
    IPv6ExtHdrRouting,
    defragment6,
    fragment6,
)
from scapy.layers.l2 import Ether
from tests.fuzzkit import fix_frame, valid_sum_frame
from tests.ipstack.memlink import OUR_MAC, PEER_MAC, MemLink

from miragekit.macaddr import MacAddr
from miragekit.net import UDP as StackUDP
from miragekit.net import Ethif, IPv6Stack, NdpConfig, ReassemblyConfig
from miragekit.net import IPv6 as StackIPv6
from miragekit.net._ndp import Ndp, State
from miragekit.result import Ok
from miragekit.wire import icmpv6 as ic

T = TypeVar("T")
A = ipaddress.IPv6Address
US_LL = A("fe80::ff:fe00:2")  # from OUR_MAC
PEER_LL = A("fe80::ff:fe00:1")  # from PEER_MAC
US6 = A("fd00::2")
PEER6 = A("fd00::1")
FAST = NdpConfig(max_dad_delay=0.01, retrans_timer=0.05, rtr_solicitations=0)
"""Quick DAD, and no router solicitations to stray into what a test reads off the link."""


def run(coro: Coroutine[Any, Any, T]) -> T:
    async def bounded() -> T:
        return await asyncio.wait_for(coro, 20)

    return asyncio.run(bounded())


# --- NDP, sans-I/O -------------------------------------------------------------------------


class Wire:
    def __init__(self) -> None:
        self.out: list[Any] = []

    def __call__(self, bufs: Any) -> None:
        self.out.append(Ether(b"".join(bytes(b) for b in bufs)))

    def take(self) -> list[Any]:
        out, self.out = self.out, []
        return out


def make_ndp(**cfg: Any) -> tuple[Ndp, Wire]:
    wire = Wire()
    ndp = Ndp(
        MacAddr(OUR_MAC).packed,
        wire,
        config=NdpConfig(dad_transmits=0, rtr_solicitations=0, **cfg),
        rng=random.Random(1),
    )
    ndp.reachable = 30.0  # no randomness in the tests
    ndp.add_address(US6.packed, 64, 0.0)
    ndp.prefixes[ipaddress.IPv6Network("fd00::/64")] = float("inf")
    return ndp, wire


def frame_to(dst: A, payload: bytes = b"data") -> bytearray:
    pkt = Ether(src=OUR_MAC, dst="00:00:00:00:00:00") / IPv6(src=str(US6), dst=str(dst))
    return bytearray(bytes(pkt / UDP(sport=1, dport=2) / payload))


def na(target: A, *, solicited: bool = True, override: bool = True, mac: str = PEER_MAC) -> Any:
    return ic.NeighborAdvert(
        False, solicited, override, target, (ic.LinkAddrOption(False, MacAddr(mac)),)
    )


def test_resolution_queue_and_reachable() -> None:
    ndp, wire = make_ndp()
    ndp.send(PEER6.packed, [frame_to(PEER6, b"one")], 0.0)
    ndp.send(PEER6.packed, [frame_to(PEER6, b"two")], 0.1)
    (ns,) = wire.take()
    assert ns.dst == "33:33:ff:00:00:01" and ns[IPv6].dst == "ff02::1:ff00:1"
    assert ns[IPv6].hlim == 255 and ns[ICMPv6ND_NS].tgt == str(PEER6)
    assert ns[ICMPv6NDOptSrcLLAddr].lladdr == OUR_MAC and ns[IPv6].src == str(US6)
    assert ndp.state(PEER6.packed) == State.INCOMPLETE
    ndp.input(PEER6.packed, US6.packed, 255, na(PEER6), 0.2)
    out = wire.take()
    assert [bytes(p[UDP].payload) for p in out] == [b"one", b"two"]
    assert all(p.dst == PEER_MAC for p in out)
    assert ndp.state(PEER6.packed) == State.REACHABLE and ndp.counters.resolved == 1
    ndp.send(PEER6.packed, [frame_to(PEER6)], 1.0)
    (p,) = wire.take()
    assert p.dst == PEER_MAC


def test_resolution_retries_then_gives_up() -> None:
    ndp, wire = make_ndp(retrans_timer=1.0, max_multicast_solicit=3)
    ndp.send(PEER6.packed, [frame_to(PEER6)], 0.0)
    for t in (1.0, 2.0, 3.0):
        assert ndp.poll_at() == t
        ndp.handle_timer(t)
    assert len(wire.take()) == 3  # three solicitations, then nothing
    assert ndp.state(PEER6.packed) is None
    assert ndp.counters.resolution_failed == 1 and ndp.counters.dropped_unresolved == 1


def test_queue_and_cache_bounds() -> None:
    ndp, _wire = make_ndp(queue_packets=2, max_entries=4, max_incomplete=3)
    for _ in range(3):
        ndp.send(PEER6.packed, [frame_to(PEER6)], 0.0)
    assert ndp.counters.queued == 2 and ndp.counters.dropped_queue_full == 1
    for i in range(2, 5):
        ndp.send(A(f"fd00::{i}").packed, [frame_to(A(f"fd00::{i}"))], 0.0)
    assert ndp.counters.dropped_queue_full == 2  # max_incomplete
    for i in range(10, 20):  # learnt from solicitations: the cache stays bounded
        ndp.input(A(f"fd00::{i}").packed, US6.packed, 255, ns_from(f"02:00:00:00:01:{i:02x}"), 0.0)
    assert len(ndp.cache) == 4 and ndp.counters.evicted > 0


def ns_from(mac: str, target: A = US6) -> ic.NeighborSolicit:
    return ic.NeighborSolicit(target, (ic.LinkAddrOption(True, MacAddr(mac)),))


def test_nud_reachable_stale_delay_probe_unreachable() -> None:
    """The neighbour goes silent: REACHABLE -> STALE -> (use) DELAY -> PROBE -> gone."""
    ndp, wire = make_ndp(retrans_timer=1.0, delay_first_probe=5.0, max_unicast_solicit=3)
    ndp.send(PEER6.packed, [frame_to(PEER6)], 0.0)
    ndp.input(PEER6.packed, US6.packed, 255, na(PEER6), 0.0)
    wire.take()
    ndp.handle_timer(30.0)
    assert ndp.state(PEER6.packed) == State.STALE
    ndp.send(PEER6.packed, [frame_to(PEER6)], 40.0)
    assert ndp.state(PEER6.packed) == State.DELAY and len(wire.take()) == 1  # sent at once
    ndp.handle_timer(45.0)
    assert ndp.state(PEER6.packed) == State.PROBE
    (probe,) = wire.take()
    assert probe.dst == PEER_MAC and probe[IPv6].dst == str(PEER6)  # unicast
    ndp.handle_timer(46.0)
    ndp.handle_timer(47.0)
    assert len(wire.take()) == 2
    ndp.handle_timer(48.0)
    assert ndp.state(PEER6.packed) is None and ndp.counters.unreachable == 1
    assert wire.take() == []
    # A new packet starts over with a multicast solicitation.
    ndp.send(PEER6.packed, [frame_to(PEER6)], 49.0)
    (ns,) = wire.take()
    assert ns[IPv6].dst == "ff02::1:ff00:1"


def test_probe_answered_and_upper_layer_confirmation() -> None:
    ndp, wire = make_ndp()
    ndp.input(PEER6.packed, US6.packed, 255, ns_from(PEER_MAC), 0.0)
    (reply,) = wire.take()
    assert reply.dst == PEER_MAC and reply[ICMPv6ND_NA].S == 1 and reply[ICMPv6ND_NA].O == 1
    assert reply[ICMPv6NDOptDstLLAddr].lladdr == OUR_MAC and reply[IPv6].src == str(US6)
    assert ndp.state(PEER6.packed) == State.STALE
    ndp.send(PEER6.packed, [frame_to(PEER6)], 1.0)
    ndp.handle_timer(6.0)
    assert ndp.state(PEER6.packed) == State.PROBE
    ndp.input(PEER6.packed, US6.packed, 255, na(PEER6), 6.5)
    assert ndp.state(PEER6.packed) == State.REACHABLE
    ndp.handle_timer(40.0)
    assert ndp.state(PEER6.packed) == State.STALE
    ndp.confirm_reachable(PEER6.packed, 41.0)
    assert ndp.state(PEER6.packed) == State.REACHABLE


def test_advertisement_override_rules() -> None:
    ndp, _wire = make_ndp()
    ndp.send(PEER6.packed, [frame_to(PEER6)], 0.0)
    ndp.input(PEER6.packed, US6.packed, 255, na(PEER6), 0.0)
    other = "02:00:00:00:00:99"
    ndp.input(
        PEER6.packed, US6.packed, 255, na(PEER6, solicited=False, override=False, mac=other), 1.0
    )
    assert ndp.lookup(PEER6.packed) == MacAddr(PEER_MAC).packed  # kept, but now doubtful
    assert ndp.state(PEER6.packed) == State.STALE
    ndp.input(PEER6.packed, US6.packed, 255, na(PEER6, solicited=False, mac=other), 2.0)
    assert ndp.lookup(PEER6.packed) == MacAddr(other).packed
    ndp.input(PEER6.packed, US6.packed, 254, na(PEER6, mac=PEER_MAC), 3.0)  # hop limit
    assert ndp.lookup(PEER6.packed) == MacAddr(other).packed and ndp.counters.rx_invalid == 1
    ndp.input(PEER6.packed, A("ff02::1").packed, 255, na(PEER6), 3.0)  # solicited to multicast
    assert ndp.counters.rx_invalid == 2


def test_dad_sans_io() -> None:
    wire = Wire()
    ndp = Ndp(
        MacAddr(OUR_MAC).packed,
        wire,
        config=NdpConfig(max_dad_delay=0.0, dad_transmits=2),
        rng=random.Random(1),
    )
    ndp.add_address(US6.packed, 64, 0.0)
    assert not ndp.is_ours(US6.packed)
    ndp.handle_timer(0.0)
    ndp.handle_timer(1.0)
    probes = wire.take()
    assert len(probes) == 2
    for p in probes:
        assert p[IPv6].src == "::" and p[IPv6].dst == "ff02::1:ff00:2"
        assert p[ICMPv6ND_NS].tgt == str(US6) and ICMPv6NDOptSrcLLAddr not in p
    ndp.handle_timer(2.0)
    assert ndp.is_ours(US6.packed) and ndp.counters.dad_succeeded == 1
    # Another node's DAD probe for an address of ours: defend it (to all nodes).
    ndp.input(bytes(16), A("ff02::1:ff00:2").packed, 255, ic.NeighborSolicit(US6), 3.0)
    (na_) = wire.take()[0]
    assert na_[IPv6].dst == "ff02::1" and na_[ICMPv6ND_NA].S == 0
    # A DAD probe with a source link-layer option is invalid.
    ndp.input(bytes(16), A("ff02::1:ff00:2").packed, 255, ns_from(PEER_MAC), 3.0)
    assert ndp.counters.rx_invalid == 1 and wire.take() == []


@pytest.mark.parametrize("how", ["advert", "probe"])
def test_dad_conflict_sans_io(how: str) -> None:
    ndp, _ = make_ndp()
    ndp.config.dad_transmits = 1
    ndp.add_address(PEER6.packed, 64, 0.0)
    if how == "advert":
        ndp.input(PEER6.packed, A("ff02::1").packed, 255, na(PEER6, solicited=False), 0.5)
    else:  # someone else is probing for it at the same time
        ndp.input(bytes(16), A("ff02::1:ff00:1").packed, 255, ic.NeighborSolicit(PEER6), 0.5)
    assert ndp.counters.dad_failed == 1 and PEER6.packed not in ndp.addresses
    assert not ndp.add_address(PEER6.packed, 64, 1.0)  # remembered as a duplicate


def ra(*options: Any, lifetime: int = 1800, **kw: Any) -> ic.RouterAdvert:
    return ic.RouterAdvert(
        64, False, False, lifetime, kw.get("reach", 0), kw.get("retrans", 0), options
    )


def pio(prefix: str, valid: int = 86400, preferred: int = 14400, **kw: Any) -> ic.PrefixInfo:
    return ic.PrefixInfo(
        A(prefix), kw.get("plen", 64), kw.get("L", True), kw.get("A", True), valid, preferred
    )


def test_router_advertisement_routers_prefixes_and_slaac() -> None:
    ndp, _ = make_ndp()
    r = PEER_LL.packed
    sll = ic.LinkAddrOption(True, MacAddr(PEER_MAC))
    ndp.input(
        r,
        A("ff02::1").packed,
        255,
        ra(sll, pio("2001:db8:1::"), ic.MtuOption(1400), reach=10000, retrans=500),
        0.0,
    )
    mine = A("2001:db8:1::ff:fe00:2").packed
    assert mine in ndp.addresses and ndp.counters.addresses_autoconfigured == 1
    assert ndp.routers == {r: 1800.0} and ndp.default_router(1.0) == r
    assert ndp.lookup(r) == MacAddr(PEER_MAC).packed and ndp.cache[r].router
    assert ndp.on_link(A("2001:db8:1::7").packed, 1.0)
    assert ndp.next_hop(A("2001:db8:9::1").packed, 1.0) == r
    assert ndp.mtu == 1400 and ndp.retrans == 0.5 and ndp.base_reachable == 10.0
    assert ndp.select_source(A("2001:db8:9::1").packed, 1.0) == mine
    # The two-hour rule: a short valid lifetime cannot cut a long one below two hours.
    ndp.input(r, A("ff02::1").packed, 255, ra(pio("2001:db8:1::", valid=60, preferred=30)), 10.0)
    assert ndp.addresses[mine].valid_until == 10.0 + 7200
    assert ndp.addresses[mine].preferred_until == 40.0
    ndp.handle_timer(41.0)
    assert ndp.addresses[mine].deprecated(41.0)
    ndp.handle_timer(7210.0)
    assert mine not in ndp.addresses
    # Ignored: not autonomous, a /48, preferred > valid, link-local, from a global source.
    for p in (
        pio("2001:db8:2::", A=False),
        pio("2001:db8:3::", plen=48),
        pio("2001:db8:4::", valid=10, preferred=20),
        pio("fe80::"),
    ):
        ndp.input(r, A("ff02::1").packed, 255, ra(p), 7300.0)
    assert ndp.counters.addresses_autoconfigured == 1
    ndp.input(A("2001:db8::1").packed, A("ff02::1").packed, 255, ra(pio("2001:db8:5::")), 7300.0)
    assert ndp.counters.rx_invalid == 1
    # Lifetime 0: no longer a default router.
    ndp.input(r, A("ff02::1").packed, 255, ra(lifetime=0), 7400.0)
    assert (
        ndp.default_router(7400.0) is None
        and ndp.next_hop(A("2001:db8:9::1").packed, 7400.0) is None
    )


def test_redirect() -> None:
    ndp, _ = make_ndp()
    r = PEER_LL.packed
    ndp.input(r, A("ff02::1").packed, 255, ra(), 0.0)
    dest = A("2001:db8:9::1")
    better = A("fe80::99")
    rd = ic.Redirect(better, dest, (ic.LinkAddrOption(False, MacAddr("02:00:00:00:00:99")),))
    ndp.input(A("fe80::5").packed, US6.packed, 255, rd, 1.0)  # not our first hop: ignored
    assert ndp.next_hop(dest.packed, 1.0) == r
    ndp.input(r, US6.packed, 255, rd, 1.0)
    assert ndp.next_hop(dest.packed, 1.0) == better.packed
    assert ndp.lookup(better.packed) == MacAddr("02:00:00:00:00:99").packed


# --- the whole stack on an in-memory link ------------------------------------------------------


async def make_stack(**kw: Any) -> tuple[IPv6Stack, MemLink]:
    link = MemLink()
    stack = await IPv6Stack.connect(link, rng=random.Random(1), ndp=kw.pop("ndp", FAST), **kw)
    return stack, link


def inject(stack: IPv6Stack, pkt: Any) -> None:
    stack.receive_frame(memoryview(bytearray(bytes(pkt))))


def from_peer(src: A = PEER_LL, dst: A = US_LL, **kw: Any) -> Any:
    return Ether(src=PEER_MAC, dst=OUR_MAC) / IPv6(src=str(src), dst=str(dst), **kw)


async def ready(stack: IPv6Stack, link: MemLink) -> None:
    assert await stack.wait_ready(timeout=5)
    link.sent.clear()
    # The peer is known (as if it had solicited us), so replies go out at once.
    now = asyncio.get_running_loop().time()
    stack.ipv6.ndp.input(PEER_LL.packed, US_LL.packed, 255, ns_from(PEER_MAC, US_LL), now)
    link.sent.clear()


def mld_groups(p: Any) -> list[str]:
    """The groups of an MLDv2 report (scapy chains the records as payloads)."""
    out, r = [], p[ICMPv6MLReport2].records[0]
    while isinstance(r, ICMPv6MLDMultAddrRec):
        out.append(r.dst)
        r = r.payload
    return out


def test_stack_dad_mld_and_router_solicitation() -> None:
    async def main() -> None:
        ndp = NdpConfig(max_dad_delay=0.01, retrans_timer=0.05, max_rtr_solicitation_delay=0.01)
        stack, link = await make_stack(cidrs=["fd00::2/64"], ndp=ndp)
        early = link.take()
        reports = [p for p in early if ICMPv6MLReport2 in p]
        assert reports, early
        rep = reports[0]
        assert rep.dst == "33:33:00:00:00:16" and rep[IPv6].hlim == 1 and rep[IPv6].src == "::"
        assert rep[IPv6ExtHdrHopByHop].options[0].otype == 5  # router alert
        groups = {g for p in reports for g in mld_groups(p)}
        assert "ff02::1:ff00:2" in groups
        assert await stack.wait_ready(timeout=5)
        later = link.take()
        dad = [p for p in later if ICMPv6ND_NS in p]
        assert {p[ICMPv6ND_NS].tgt for p in dad} == {str(US_LL), "fd00::2"}
        assert all(p[IPv6].src == "::" for p in dad)
        await asyncio.sleep(0.1)
        rs = [p for p in later + link.take() if ICMPv6ND_RS in p]
        assert rs and rs[0][IPv6].src == str(US_LL) and rs[0][IPv6].dst == "ff02::2"
        assert stack.ipv6.get_ip() == [US_LL, A("fd00::2")]
        assert stack.ipv6.groups() == {A("ff02::1"), A("ff02::1:ff00:2")}
        # A query is answered with the current state.
        inject(stack, from_peer(dst=A("ff02::1"), hlim=1) / ICMPv6MLQuery2())
        (answer,) = link.take()
        assert answer[ICMPv6MLReport2].records[0].rtype == ic.MODE_IS_EXCLUDE
        stack.ipv6.join(A("ff05::1:3"))
        (joined,) = link.take()
        assert joined[ICMPv6MLReport2].records[0].dst == "ff05::1:3"
        await asyncio.sleep(1.1)  # the report is sent a second time (RFC 3810 6.1)
        again = [p for p in link.take() if ICMPv6MLReport2 in p]
        assert "ff05::1:3" in {g for p in again for g in mld_groups(p)}
        assert stack.ipv6.icmp_counters.tx_mld_reports >= 4
        await stack.disconnect()

    run(main())


def test_stack_dad_conflict_in_memory() -> None:
    async def main() -> None:
        stack, _link = await make_stack(cidrs=["fd00::2/64"])
        # Another node answers our DAD probe for fd00::2.
        inject(
            stack,
            from_peer(PEER_LL, A("ff02::1"), hlim=255)
            / ICMPv6ND_NA(tgt="fd00::2", O=1, S=0)
            / ICMPv6NDOptDstLLAddr(lladdr=PEER_MAC),
        )
        assert await stack.wait_ready(timeout=5)
        assert stack.ipv6.ndp.counters.dad_failed == 1
        assert stack.ipv6.get_ip() == [US_LL]
        # A packet to it is no longer ours.
        inject(stack, from_peer(PEER6, US6) / ICMPv6EchoRequest())
        assert stack.ipv6.counters.rx_not_for_us == 1
        await stack.disconnect()

    run(main())


def test_stack_echo_to_link_local_multicast_and_tentative() -> None:
    async def main() -> None:
        stack, link = await make_stack(ndp=NdpConfig(max_dad_delay=0.3, retrans_timer=0.05))
        inject(stack, from_peer() / ICMPv6EchoRequest(id=1, seq=1))
        assert stack.ipv6.counters.rx_tentative == 1  # still under DAD
        await ready(stack, link)
        inject(stack, from_peer() / ICMPv6EchoRequest(id=7, seq=9, data=b"abc"))
        (reply,) = link.take()
        assert reply.dst == PEER_MAC and reply[IPv6].src == str(US_LL)
        e = reply[ICMPv6EchoReply]
        assert (e.id, e.seq, bytes(e.data)) == (7, 9, b"abc")
        raw = bytes(reply)
        del reply[ICMPv6EchoReply].cksum  # scapy recomputes the same checksum
        assert bytes(reply) == raw
        inject(stack, from_peer(dst=A("ff02::1")) / ICMPv6EchoRequest(id=8))
        (reply,) = link.take()
        assert reply[IPv6].src == str(US_LL) and reply[ICMPv6EchoReply].id == 8
        inject(stack, from_peer(dst=A("ff02::1:ff00:3")) / ICMPv6EchoRequest())  # not our group
        assert link.take() == [] and stack.ipv6.counters.rx_not_for_us == 1
        await stack.disconnect()

    run(main())


def test_stack_extension_headers_and_parameter_problems() -> None:
    async def main() -> None:
        stack, link = await make_stack()
        await ready(stack, link)
        ip = stack.ipv6
        # Through options and a finished routing header to an echo request.
        inject(
            stack,
            from_peer()
            / IPv6ExtHdrHopByHop()
            / IPv6ExtHdrDestOpt()
            / IPv6ExtHdrRouting(segleft=0)
            / ICMPv6EchoRequest(id=3),
        )
        (reply,) = link.take()
        assert reply[ICMPv6EchoReply].id == 3
        # Unknown upper layer: parameter problem code 1 pointing at the next-header byte.
        inject(stack, from_peer(nh=253) / b"12345678")
        (err,) = link.take()
        pp = err[ICMPv6ParamProblem]
        assert (pp.code, pp.ptr) == (1, 6) and err[IPv6].dst == str(PEER_LL)
        inject(stack, from_peer() / IPv6ExtHdrDestOpt(nh=253) / b"12345678")
        (err,) = link.take()
        assert (err[ICMPv6ParamProblem].code, err[ICMPv6ParamProblem].ptr) == (1, 40)
        # Routing header with segments left: code 0 at the routing type.
        inject(stack, from_peer() / IPv6ExtHdrRouting(segleft=1, addresses=["fd00::9"]) / UDP())
        (err,) = link.take()
        assert (err[ICMPv6ParamProblem].code, err[ICMPv6ParamProblem].ptr) == (0, 42)
        mc = from_peer(dst=A("ff02::1")) / IPv6ExtHdrRouting(segleft=1, addresses=["fd00::9"])
        inject(stack, mc / UDP())
        assert link.take() == []  # not about a multicast packet (RFC 4443 2.4(e))
        # An unknown option: action 10 answers even to multicast, 11 not, 01 never.
        for otype, dst, answered in [
            (0x9E, A("ff02::1"), True),
            (0xDE, A("ff02::1"), False),
            (0x5E, US_LL, False),
            (0xDE, US_LL, True),
        ]:
            inject(
                stack,
                from_peer(dst=dst)
                / IPv6ExtHdrDestOpt(options=[HBHOptUnknown(otype=otype, optdata=b"xx")])
                / UDP(),
            )
            got = link.take()
            assert len(got) == answered, (otype, dst)
            if answered:
                assert (got[0][ICMPv6ParamProblem].code, got[0][ICMPv6ParamProblem].ptr) == (2, 42)
        # Never an error about an error.
        inject(stack, from_peer(nh=58) / ICMPv6DestUnreach() / (b"x" * 8))
        inject(stack, from_peer() / IPv6ExtHdrDestOpt(nh=58) / ICMPv6DestUnreach())
        assert ip.counters.rx_bad_headers == 0 and ip.counters.rx_param_problem == 6
        assert stack.internal_errors == 0
        await stack.disconnect()

    run(main())


def test_stack_reassembly_and_fragmentation() -> None:
    async def main() -> None:
        stack, link = await make_stack()
        await ready(stack, link)
        big = from_peer() / IPv6ExtHdrFragment(id=77) / ICMPv6EchoRequest(id=5, data=b"z" * 3000)
        frags = fragment6(big, 1280)  # type: ignore[no-untyped-call]
        assert len(frags) == 3
        for f in reversed(frags):
            inject(stack, f)
        out = link.take()
        assert len(out) == 3 and all(IPv6ExtHdrFragment in p for p in out)
        assert all(len(p[IPv6]) <= 1500 for p in out)
        assert {p[IPv6ExtHdrFragment].m for p in out} == {0, 1}
        assert stack.ipv6.reassembler.counters.reassembled == 1
        # Our reply reassembled by scapy's own code.
        whole = IPv6(bytes(defragment6([p[IPv6] for p in out])))  # type: ignore[no-untyped-call]
        assert bytes(whole[ICMPv6EchoReply].data) == b"z" * 3000
        raw = bytes(whole)
        del whole[ICMPv6EchoReply].cksum  # scapy recomputes the same checksum
        assert bytes(whole) == raw
        # An atomic fragment is processed at once; overlaps drop the datagram.
        inject(
            stack, from_peer() / IPv6ExtHdrFragment(id=78, offset=0, m=0) / ICMPv6EchoRequest(id=6)
        )
        assert link.take()[0][ICMPv6EchoReply].id == 6
        f1 = from_peer() / IPv6ExtHdrFragment(id=79, offset=0, m=1, nh=58) / (b"a" * 16)
        f2 = from_peer() / IPv6ExtHdrFragment(id=79, offset=1, m=0, nh=58) / (b"b" * 16)
        inject(stack, f1)
        inject(stack, f2)
        assert stack.ipv6.reassembler.counters.dropped_overlap == 1 and link.take() == []
        await stack.disconnect()

    run(main())


def test_stack_udp_echo_and_rate_limited_port_unreachable() -> None:
    async def main() -> None:
        stack, link = await make_stack()
        stack.ipv6._errors = type(stack.ipv6._errors)(rate=0.0, burst=2)
        await ready(stack, link)
        got: list[tuple[A, int, bytes]] = []

        async def cb(src: A, dst: A, sport: int, buf: memoryview) -> None:
            got.append((src, sport, bytes(buf)))
            stack.udp.send(buf, dest_ip=src, dest_port=sport, source_port=7)

        stack.listen_udpv6(port=7, callback=cb)
        inject(stack, from_peer() / UDP(sport=5000, dport=7) / b"hi")
        assert got == [(PEER_LL, 5000, b"hi")]
        (reply,) = link.take()
        assert reply[UDP].dport == 5000 and bytes(reply[UDP].payload) == b"hi"
        raw = bytes(reply)
        del reply[UDP].chksum  # scapy recomputes the same checksum
        assert bytes(reply) == raw
        z = from_peer() / UDP(sport=5000, dport=7, chksum=0) / b"zero"
        inject(stack, z)
        assert stack.udp.counters.rx_malformed == 1 and len(got) == 1
        for _ in range(4):
            inject(stack, from_peer() / UDP(sport=5000, dport=9) / b"closed")
        errs = link.take()
        assert len(errs) == 2 and stack.ipv6.icmp_counters.errors_rate_limited == 2
        du = errs[0][ICMPv6DestUnreach]
        assert du.code == 4 and errs[0][IPv6].src == str(US_LL)
        inject(stack, from_peer(dst=A("ff02::1")) / UDP(dport=9))  # multicast: never
        assert link.take() == []
        await stack.disconnect()

    run(main())


def test_stack_slaac_and_global_traffic() -> None:
    async def main() -> None:
        stack, link = await make_stack()
        await ready(stack, link)
        inject(
            stack,
            from_peer(dst=A("ff02::1"), hlim=255)
            / ICMPv6ND_RA(routerlifetime=600)
            / ICMPv6NDOptSrcLLAddr(lladdr=PEER_MAC)
            / ICMPv6NDOptPrefixInfo(
                prefix="2001:db8:7::", prefixlen=64, validlifetime=3600, preferredlifetime=1800
            ),
        )
        mine = A("2001:db8:7::ff:fe00:2")
        assert await stack.wait_ready(mine, timeout=5)
        link.sent.clear()
        far = A("2001:db8:99::1")
        await stack.udp.write(b"far", dest_ip=far, dest_port=53)
        (p,) = link.take()
        assert p.dst == PEER_MAC and p[IPv6].src == str(mine) and p[IPv6].dst == str(far)
        assert stack.ipv6.get_ip_gateways() == [PEER_LL]
        await stack.disconnect()

    run(main())


def test_stack_no_route_and_bad_hop_limit_ndp() -> None:
    async def main() -> None:
        stack, link = await make_stack()
        await ready(stack, link)
        await stack.udp.write(b"x", dest_ip=A("2001:db8::1"), dest_port=9)
        assert stack.ipv6.counters.tx_no_route == 1 and link.take() == []
        inject(
            stack,
            from_peer(dst=A("ff02::1"), hlim=64)
            / ICMPv6ND_RA()
            / ICMPv6NDOptPrefixInfo(prefix="2001:db8:7::"),
        )
        assert stack.ipv6.ndp.counters.rx_invalid == 1 and len(stack.ipv6.get_ip()) == 1
        inject(stack, from_peer() / ICMPv6ND_Redirect(tgt="fe80::9", dst="2001:db8::1"))
        assert stack.ipv6.ndp.counters.rx_invalid == 2
        await stack.disconnect()

    run(main())


def test_stack_packet_too_big_and_reassembly_time_exceeded() -> None:
    async def main() -> None:
        stack, link = await make_stack(reassembly=ReassemblyConfig(timeout=0.1))
        await ready(stack, link)
        ip = stack.ipv6
        await stack.udp.write(b"u" * 1400, dest_ip=PEER_LL, dest_port=9)
        (sent,) = link.take()
        assert len(sent[IPv6]) == 1448 and ip.path_mtu(PEER_LL) == 1500
        quote = bytes(sent[IPv6])[:1232]
        inject(stack, from_peer(src=A("fe80::9")) / ICMPv6PacketTooBig(mtu=500) / quote)
        assert ip.path_mtu(PEER_LL) == 1280  # never below the IPv6 minimum
        await stack.udp.write(b"u" * 1400, dest_ip=PEER_LL, dest_port=9)
        frags = link.take()
        assert len(frags) == 2 and all(len(f[IPv6]) <= 1280 for f in frags)
        other = bytes(IPv6(src="fe80::77", dst=str(PEER6)) / UDP())  # not a packet of ours
        inject(stack, from_peer() / ICMPv6PacketTooBig(mtu=1300) / other)
        assert ip.path_mtu(PEER6) == 1500
        # Only the first fragment came: time exceeded (code 1) after the timeout.
        first = from_peer() / IPv6ExtHdrFragment(id=5, m=1, nh=17) / (b"p" * 64)
        inject(stack, first)
        inject(stack, from_peer() / IPv6ExtHdrFragment(id=6, offset=8, m=0, nh=17) / (b"q" * 8))
        await asyncio.sleep(0.4)
        # One, not two: none for the datagram whose first fragment never came. (MLD
        # reports may be sent again meanwhile.)
        (te,) = [p for p in link.take() if ICMPv6MLReport2 not in p]
        assert te[ICMPv6TimeExceeded].code == 1 and te[IPv6].dst == str(PEER_LL)
        assert ip.reassembler.counters.timed_out == 2
        await stack.disconnect()

    run(main())


def test_seed_async_api() -> None:
    """The V1 path alone: Ethif.input -> IPv6.input -> UDP.input, and allocate_frame /
    checksum / write for output, with static addresses, netmask and gateway."""

    async def main() -> None:
        link = MemLink()
        ethif = Ethif(link)
        r = await StackIPv6.connect(
            ethif,
            ips=[ipaddress.IPv6Interface("fd00::2/64")],
            gateways=[PEER_LL],
            ndp=NdpConfig(dad_transmits=0, rtr_solicitations=0),
        )
        assert isinstance(r, Ok)
        ip = r.value
        assert ip.get_ip() == [US_LL, US6]
        assert ip.get_ip_netmasks() == [ipaddress.IPv6Network("fd00::/64")]
        assert ip.get_ip_gateways() == [PEER_LL]
        assert ip.get_source(dst=A("2001:db8::1")) == US6
        assert ip.get_source(dst=PEER_LL) == US_LL
        ru = await StackUDP.connect(ip)
        assert isinstance(ru, Ok)
        udp = ru.value
        got: list[tuple[A, A, int, bytes]] = []

        async def cb(src: A, dst: A, sport: int, buf: memoryview) -> None:
            got.append((src, dst, sport, bytes(buf)))

        async def nothing(*args: Any) -> None:
            raise AssertionError(args)

        async def on_udp(src: A, dst: A, buf: memoryview) -> None:
            await udp.input(src, dst, buf, listeners=lambda port: cb if port == 7 else None)

        async def on_ipv6(buf: memoryview) -> None:
            await ip.input(buf, tcp=nothing, udp=on_udp, default=nothing)

        frame = bytes(from_peer(PEER6, US6) / UDP(sport=999, dport=7) / b"seed")
        await ethif.input(memoryview(frame), arpv4=nothing, ipv4=nothing, ipv6=on_ipv6)
        assert got == [(PEER6, US6, 999, b"seed")]
        link.sent.clear()
        ip.ndp.input(PEER_LL.packed, US_LL.packed, 255, ns_from(PEER_MAC, US_LL), ip._loop.time())
        link.sent.clear()
        f, hl = ip.allocate_frame(dst=A("2001:db8::1"), proto="UDP")
        hdr = (1).to_bytes(2, "big") + (2).to_bytes(2, "big") + (13).to_bytes(2, "big") + bytes(2)
        f[hl : hl + 8] = hdr
        csum = ip.checksum(f[:hl], [f[hl : hl + 8], b"hello"])
        f[hl + 6 : hl + 8] = csum.to_bytes(2, "big")
        await ip.write(f[: hl + 8], b"hello")
        (p,) = link.take()
        assert p.dst == PEER_MAC  # through the static gateway
        assert p[IPv6].src == str(US6) and p[IPv6].dst == "2001:db8::1"
        raw = bytes(p)
        del p[UDP].chksum
        assert bytes(p) == raw and bytes(p[UDP].payload) == b"hello"
        with pytest.raises(ValueError, match="proto"):
            ip.allocate_frame(dst=US6, proto="ICMP")  # type: ignore[arg-type,unused-ignore]
        await ip.disconnect()

    run(main())


SEEDS = [
    bytes(from_peer() / ICMPv6EchoRequest(data=b"ping")),
    bytes(from_peer() / UDP(sport=1, dport=7) / b"udp"),
    bytes(from_peer() / IPv6ExtHdrHopByHop() / IPv6ExtHdrDestOpt() / UDP(dport=9)),
    bytes(from_peer() / IPv6ExtHdrFragment(id=1, m=1) / (b"f" * 64)),
    bytes(
        from_peer(dst=A("ff02::1"), hlim=255)
        / ICMPv6ND_NS(tgt=str(US_LL))
        / ICMPv6NDOptSrcLLAddr(lladdr=PEER_MAC)
    ),
    bytes(
        from_peer(dst=A("ff02::1"), hlim=255)
        / ICMPv6ND_RA()
        / ICMPv6NDOptPrefixInfo(prefix="2001:db8::")
    ),
]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.sampled_from(SEEDS),
    st.lists(st.tuples(st.integers(0, 400), st.integers(0, 255)), max_size=6),
    st.integers(0, 400),
)
def test_fuzz_input_never_raises(seed: bytes, flips: list[tuple[int, int]], cut: int) -> None:
    async def main() -> None:
        link = MemLink()
        stack = await IPv6Stack.connect(link, rng=random.Random(1), ndp=NdpConfig(dad_transmits=0))
        stack.listen_udpv6(port=7, callback=lambda *a: asyncio.sleep(0))
        b = bytearray(seed)
        for i, v in flips:
            if 14 <= i < len(b):
                b[i] = v
        stack.receive_frame(memoryview(b[: max(14, len(b) - cut)]))
        assert stack.internal_errors == 0
        await stack.disconnect()

    asyncio.run(main())


NEIGHBOURS = [A(f"fd00::{i}") for i in range(1, 7)]
MACS = ["02:00:00:00:00:01", "02:00:00:00:00:07"]
events = st.one_of(
    st.tuples(st.just("send"), st.sampled_from(NEIGHBOURS), st.integers(1, 3000)),
    st.tuples(st.just("na"), st.sampled_from(NEIGHBOURS), st.integers(0, 7)),
    st.tuples(st.just("ns"), st.sampled_from(NEIGHBOURS), st.integers(0, 1)),
    st.tuples(st.just("time"), st.just(NEIGHBOURS[0]), st.integers(0, 40)),
    st.tuples(st.just("confirm"), st.sampled_from(NEIGHBOURS), st.just(0)),
)


@settings(max_examples=150, deadline=None)
@given(st.lists(events, max_size=60))
def test_ndp_invariants_under_any_events(evs: list[tuple[str, A, int]]) -> None:
    """Whatever happens, the cache and queues stay within their bounds, every entry past
    INCOMPLETE has a MAC, and the INCOMPLETE count the limits use is right."""
    ndp, wire = make_ndp(
        max_entries=4, max_incomplete=2, queue_packets=3, queue_bytes=4000, retrans_timer=1.0
    )
    now = 0.0
    for kind, ip, arg in evs:
        if kind == "send":
            ndp.send(ip.packed, [frame_to(ip, bytes(arg))], now)
        elif kind == "na":
            flags = ic.NeighborAdvert(bool(arg & 4), bool(arg & 2), bool(arg & 1), ip, (
                ic.LinkAddrOption(False, MacAddr(MACS[arg & 1])),
            ))  # fmt: skip
            ndp.input(ip.packed, US6.packed, 255, flags, now)
        elif kind == "ns":
            ndp.input(ip.packed, US6.packed, 255, ns_from(MACS[arg]), now)
        elif kind == "confirm":
            ndp.confirm_reachable(ip.packed, now)
        else:
            now += arg / 4
            t = ndp.poll_at()
            while t is not None and t <= now:
                ndp.handle_timer(t)
                t = ndp.poll_at()
        assert len(ndp.cache) <= 4
        incomplete = [e for e in ndp.cache.values() if e.state == State.INCOMPLETE]
        assert len(incomplete) == ndp._incomplete <= 2
        for e in ndp.cache.values():
            assert (e.mac is None) == (e.state == State.INCOMPLETE)
            assert len(e.queue) <= 3 and e.size == sum(len(f) for f in e.queue) <= 4000
            assert not e.queue or e.state == State.INCOMPLETE
    for f in wire.take():  # everything sent is a well-formed frame from us
        assert f.src == OUR_MAC and IPv6 in f


def test_infinite_lifetimes_need_no_timer() -> None:
    wakes: list[float] = []
    ndp = Ndp(MacAddr(OUR_MAC).packed, Wire(), wake=wakes.append, config=NdpConfig(dad_transmits=0))
    forever = pio("2001:db8:8::", valid=ic.INFINITE, preferred=ic.INFINITE)
    ndp.input(PEER_LL.packed, A("ff02::1").packed, 255, ra(forever), 0.0)
    mine = A("2001:db8:8::ff:fe00:2").packed
    assert ndp.is_ours(mine) and not ndp.addresses[mine].deprecated(1e12)
    assert all(w < float("inf") for w in wakes)
    assert ndp.poll_at() == 1800.0  # only the router's lifetime


def test_slaac_can_be_turned_off() -> None:
    ndp, _ = make_ndp(slaac=False)
    ndp.input(PEER_LL.packed, A("ff02::1").packed, 255, ra(pio("2001:db8:1::")), 0.0)
    assert ndp.counters.addresses_autoconfigured == 0 and len(ndp.addresses) == 1
    assert ndp.on_link(A("2001:db8:1::5").packed, 1.0)  # the prefix is still on-link


PAST_SUM_SEEDS = [
    *SEEDS,
    bytes(
        from_peer(dst=A("ff02::1"), hlim=255)
        / ICMPv6ND_RA(routerlifetime=1800)
        / ICMPv6NDOptSrcLLAddr(lladdr=PEER_MAC)
        / ICMPv6NDOptPrefixInfo(prefix="2001:db8::", L=1, A=1)
    ),
    bytes(
        from_peer(hlim=255)
        / ICMPv6ND_NA(tgt=str(PEER_LL), R=1, S=1, O=1)
        / ICMPv6NDOptDstLLAddr(lladdr=PEER_MAC)
    ),
    bytes(
        from_peer(dst=A("ff02::2"), hlim=255)
        / ICMPv6ND_RS()
        / ICMPv6NDOptSrcLLAddr(lladdr=PEER_MAC)
    ),
    bytes(from_peer(hlim=255) / ICMPv6ND_Redirect(tgt="fe80::9", dst="2001:db8::9")),
    bytes(from_peer() / ICMPv6PacketTooBig(mtu=1280) / IPv6(src=str(US_LL), dst="2001:db8::1")),
    bytes(
        from_peer(dst=A("ff02::1"), hlim=1)
        / IPv6ExtHdrHopByHop(options=[HBHOptUnknown(otype=5, optdata=b"\0\0")])
        / ICMPv6MLQuery2()
    ),
    bytes(from_peer() / IPv6ExtHdrRouting(addresses=[str(US_LL)], segleft=0) / UDP(dport=7)),
    bytes(from_peer() / IPv6ExtHdrFragment(id=5, m=0, offset=0) / UDP(dport=7) / b"atomic"),
    bytes(
        from_peer()
        / IPv6ExtHdrDestOpt(options=[HBHOptUnknown(otype=0x80, optdata=b"x")])
        / UDP(dport=7)
    ),
]


async def fresh_ipv6() -> IPv6Stack:
    stack = await IPv6Stack.connect(MemLink(), rng=random.Random(1), ndp=NdpConfig(dad_transmits=0))
    stack.listen_udpv6(port=7, callback=lambda *a: asyncio.sleep(0))
    return stack


@settings(max_examples=300)
@given(st.lists(valid_sum_frame(PAST_SUM_SEEDS), min_size=1, max_size=4))
def test_fuzz_past_the_checksum_never_raises(frames: list[bytes]) -> None:
    """Extension headers, ICMPv6, NDP and MLD mutated with their checksums recomputed:
    the parsers behind the checksum get them; nothing raises, on a fresh stack each time."""

    async def main() -> None:
        stack = await fresh_ipv6()
        for frame in frames:
            stack.receive_frame(memoryview(bytearray(frame)))
            await asyncio.sleep(0)
        assert stack.internal_errors == 0
        await stack.disconnect()

    asyncio.run(main())


def test_ndp_mutations_with_fixed_sums_reach_ndp() -> None:
    """Every byte of each NDP message's body changed in turn: with the sum recomputed
    nearly all reach NDP's own validity checks (counted there); without, none does."""

    async def reached(fix: bool) -> tuple[int, dict[str, dict[str, int]]]:
        stack = await fresh_ipv6()
        sent = 0
        for seed in PAST_SUM_SEEDS:
            if seed[20] != 58 or not 134 <= seed[54] <= 137:
                continue  # NDP sent to a host: RA, NS, NA, Redirect after the IPv6 header
            for i in range(58, len(seed)):
                frame = bytearray(seed)
                frame[i] ^= 0xA5
                stack.receive_frame(memoryview(fix_frame(frame) if fix else frame))
                sent += 1
        await asyncio.sleep(0)
        assert stack.internal_errors == 0
        c = stack.counters()
        await stack.disconnect()
        return sent, c

    sent, fixed = run(reached(True))
    _, broken = run(reached(False))
    assert sent > 100
    assert fixed["ndp"]["rx_messages"] >= sent * 9 // 10, (sent, fixed["ndp"], fixed["icmpv6"])
    assert broken["ndp"]["rx_messages"] == 0 and broken["icmpv6"]["rx_malformed"] == sent
