"""Protocol hardening (docs/hardening.md): each case sends the offending packet, built
with scapy, into the whole stack on an in-memory link (or into the sans-I/O core it
concerns) and checks that the stack does what the RFC, or Linux, does."""

from __future__ import annotations

import asyncio
import ipaddress
import itertools
import random
from collections.abc import Coroutine
from typing import Any, TypeVar

from scapy.layers.dhcp import DHCP
from scapy.layers.inet import ICMP, IP, TCP, UDP, IPOption, IPOption_LSRR, IPOption_SSRR
from scapy.layers.inet6 import (
    ICMPv6ND_RA,
    ICMPv6NDOptMTU,
    ICMPv6NDOptSrcLLAddr,
    ICMPv6ParamProblem,
    IPv6,
    IPv6ExtHdrDestOpt,
    IPv6ExtHdrFragment,
)
from scapy.layers.l2 import ARP, Ether
from scapy.packet import Raw
from tests.ipstack.memlink import OUR_MAC, PEER, PEER_MAC, US, MemLink

from miragekit import link as netlink
from miragekit import sim
from miragekit.dhcp import Bound, DhcpClient, DhcpClientConfig, DhcpServerConfig, Transmit
from miragekit.macaddr import MacAddr
from miragekit.net import TCP as StackTCP
from miragekit.net import (
    DhcpServerDriver,
    IPv4Stack,
    IPv6Stack,
    NdpConfig,
    ReassemblyConfig,
    dhcp_configure,
)
from miragekit.net._arp import Arp
from miragekit.result import Error, Ok, Refused
from miragekit.tcp import Config, Connection, TCPEndpoint
from miragekit.wire import icmpv6 as ic
from miragekit.wire.dhcp import DhcpMessageType, DhcpOp, DhcpRepr
from miragekit.wire.tcp import TCPRepr

T = TypeVar("T")
A = ipaddress.IPv4Address
BCAST_MAC = "ff:ff:ff:ff:ff:ff"
SUBNET_BCAST = "10.0.0.255"


def run(coro: Coroutine[Any, Any, T]) -> T:
    async def bounded() -> T:
        return await asyncio.wait_for(coro, 20)

    return asyncio.run(bounded())


async def v4_stack() -> tuple[IPv4Stack, MemLink, StackTCP[A]]:
    """Our stack at 10.0.0.2/24 with TCP listening on port 80 and UDP echo on port 7;
    the peer's MAC already known."""
    link = MemLink()
    stack = await IPv4Stack.connect(link, cidr=f"{US}/24", rng=random.Random(1))
    tcp: StackTCP[A] = StackTCP(stack.ipv4)

    async def serve(flow: Any) -> None:
        await flow.read()

    tcp.listen(80, serve)

    async def echo(src: A, dst: A, sport: int, buf: memoryview) -> None:
        await stack.udp.write(bytes(buf), source_port=7, dest_ip=src, dest_port=sport)

    stack.listen_udpv4(port=7, callback=echo)
    inject(stack, Ether(src=PEER_MAC, dst=BCAST_MAC) / ARP(hwsrc=PEER_MAC, psrc=PEER, pdst=US))
    await settle()
    link.take()
    return stack, link, tcp


def inject(stack: IPv4Stack | IPv6Stack, pkt: Any) -> None:
    stack.receive_frame(memoryview(bytearray(bytes(pkt))))


async def settle() -> None:
    """Let the TCP driver's flush and the UDP callbacks run."""
    for _ in range(5):
        await asyncio.sleep(0)


def peer() -> Any:
    return Ether(src=PEER_MAC, dst=OUR_MAC)


def syn(dport: int = 80, flags: str = "S", **kw: Any) -> Any:
    return TCP(sport=40000, dport=dport, flags=flags, seq=1000, **kw)


# --- 1. no TCP to broadcast or multicast destinations ------------------------------------


def test_syn_to_a_broadcast_gets_no_syn_ack() -> None:
    async def main() -> None:
        stack, link, tcp = await v4_stack()
        for dst in (SUBNET_BCAST, "255.255.255.255"):
            inject(stack, Ether(src=PEER_MAC, dst=BCAST_MAC) / IP(src=PEER, dst=dst) / syn())
        await settle()
        assert link.take() == [] and tcp.connections() == 0
        assert stack.ipv4.counters.rx_tcp_not_unicast == 2
        # The same SYN to our address is answered (the listener works).
        inject(stack, peer() / IP(src=PEER, dst=US) / syn())
        await settle()
        (synack,) = link.take()
        assert synack[TCP].flags == "SA" and synack[IP].src == US

    run(main())


def test_syn_to_a_multicast_group_over_ipv6_gets_no_syn_ack() -> None:
    async def main() -> None:
        link = MemLink()
        cfg = NdpConfig(max_dad_delay=0.01, retrans_timer=0.05, rtr_solicitations=0)
        stack = await IPv6Stack.connect(link, cidrs=["fd00::2/64"], rng=random.Random(1), ndp=cfg)
        assert await stack.wait_ready()
        tcp: StackTCP[ipaddress.IPv6Address] = StackTCP(stack.ipv6)
        tcp.listen(80, lambda flow: asyncio.sleep(0))
        link.take()
        inject(
            stack,
            Ether(src=PEER_MAC, dst="33:33:00:00:00:01")
            / IPv6(src="fd00::1", dst="ff02::1")
            / syn(),
        )
        await settle()
        sent = [f for f in link.take() if f.haslayer(TCP)]
        assert sent == [] and tcp.connections() == 0
        assert stack.ipv6.counters.rx_tcp_multicast == 1

    run(main())


# --- 2. martian sources ------------------------------------------------------------------


def test_udp_from_a_broadcast_or_our_own_source_is_not_answered() -> None:
    async def main() -> None:
        stack, link, _ = await v4_stack()
        for src in (SUBNET_BCAST, "255.255.255.255", "224.0.0.1", "127.0.0.1", US):
            inject(stack, peer() / IP(src=src, dst=US) / UDP(sport=9, dport=7) / b"x")
            inject(stack, peer() / IP(src=src, dst=US) / syn())
        await settle()
        assert link.take() == []
        assert stack.ipv4.counters.rx_martian == 10
        # The echo service itself answers a real peer.
        inject(stack, peer() / IP(src=PEER, dst=US) / UDP(sport=9, dport=7) / b"x")
        await settle()
        (echo,) = link.take()
        assert echo[IP].dst == PEER and echo.dst == PEER_MAC and bytes(echo[UDP].payload) == b"x"

    run(main())


# --- 3. the peer's MSS is floored ----------------------------------------------------------


def test_a_peer_mss_of_1_is_raised_to_48() -> None:
    async def main() -> None:
        stack, link, tcp = await v4_stack()
        tcp.endpoint.config = Config(timestamps=False)
        inject(stack, peer() / IP(src=PEER, dst=US) / syn(options=[("MSS", 1)]))
        await settle()
        (synack,) = link.take()
        (conn,) = tcp.endpoint.connections.values()
        assert conn.mss == 48  # Linux's tcp_min_snd_mss
        assert synack[TCP].flags == "SA"

    run(main())


# --- 4. ephemeral ports --------------------------------------------------------------------


def test_ephemeral_ports_are_hashed_per_destination_not_sequential() -> None:
    ep = TCPEndpoint(Config(), secret=bytes(range(32)))
    laddr = A(US).packed
    ports = [ep.connect(0.0, laddr, A(f"10.0.1.{i}").packed, 80).local_port for i in range(1, 65)]
    assert all(49152 <= p <= 65535 for p in ports)
    steps = sum(1 for a, b in itertools.pairwise(ports) if b - a == 1)
    assert steps <= 2, ports  # a global counter would give 63
    # Another secret, other ports: nobody can predict them.
    other = TCPEndpoint(Config(), secret=bytes(32))
    assert other.connect(0.0, laddr, A("10.0.1.1").packed, 80).local_port != ports[0]
    # To one destination the ports still differ, and none repeats soon (RFC 6056 3.3.4).
    same = [ep.connect(0.0, laddr, A("10.0.2.1").packed, 80).local_port for _ in range(50)]
    assert len(set(same)) == 50


# --- 5. source routes ----------------------------------------------------------------------


def test_source_routed_packets_are_dropped() -> None:
    async def main() -> None:
        stack, link, tcp = await v4_stack()
        routes = (
            IPOption_LSRR(routers=["10.0.0.3"], pointer=4),  # not used up
            IPOption_SSRR(routers=["10.0.0.3"], pointer=8),  # used up
        )
        for opt in routes:
            inject(stack, peer() / IP(src=PEER, dst=US, options=[opt]) / syn())
            inject(stack, peer() / IP(src=PEER, dst=US, options=[opt]) / ICMP(type=8))
        await settle()
        assert link.take() == [] and tcp.connections() == 0
        assert stack.ipv4.counters.rx_source_routed == 4

    run(main())


# --- 6. SYN+FIN ----------------------------------------------------------------------------


def test_syn_fin_to_a_listener_is_discarded() -> None:
    async def main() -> None:
        stack, link, tcp = await v4_stack()
        for flags in ("SF", "SFP", "SFU"):
            inject(stack, peer() / IP(src=PEER, dst=US) / syn(flags=flags))
        await settle()
        assert link.take() == [] and tcp.connections() == 0

    run(main())


def test_syn_fin_in_the_sans_io_endpoint() -> None:
    ep = TCPEndpoint(Config(), secret=bytes(32))
    ep.listen(80)
    ep.handle_segment(0.0, b"\x0a\0\0\1", b"\x0a\0\0\2", TCPRepr(1, 80, 5, 0, 0x03, 1000))
    assert ep.segments_to_send(0.0) == [] and not ep.connections


# --- 7. ARP --------------------------------------------------------------------------------


def _arp(op: int, spa: str, tpa: str = US, sha: str = PEER_MAC) -> memoryview:
    return memoryview(bytes(ARP(op=op, hwsrc=sha, psrc=spa, pdst=tpa)))


def _arp_core() -> tuple[Arp, list[Any]]:
    out: list[Any] = []
    arp = Arp(bytes.fromhex(OUR_MAC.replace(":", "")), lambda b: out.append(Ether(b"".join(b))))
    arp.ips = {int(A(US))}
    arp.subnet_broadcast = int(A(SUBNET_BCAST))
    return arp, out


def test_arp_from_a_broadcast_or_multicast_sender_is_neither_answered_nor_cached() -> None:
    arp, out = _arp_core()
    for spa in ("255.255.255.255", "224.0.0.1", SUBNET_BCAST, "127.0.0.1"):
        arp.input(_arp(1, spa), now=0.0)
    assert out == [] and arp.entries(0.0) == {} and arp.counters.rx_martian == 4
    arp.input(_arp(1, PEER), now=0.0)
    assert len(out) == 1 and int(A(PEER)) in arp.entries(0.0)


def test_an_unsolicited_arp_reply_creates_no_entry() -> None:
    arp, _ = _arp_core()
    arp.input(_arp(2, PEER), now=0.0)
    assert arp.entries(0.0) == {} and arp.counters.rx_unsolicited == 1
    # A reply to our own request is learnt, and a later reply refreshes the entry.
    arp.send(int(A("10.0.0.9")), [bytearray(20)], now=0.0)
    arp.input(_arp(2, "10.0.0.9"), now=0.1)
    assert int(A("10.0.0.9")) in arp.entries(0.1)


def test_a_gratuitous_arp_claiming_our_address_is_logged_and_defended(caplog: Any) -> None:
    arp, out = _arp_core()
    thief = "02:00:00:00:00:66"
    arp.input(_arp(1, US, US, sha=thief), now=0.0)
    (defence,) = out
    assert defence.dst == BCAST_MAC and defence[ARP].psrc == US == defence[ARP].pdst
    assert defence[ARP].hwsrc == OUR_MAC
    assert any(thief in r.getMessage() and US in r.getMessage() for r in caplog.records)
    # Within the defend interval: counted, not answered again (RFC 5227 2.4 (b)).
    arp.input(_arp(2, US, US, sha=thief), now=5.0)
    assert len(out) == 1 and arp.counters.conflicts == 2 and arp.counters.defended == 1
    arp.input(_arp(2, US, US, sha=thief), now=10.5)
    assert len(out) == 2 and arp.lookup(int(A(US)), 10.5) is None


# --- 8. DF, path-MTU discovery and IPv4 IDs ------------------------------------------------


async def accepted(stack: IPv4Stack, link: MemLink, tcp: StackTCP[A]) -> tuple[Any, int]:
    """A connection the peer opened to port 81 (MSS 1460, no options beyond): our flow
    and the sequence number of our first data byte."""
    flows: asyncio.Queue[Any] = asyncio.Queue()

    async def keep(flow: Any) -> None:
        await flows.put(flow)
        await asyncio.Event().wait()

    tcp.listen(81, keep)
    inject(stack, peer() / IP(src=PEER, dst=US) / syn(81, options=[("MSS", 1460)]))
    await settle()
    (synack,) = link.take()
    iss = synack[TCP].seq
    inject(
        stack,
        peer()
        / IP(src=PEER, dst=US)
        / TCP(sport=40000, dport=81, flags="A", seq=1001, ack=iss + 1, window=65535),
    )
    await settle()
    return flows.get_nowait(), iss + 1


def _tcp_ack(sport: int, ack: int) -> Any:
    return (
        peer() / IP(src=PEER, dst=US) / TCP(sport=40000, dport=sport, flags="A", seq=1001, ack=ack)
    )


def _frag_needed(quoted: Any, mtu: int) -> Any:
    return peer() / IP(src=PEER, dst=US) / ICMP(type=3, code=4, nexthopmtu=mtu) / quoted


def test_tcp_sets_df_and_follows_fragmentation_needed() -> None:
    async def main() -> None:
        stack, link, tcp = await v4_stack()
        flow, first = await accepted(stack, link, tcp)
        await flow.write(b"d" * 30000)
        await settle()
        sent = [f for f in link.take() if f.haslayer(TCP)]
        assert sent and all(f[IP].flags == "DF" and f[IP].len == 1500 for f in sent[:-1])
        # A forged message quoting a sequence number we never sent changes nothing
        # (RFC 5927), nor does one reporting an MTU that is no decrease (RFC 1191 6.1).
        live = bytes(sent[0][IP])[:28]
        forged = bytearray(live)
        forged[24:28] = (first - 70000).to_bytes(4, "big")
        inject(stack, _frag_needed(bytes(forged), 1280))
        inject(stack, _frag_needed(live, 1500))
        assert stack.ipv4.path_mtu(A(PEER)) == 1500 and tcp.stats["icmp_ignored"] == 1
        inject(stack, _frag_needed(live, 1280))
        assert stack.ipv4.path_mtu(A(PEER)) == 1280 and tcp.stats["icmp_accepted"] == 1
        (conn,) = (c for c in tcp.endpoint.connections.values() if c.local_port == 81)
        assert conn.mss == 1240
        # What was in flight is resent at once, from snd.una, in the new size (as Linux).
        await settle()
        resent = [f for f in link.take() if f.haslayer(TCP)]
        assert resent and resent[0][TCP].seq == first
        assert all(f[IP].len <= 1280 and f[IP].flags == "DF" for f in resent)
        # The peer acknowledges all it got: what follows fits the new path MTU.
        sent_end = first + sum(len(f[TCP].payload) for f in sent)
        inject(stack, _tcp_ack(81, sent_end))
        await settle()
        more = [f for f in link.take() if f.haslayer(TCP) and len(f[TCP].payload)]
        assert more and all(f[IP].len <= 1280 and f[IP].flags == "DF" for f in more)
        assert max(f[IP].len for f in more) == 1280
        # A connection's IDs follow each other (Linux's per-socket counter).
        ids = [f[IP].id for f in sent + resent + more]
        assert all((b - a) & 0xFFFF == 1 for a, b in itertools.pairwise(ids))
        # A new connection to the peer starts from the path MTU learnt.
        attempt = asyncio.create_task(tcp.create_connection((A(PEER), 9)))
        await settle()
        (syn_frame,) = [f for f in link.take() if f.haslayer(TCP)]
        s = syn_frame[TCP]
        inject(
            stack,
            peer()
            / IP(src=PEER, dst=US)
            / TCP(
                sport=9, dport=s.sport, flags="SA", seq=5, ack=s.seq + 1, options=[("MSS", 1460)]
            ),
        )
        r = await asyncio.wait_for(attempt, 1.0)
        assert isinstance(r, Ok) and r.value.connection.mss == 1240

    run(main())


def test_frag_needed_about_a_packet_sent_without_df_is_ignored() -> None:
    async def main() -> None:
        stack, link, _ = await v4_stack()
        quoted = IP(src=US, dst=PEER, flags=0, len=1500) / UDP(sport=7, dport=9)
        inject(stack, _frag_needed(bytes(quoted)[:28], 1280))
        assert stack.ipv4.path_mtu(A(PEER)) == 1500 and link.take() == []

    run(main())


def test_ipv4_ids_are_per_destination_not_one_global_counter() -> None:
    async def main() -> None:
        stack, link, _ = await v4_stack()
        other = "10.0.0.3"
        other_mac = "02:00:00:00:00:03"
        inject(
            stack, Ether(src=other_mac, dst=BCAST_MAC) / ARP(hwsrc=other_mac, psrc=other, pdst=US)
        )
        link.take()

        def ping(src: str, mac: str) -> int:
            inject(stack, Ether(src=mac, dst=OUR_MAC) / IP(src=src, dst=US) / ICMP(type=8))
            (reply,) = link.take()
            return int(reply[IP].id)

        a1 = ping(PEER, PEER_MAC)
        others = [ping(other, other_mac) for _ in range(20)]
        a2 = ping(PEER, PEER_MAC)
        # What we sent to another host does not show in the IDs the peer sees (RFC 7739).
        assert (a2 - a1) & 0xFFFF == 1
        assert all((b - a) & 0xFFFF == 1 for a, b in itertools.pairwise(others))
        assert (others[0] - a1) & 0xFFFF != 1

    run(main())


# --- 10. ICMP unreachable during connect -------------------------------------------------


def test_port_unreachable_during_connect_refuses_at_once() -> None:
    async def main() -> None:
        stack, link, tcp = await v4_stack()
        attempt = asyncio.create_task(tcp.create_connection((A(PEER), 9)))
        await settle()
        (syn_frame,) = link.take()
        quoted = bytes(syn_frame[IP])[:28]
        unreach = peer() / IP(src=PEER, dst=US) / ICMP(type=3, code=3)
        bad = bytearray(quoted)
        bad[24:28] = ((syn_frame[TCP].seq + 5) & 0xFFFFFFFF).to_bytes(4, "big")
        inject(stack, unreach / bytes(bad))  # not the SYN we sent: ignored
        await settle()
        assert not attempt.done()
        inject(stack, unreach / quoted)
        r = await asyncio.wait_for(attempt, 1.0)
        assert r == Error(Refused())
        assert tcp.connections() == 0 or all(
            c.state.name == "CLOSED" for c in tcp.endpoint.connections.values()
        )

    run(main())


def test_protocol_unreachable_during_connect_refuses_at_once() -> None:
    async def main() -> None:
        stack, link, tcp = await v4_stack()
        attempt = asyncio.create_task(tcp.create_connection((A(PEER), 9)))
        await settle()
        (syn_frame,) = link.take()
        inject(
            stack, peer() / IP(src=PEER, dst=US) / ICMP(type=3, code=2) / bytes(syn_frame[IP])[:28]
        )
        assert await asyncio.wait_for(attempt, 1.0) == Error(Refused())

    run(main())


# --- 13. a lost SYN or SYN-ACK shrinks the start ------------------------------------------

CLIENT = A(PEER).packed
SERVER = A(US).packed


def _handshake(lose_synack: bool) -> Any:
    ep = TCPEndpoint(Config(timestamps=False), secret=bytes(32))
    ep.listen(80)
    ep.handle_segment(0.0, CLIENT, SERVER, TCPRepr(40000, 80, 1000, 0, 0x02, 65535, mss=1460))
    ((_, _, synack),) = ep.segments_to_send(0.0)
    now = 0.1
    if lose_synack:
        now = ep.poll_at() or 0.0
        ep.handle_timer(now)
        ((_, _, again),) = ep.segments_to_send(now)
        assert again.flags == synack.flags and again.seq == synack.seq
    ep.handle_segment(now, CLIENT, SERVER, TCPRepr(40000, 80, 1001, synack.seq + 1, 0x10, 65535))
    ep.segments_to_send(now)
    (conn,) = ep.connections.values()
    assert conn.state.name == "ESTABLISHED"
    return conn


def test_after_a_retransmitted_syn_ack_one_segment_and_a_3_s_timeout() -> None:
    normal = _handshake(lose_synack=False)
    assert normal.cwnd == 10 * normal.mss
    lost = _handshake(lose_synack=True)
    assert lost.cwnd == lost.mss  # RFC 5681 3.1
    assert lost.rto == 3.0  # RFC 6298 5.7 (no RTT sample: Karn)


def test_after_a_retransmitted_syn_the_same() -> None:
    conn = Connection.connect(Config(timestamps=False), 40000, 80, 5000, 0.0)
    (first,) = conn.segments_to_send(0.0)
    at = conn.poll_at() or 0.0
    conn.handle_timer(at)
    (again,) = conn.segments_to_send(at)
    assert again.seq == first.seq and again.flags == first.flags
    conn.handle_segment(at + 0.05, TCPRepr(80, 40000, 9000, 5001, 0x12, 65535, mss=1460))
    assert conn.state.name == "ESTABLISHED"
    assert conn.cwnd == conn.mss and conn.rto == 3.0


# --- 14. malformed option lengths in a SYN -----------------------------------------------


def test_a_syn_with_a_malformed_option_is_answered() -> None:
    bad = (
        b"\x03\x04\x0e\x00",  # window scale of length 4
        b"\x08\x08" + bytes(6),  # timestamps of length 8
        b"\x02\x03\x05\x00",  # MSS of length 3
        b"\x02\x00\x00\x00",  # length 0
        b"\x02\x01\x00\x00",  # length 1
    )

    async def main() -> None:
        stack, link, _ = await v4_stack()
        for port, opts in enumerate(bad, 41000):
            n = 5 + len(opts) // 4
            seg = TCP(sport=port, dport=80, flags="S", seq=1000, dataofs=n) / Raw(opts)
            inject(stack, peer() / IP(src=PEER, dst=US) / seg)
            await settle()
            (answer,) = link.take()
            assert answer[TCP].flags == "SA" and answer[TCP].dport == port, opts
            assert answer[TCP].ack == 1001

    run(main())


# --- 9. the MTU of a router advertisement reaches TCP --------------------------------------


def test_an_ra_mtu_lowers_the_mss_and_a_larger_one_is_ignored() -> None:
    async def main() -> None:
        link = MemLink()
        cfg = NdpConfig(max_dad_delay=0.01, retrans_timer=0.05, rtr_solicitations=0)
        stack = await IPv6Stack.connect(link, cidrs=["fd00::2/64"], rng=random.Random(1), ndp=cfg)
        assert await stack.wait_ready()
        tcp: StackTCP[ipaddress.IPv6Address] = StackTCP(stack.ipv6)
        flows: asyncio.Queue[Any] = asyncio.Queue()

        async def keep(flow: Any) -> None:
            await flows.put(flow)
            await asyncio.Event().wait()

        tcp.listen(80, keep)

        def ra(mtu: int) -> Any:
            return (
                Ether(src=PEER_MAC, dst="33:33:00:00:00:01")
                / IPv6(src="fe80::1", dst="ff02::1", hlim=255)
                / ICMPv6ND_RA(routerlifetime=0)
                / ICMPv6NDOptSrcLLAddr(lladdr=PEER_MAC)
                / ICMPv6NDOptMTU(mtu=mtu)
            )

        inject(stack, ra(1400))
        inject(stack, ra(9000))  # more than the link carries: ignored (RFC 4861 6.3.4)
        assert stack.ipv6.mtu == 1400
        stack.ipv6.ndp.input(
            A6("fd00::1").packed,
            A6("fd00::2").packed,
            255,
            _ns_from_peer(),
            asyncio.get_running_loop().time(),
        )
        link.take()
        ip6 = IPv6(src="fd00::1", dst="fd00::2")
        inject(stack, Ether(src=PEER_MAC, dst=OUR_MAC) / ip6 / syn(options=[("MSS", 1440)]))
        await settle()
        (synack,) = [f for f in link.take() if f.haslayer(TCP)]
        assert dict(synack[TCP].options)["MSS"] == 1340  # 1400 - 60
        ack = TCP(sport=40000, dport=80, flags="A", seq=1001, ack=synack[TCP].seq + 1, window=65535)
        inject(stack, Ether(src=PEER_MAC, dst=OUR_MAC) / ip6 / ack)
        await settle()
        flow = flows.get_nowait()
        await flow.write(b"z" * 8000)
        await settle()
        data = [f for f in link.take() if f.haslayer(TCP) and len(f[TCP].payload)]
        assert data and max(len(f[IPv6]) for f in data) == 1400
        assert not any(f.haslayer("IPv6ExtHdrFragment") for f in data)

    run(main())


A6 = ipaddress.IPv6Address


def _ns_from_peer() -> Any:
    """A neighbour solicitation from fd00::1 with its MAC, so our replies go out at once."""
    return ic.NeighborSolicit(A6("fd00::2"), (ic.LinkAddrOption(True, MacAddr(PEER_MAC)),))


# --- 11. ICMP time exceeded when IPv4 reassembly gives up -----------------------------------


def test_ipv4_reassembly_timeout_sends_time_exceeded_once_the_first_fragment_came() -> None:
    async def main() -> None:
        link = MemLink()
        stack = await IPv4Stack.connect(
            link, cidr=f"{US}/24", rng=random.Random(1), reassembly=ReassemblyConfig(timeout=0.1)
        )
        inject(stack, Ether(src=PEER_MAC, dst=BCAST_MAC) / ARP(hwsrc=PEER_MAC, psrc=PEER, pdst=US))
        link.take()
        first = IP(src=PEER, dst=US, id=7, flags="MF", proto=17) / (b"a" * 64)
        inject(stack, peer() / first)
        # Only a later fragment of another datagram: no message (RFC 1122 3.3.2).
        inject(stack, peer() / IP(src=PEER, dst=US, id=8, frag=8, proto=17) / (b"b" * 8))
        await asyncio.sleep(0.4)
        (te,) = link.take()
        assert te[IP].dst == PEER and (te[ICMP].type, te[ICMP].code) == (11, 1)
        assert te[ICMP].payload.id == 7  # the quoted header (scapy: IPerror)
        assert stack.ipv4.reassembler.counters.timed_out == 2

    run(main())


# --- 16. IPv6 fragments ---------------------------------------------------------------------


async def v6_stack() -> tuple[IPv6Stack, MemLink]:
    link = MemLink()
    cfg = NdpConfig(max_dad_delay=0.01, retrans_timer=0.05, rtr_solicitations=0)
    stack = await IPv6Stack.connect(link, cidrs=["fd00::2/64"], rng=random.Random(1), ndp=cfg)
    assert await stack.wait_ready()
    now = asyncio.get_running_loop().time()
    stack.ipv6.ndp.input(A6("fd00::1").packed, A6("fd00::2").packed, 255, _ns_from_peer(), now)
    link.take()
    return stack, link


def test_ipv6_bad_fragments_get_parameter_problems() -> None:
    async def main() -> None:
        stack, link = await v6_stack()
        ip6 = Ether(src=PEER_MAC, dst=OUR_MAC) / IPv6(src="fd00::1", dst="fd00::2")
        # A non-last fragment of 13 bytes: code 0, pointing at the Payload Length.
        inject(stack, ip6 / IPv6ExtHdrFragment(id=1, m=1, nh=17) / (b"x" * 13))
        (pp,) = link.take()
        assert (pp[ICMPv6ParamProblem].code, pp[ICMPv6ParamProblem].ptr) == (0, 4)
        # A first fragment that stops inside the TCP header: code 3 (RFC 7112).
        inject(stack, ip6 / IPv6ExtHdrFragment(id=2, m=1, nh=6) / (b"y" * 8))
        (pp,) = link.take()
        assert pp[ICMPv6ParamProblem].code == 3 and pp[IPv6].dst == "fd00::1"
        # The same behind a destination-options header.
        opts = IPv6ExtHdrDestOpt(nh=6)
        inject(stack, ip6 / IPv6ExtHdrFragment(id=4, m=1, nh=60) / opts / (b"w" * 8))
        (pp,) = link.take()
        assert pp[ICMPv6ParamProblem].code == 3
        assert stack.ipv6.counters.rx_bad_fragments == 3
        # A well-formed first fragment is kept for reassembly, silently.
        inject(stack, ip6 / IPv6ExtHdrFragment(id=3, m=1, nh=17) / (b"z" * 16))
        assert link.take() == [] and len(stack.ipv6.reassembler) == 1
        assert stack.ipv6.reassembler.config.timeout == 60.0  # RFC 8200 4.5

    run(main())


# --- 12. DHCP: a lost lease ----------------------------------------------------------------


def test_after_expiry_discover_leaves_from_0_and_connections_on_the_old_address_end() -> None:
    async def main() -> None:
        sw = netlink.VnetSwitch()
        frames: list[bytes] = []
        sw.add_interface("mirror", mirror=True).set_receiver(lambda f: frames.append(bytes(f)))
        srv = await IPv4Stack.connect(sw.add_interface("srv"), cidr="10.0.0.1/24")
        server = DhcpServerDriver(
            srv,
            DhcpServerConfig(
                server_ip=A("10.0.0.1"),
                network=ipaddress.IPv4Network("10.0.0.0/24"),
                pool_first=A("10.0.0.100"),
                pool_last=A("10.0.0.199"),
                lease_time=600,
            ),
        )
        server.start()
        srv_tcp: StackTCP[A] = StackTCP(srv.ipv4)

        async def keep(flow: Any) -> None:
            await asyncio.Event().wait()

        srv_tcp.listen(80, keep)
        cli = await IPv4Stack.connect(sw.add_interface("cli"), cidr="0.0.0.0/0")
        r = await dhcp_configure(cli, timeout=60)
        assert isinstance(r, Ok)
        old = r.value.lease
        assert old is not None
        cli_tcp: StackTCP[A] = StackTCP(cli.ipv4)
        c = await cli_tcp.create_connection((A("10.0.0.1"), 80))
        assert isinstance(c, Ok)
        flow = c.value
        sw.partition({"srv"}, {"cli", "mirror"})
        await asyncio.sleep(620)  # renewing, rebinding, then the lease expires
        assert r.value.lease is None
        assert isinstance(await asyncio.wait_for(flow.read(), 5), Error)
        assert cli_tcp.connections() == 0
        await flow.close()
        await asyncio.sleep(1)
        pkts = [Ether(f) for f in frames]
        discovers = [p for p in pkts if p.haslayer(UDP) and p[UDP].dport == 67 and _mt(p) == 1]
        assert len(discovers) >= 2  # the first, and those after the expiry
        assert {p[IP].src for p in discovers} == {"0.0.0.0"}  # RFC 2131 4.1
        # Nothing left from the old address's connection after it expired, least of all
        # a segment from 0.0.0.0.
        assert not any(p.haslayer(TCP) and p[IP].src == "0.0.0.0" for p in pkts)
        await r.value.stop()

    sim.run(main(), seed=2)


def _mt(p: Any) -> int | None:
    for opt in p[DHCP].options if p.haslayer(DHCP) else ():
        if isinstance(opt, tuple) and opt[0] == "message-type":
            return int(opt[1])
    return None


def test_option_121_is_requested_and_its_default_route_wins() -> None:
    client = DhcpClient(
        MacAddr(OUR_MAC), rng=random.Random(1), config=DhcpClientConfig(arp_probes=0)
    )
    client.start(0.0)
    client.handle_timer(0.0)
    (discover,) = client.messages_to_send(0.0)
    assert isinstance(discover, Transmit) and 121 in discover.message.parameter_request_list
    # 10.9.0.0/16 via 10.0.0.7, the default via 10.0.0.254 (RFC 3442 encoding).
    routes = bytes([16, 10, 9, 10, 0, 0, 7, 0, 10, 0, 0, 254])

    def reply(req: DhcpRepr, mt: DhcpMessageType) -> bytes:
        return DhcpRepr(
            op=DhcpOp.REPLY,
            xid=req.xid,
            chaddr=req.chaddr,
            message_type=mt,
            yiaddr=A("10.0.0.50"),
            server_id=A("10.0.0.1"),
            lease_time=3600,
            subnet_mask=A("255.255.255.0"),
            routers=(A("10.0.0.1"),),  # to be ignored: option 121 is there
            other=((121, routes),),
        ).to_bytes()

    client.handle_message(0.1, reply(discover.message, DhcpMessageType.OFFER))
    (request,) = client.messages_to_send(0.1)
    assert isinstance(request, Transmit)
    client.handle_message(0.2, reply(request.message, DhcpMessageType.ACK))
    (bound,) = client.events()
    assert isinstance(bound, Bound)
    assert bound.lease.routers == (A("10.0.0.254"),)
    assert bound.lease.routes == (
        (ipaddress.IPv4Network("10.9.0.0/16"), A("10.0.0.7")),
        (ipaddress.IPv4Network("0.0.0.0/0"), A("10.0.0.254")),
    )


# --- 17. IPv4 neighbours are checked -------------------------------------------------------


def test_an_arp_entry_past_its_reachable_time_is_checked_and_a_moved_host_found() -> None:
    arp, out = _arp_core()
    peer_ip = int(A(PEER))
    arp.input(_arp(1, PEER), now=0.0)  # the peer asks for us: learnt
    out.clear()
    assert arp.lookup(peer_ip, 10.0) == bytes.fromhex(PEER_MAC.replace(":", "")) and out == []
    # Used after the reachable time: still used, and asked at its MAC (unicast).
    assert arp.lookup(peer_ip, 31.0) is not None
    (check,) = out
    assert check.dst == PEER_MAC and check[ARP].op == 1 and check[ARP].pdst == PEER
    # The host took another MAC and does not answer at the old one: two more checks,
    # then the entry goes, and the next packet asks the whole link.
    arp.handle_timer(32.0)
    arp.handle_timer(33.0)
    assert len(out) == 3 and all(f.dst == PEER_MAC for f in out)
    arp.handle_timer(34.0)
    assert arp.lookup(peer_ip, 34.0) is None and arp.counters.stale_dropped == 1
    arp.send(peer_ip, [bytearray(20)], now=34.0)
    assert out[-1].dst == BCAST_MAC
    new_mac = "02:00:00:00:00:77"
    arp.input(_arp(2, PEER, sha=new_mac), now=34.1)
    assert arp.lookup(peer_ip, 34.1) == bytes.fromhex(new_mac.replace(":", ""))


def test_an_answered_check_keeps_the_entry() -> None:
    arp, out = _arp_core()
    peer_ip = int(A(PEER))
    arp.input(_arp(1, PEER), now=0.0)
    arp.lookup(peer_ip, 31.0)
    arp.input(_arp(2, PEER), now=31.1)  # the answer
    arp.handle_timer(40.0)
    assert len(out) == 2 and arp.lookup(peer_ip, 40.0) is not None  # reply + one check
    assert arp.poll_at() is None


def test_after_a_retransmitted_syn_an_echoed_timestamp_still_times_the_path() -> None:
    conn = Connection.connect(Config(), 40000, 80, 5000, 0.0)
    conn.segments_to_send(0.0)
    at = conn.poll_at() or 0.0
    conn.handle_timer(at)
    (again,) = conn.segments_to_send(at)
    assert again.timestamp is not None
    synack = TCPRepr(
        80, 40000, 9000, 5001, 0x12, 65535, mss=1460, timestamp=(7, again.timestamp[0])
    )
    conn.handle_segment(at + 0.05, synack)
    assert conn.cwnd == conn.mss  # still one segment (RFC 5681 3.1)
    assert conn.rto < 1.0  # from the 50 ms sample, not the 3 s fallback


# --- 15. echo replies carry record route and timestamps back ------------------------------


def test_echo_reply_returns_record_route_and_timestamp_options_updated() -> None:
    rr = bytes([7, 11, 4]) + bytes(8)  # record route with room for two addresses
    ts = bytes([68, 12, 5, 0x01]) + bytes(8)  # timestamps with addresses, room for one
    opts = rr + b"\x01" + ts  # 11 + 1 + 12 = 24 bytes

    async def main() -> None:
        stack, link, _ = await v4_stack()
        inject(stack, peer() / IP(src=PEER, dst=US, options=[IPOption(opts)]) / ICMP(type=8))
        (reply,) = link.take()
        raw = bytes(reply[IP])
        hl = (raw[0] & 0x0F) * 4
        got = raw[20:hl]
        assert reply[ICMP].type == 0 and hl > 20
        us = A(US).packed
        # Record route: our address in the first slot, the pointer moved on.
        assert got[:3] == bytes([7, 11, 8]) and got[3:7] == us and got[7:11] == bytes(4)
        # Timestamp (flag 1): our address and a time with the "not UT" bit set.
        t = got[11:23]
        assert t[:4] == bytes([68, 12, 13, 0x01]) and t[4:8] == us and t[8] & 0x80
        # Without options the reply has none.
        inject(stack, peer() / IP(src=PEER, dst=US) / ICMP(type=8))
        (plain,) = link.take()
        assert plain[IP].ihl == 5

    run(main())
