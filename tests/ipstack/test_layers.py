"""ARP, reassembly, ICMP, IPv4 and UDP without a kernel: sans-I/O cores fed with ``now``,
and the whole stack on an in-memory link, checked with scapy as the peer's decoder."""

from __future__ import annotations

import asyncio
import ipaddress
import random
from collections.abc import Coroutine, Sequence
from typing import Any, TypeVar

from scapy.layers.inet import ICMP, IP, UDP
from scapy.layers.l2 import ARP, Ether
from tests.ipstack.memlink import OUR_MAC, PEER, PEER_MAC, US, MemLink

from miragekit.macaddr import MacAddr
from miragekit.net import ArpConfig, Ethif, IPv4, IPv4Stack, ReassemblyConfig
from miragekit.net._arp import Arp
from miragekit.net._fragment import Reassembler
from miragekit.net._icmp import Icmp
from miragekit.result import Ok

T = TypeVar("T")
A = ipaddress.IPv4Address


def run(coro: Coroutine[Any, Any, T]) -> T:
    async def bounded() -> T:
        return await asyncio.wait_for(coro, 20)

    return asyncio.run(bounded())


async def make_stack(mtu: int = 1500, gateways: Sequence[str] = ()) -> tuple[IPv4Stack, MemLink]:
    link = MemLink(mtu)
    stack = await IPv4Stack.connect(link, cidr=f"{US}/24", gateways=gateways, rng=random.Random(1))
    return stack, link


def inject(stack: IPv4Stack, pkt: Any) -> None:
    stack.receive_frame(memoryview(bytearray(bytes(pkt))))


def from_peer() -> Any:
    return Ether(src=PEER_MAC, dst=OUR_MAC)


def learn_peer(stack: IPv4Stack) -> None:
    inject(
        stack,
        Ether(src=PEER_MAC, dst="ff:ff:ff:ff:ff:ff")
        / ARP(op=1, hwsrc=PEER_MAC, psrc=PEER, pdst=US),
    )


# --- ARP, sans-I/O ------------------------------------------------------------------------


def arp_packet(op: int, sha: str, spa: str, tpa: str, tha: str = "00:00:00:00:00:00") -> memoryview:
    return memoryview(bytes(ARP(op=op, hwsrc=sha, psrc=spa, hwdst=tha, pdst=tpa)))


def test_arp_request_reply_and_learning() -> None:
    out: list[bytes] = []
    arp = Arp(MacAddr(OUR_MAC).packed, lambda b: out.append(b"".join(b)))
    arp.ips = {int(A(US))}
    arp.input(arp_packet(1, PEER_MAC, PEER, US), now=0.0)
    (reply,) = [Ether(f) for f in out]
    assert reply.dst == PEER_MAC and reply[ARP].op == 2
    assert (reply[ARP].psrc, reply[ARP].hwsrc, reply[ARP].pdst) == (US, OUR_MAC, PEER)
    assert arp.lookup(int(A(PEER)), now=1.0) == MacAddr(PEER_MAC).packed
    assert arp.lookup(int(A(PEER)), now=61.0) is None  # expired


def test_arp_queue_retries_and_failure() -> None:
    out: list[bytes] = []
    wakes: list[float] = []
    cfg = ArpConfig(retry_interval=1.0, retries=3, queue_packets=2)
    arp = Arp(
        MacAddr(OUR_MAC).packed, lambda b: out.append(b"".join(b)), wake=wakes.append, config=cfg
    )
    arp.ips = {int(A(US))}
    dst = int(A(PEER))
    for i in range(3):
        arp.send(dst, [bytearray(14) + b"pkt%d" % i], now=0.0)
    assert arp.counters.queued == 2 and arp.counters.dropped_queue_full == 1
    assert wakes == [1.0] and arp.counters.requests_sent == 1
    arp.handle_timer(1.0)
    arp.handle_timer(2.0)
    assert arp.counters.requests_sent == 3
    arp.handle_timer(3.0)
    assert arp.counters.resolution_failed == 1 and arp.counters.dropped_unresolved == 2
    assert arp.poll_at() is None
    requests = [Ether(f) for f in out]
    assert all(
        r[ARP].op == 1 and r[ARP].pdst == PEER and r.dst == "ff:ff:ff:ff:ff:ff" for r in requests
    )


def test_arp_resolution_releases_queue_in_order() -> None:
    out: list[bytes] = []
    arp = Arp(MacAddr(OUR_MAC).packed, lambda b: out.append(b"".join(b)))
    arp.ips = {int(A(US))}
    for i in range(3):
        arp.send(int(A(PEER)), [bytearray(14) + b"pkt%d" % i], now=0.0)
    out.clear()
    arp.input(arp_packet(2, PEER_MAC, PEER, US, OUR_MAC), now=0.5)
    assert [f[14:] for f in out] == [b"pkt0", b"pkt1", b"pkt2"]
    assert all(f[:6] == MacAddr(PEER_MAC).packed for f in out)
    assert arp.counters.resolved == 1


def test_arp_cache_is_bounded_and_ignores_strangers() -> None:
    arp = Arp(MacAddr(OUR_MAC).packed, lambda b: None, config=ArpConfig(max_entries=4))
    arp.ips = {int(A(US))}
    for i in range(10):
        arp.input(arp_packet(1, f"02:00:00:00:01:{i:02x}", f"10.0.0.{10 + i}", US), now=0.0)
    assert len(arp.entries(0.0)) == 4 and arp.counters.evicted == 6
    # A reply meant for someone else does not enter the cache.
    arp.input(arp_packet(2, "02:00:00:00:09:09", "10.0.0.99", "10.0.0.98"), now=0.0)
    assert int(A("10.0.0.99")) not in arp.entries(0.0)
    arp.input(memoryview(b"\x00\x01\x08\x00"), now=0.0)
    assert arp.counters.rx_malformed == 1


def test_a_refresh_with_the_same_mac_keeps_the_generation() -> None:
    """Kept MACs (prebuilt headers) are looked up again only when an entry comes, goes
    or changes its MAC: a refresh confirming the MAC we had leaves the generation (the
    holder asks again at the ``until`` it was given, which the refresh only moves later)."""
    arp = Arp(MacAddr(OUR_MAC).packed, lambda b: None)
    arp.ips = {int(A(US))}
    peer = int(A(PEER))
    arp.input(arp_packet(1, PEER_MAC, PEER, US), now=0.0)  # learnt: a new entry
    g = arp.generation
    entry = arp.lookup_entry(peer, 1.0)
    assert g > 0 and entry is not None and entry[1] == 30.0
    arp.input(arp_packet(1, PEER_MAC, PEER, "10.0.0.9"), now=20.0)  # refreshed, same MAC
    assert arp.generation == g
    refreshed = arp.lookup_entry(peer, 21.0)
    assert refreshed is not None and refreshed[0] == entry[0] and refreshed[1] == 50.0
    arp.input(arp_packet(1, "02:00:00:00:00:99", PEER, "10.0.0.9"), now=22.0)  # it moved
    assert arp.generation == g + 1


def _arp_case_frames() -> list[tuple[str, bytes]]:
    """ARP frames of every kind a host meets: the requests a crowded segment is made of,
    and each one :meth:`Arp.passes_by` must leave to :meth:`Arp.input`."""
    bcast, stranger = "ff:ff:ff:ff:ff:ff", "02:00:00:00:01:01"

    def frame(op: int, sha: str, spa: str, tpa: str, dst: str = bcast) -> bytes:
        return bytes(Ether(src=sha, dst=dst) / ARP(op=op, hwsrc=sha, psrc=spa, pdst=tpa))

    return [
        ("stranger asks for stranger", frame(1, stranger, "10.0.0.50", "10.0.0.9")),
        ("probe for a stranger", frame(1, stranger, "0.0.0.0", "10.0.0.9")),
        ("asks for us", frame(1, stranger, "10.0.0.51", US)),
        ("known sender", frame(1, PEER_MAC, PEER, "10.0.0.9")),
        ("pending sender", frame(1, stranger, "10.0.0.77", "10.0.0.9")),
        ("claims our address", frame(1, stranger, US, "10.0.0.9")),
        ("martian sender", frame(1, stranger, "127.0.0.1", "10.0.0.9")),
        ("broadcast sender", frame(1, stranger, "10.0.0.255", "10.0.0.9")),
        ("multicast sha", frame(1, "03:00:00:00:01:01", "10.0.0.52", "10.0.0.9")),
        ("our own mac", frame(1, OUR_MAC, "10.0.0.53", "10.0.0.9")),
        ("reply", frame(2, stranger, "10.0.0.54", "10.0.0.9")),
        ("other op", frame(3, stranger, "10.0.0.55", "10.0.0.9")),
        ("not ethernet", frame(1, stranger, "10.0.0.56", "10.0.0.9")[:14] + b"\0\6" + b"\0" * 26),
        ("short", frame(1, stranger, "10.0.0.57", "10.0.0.9")[:40]),
        ("unicast to us", frame(1, stranger, "10.0.0.58", "10.0.0.9", dst=OUR_MAC)),
    ]


def _arp_state(observer: bool) -> tuple[Arp, list[bytes]]:
    out: list[bytes] = []
    arp = Arp(MacAddr(OUR_MAC).packed, lambda b: out.append(b"".join(b)))
    arp.ips = {int(A(US))}
    arp.subnet_broadcast = int(A("10.0.0.255"))
    arp.input(arp_packet(1, PEER_MAC, PEER, US), now=0.0)  # a known sender
    arp.send(int(A("10.0.0.77")), [bytearray(14) + b"waits"], now=0.0)  # a pending one
    if observer:
        arp.observer = lambda op, sha, spa, tpa: out.append(b"seen %d" % spa)
    return arp, out


def test_arp_passes_by_only_what_input_would_only_count() -> None:
    """The early exit for other hosts' requests (:meth:`Arp.passes_by`, what the interface
    asks first) takes only requests for another address from a sender we know nothing
    of, and leaves ARP exactly as :meth:`Arp.input` would: same counters, cache, pending
    queue and frames sent, for every kind of ARP frame."""
    taken: set[str] = set()
    for observer in (False, True):
        for name, raw in _arp_case_frames():
            fast, fast_out = _arp_state(observer)
            slow, slow_out = _arp_state(observer)
            frame = memoryview(raw)
            if not fast.passes_by(frame):
                fast.input(frame[14:], 1.0)
            elif not observer:
                taken.add(name)
            slow.input(frame[14:], 1.0)
            assert fast.counters == slow.counters, name
            assert fast_out == slow_out, name
            assert fast.entries(1.0) == slow.entries(1.0), name
            assert (fast.pending, fast.generation) == (slow.pending, slow.generation), name
    # A unicast frame never passes by: Ethernet accepts it (or not) first.
    assert taken == {"stranger asks for stranger", "probe for a stranger"}


def test_the_interface_counts_passed_by_requests_as_ethernet_and_arp_do() -> None:
    """Through a whole stack: each kind of ARP frame leaves Ethernet's and ARP's counters,
    the ARP cache and the frames sent as the general path (ethertype dispatch to
    ``receive_arp``) leaves them."""

    async def main() -> None:
        fast, fast_link = await make_stack()
        slow, slow_link = await make_stack()
        for s in (fast, slow):
            learn_peer(s)
        for name, raw in _arp_case_frames():
            fast.receive_frame(memoryview(raw))
            slow_eth = slow.ethif
            fn = slow_eth.dispatch(memoryview(raw), {0x0806: slow.ipv4.receive_arp})
            if fn is not None:
                fn(memoryview(raw)[14:], 0)
            assert fast.ethif.counters == slow.ethif.counters, name
            assert fast.ipv4.arp.counters == slow.ipv4.arp.counters, name
            assert fast_link.sent == slow_link.sent, name
        now = asyncio.get_running_loop().time()
        assert fast.ipv4.arp.entries(now) == slow.ipv4.arp.entries(now)

    run(main())


def test_requests_for_other_addresses_still_refresh_conflict_and_count() -> None:
    """Other hosts' requests for other addresses are settled early (a busy segment is
    mostly those), yet one from a sender we know refreshes it, one from our own address
    is a conflict, a martian sender is counted, and a malformed one is still malformed."""
    out: list[bytes] = []
    arp = Arp(MacAddr(OUR_MAC).packed, lambda b: out.append(b"".join(b)))
    arp.ips = {int(A(US))}
    arp.subnet_broadcast = int(A("10.0.0.255"))
    for i in range(5):  # strangers asking for strangers: nothing learnt, nothing sent
        arp.input(arp_packet(1, f"02:00:00:00:01:{i:02x}", f"10.0.0.{10 + i}", "10.0.0.9"), 0.0)
    assert arp.entries(0.0) == {} and out == [] and arp.counters.rx_packets == 5
    arp.input(arp_packet(1, PEER_MAC, PEER, US), now=0.0)  # learnt from its request for us
    out.clear()
    arp.input(arp_packet(1, "02:00:00:00:00:99", PEER, "10.0.0.9"), now=20.0)  # it moved
    assert arp.lookup(int(A(PEER)), now=70.0) == MacAddr("02:00:00:00:00:99").packed
    out.clear()
    arp.input(arp_packet(1, "02:00:00:00:00:98", US, "10.0.0.9"), now=21.0)
    assert arp.counters.conflicts == 1 and arp.counters.defended == 1 and len(out) == 1
    arp.input(arp_packet(1, "02:00:00:00:00:97", "10.0.0.255", "10.0.0.9"), now=22.0)
    arp.input(arp_packet(1, "02:00:00:00:00:96", "127.0.0.1", "10.0.0.9"), now=22.0)
    assert arp.counters.rx_martian == 2
    arp.input(arp_packet(1, "03:00:00:00:00:01", "10.0.0.50", "10.0.0.9"), now=22.0)
    arp.input(arp_packet(1, OUR_MAC, "10.0.0.51", "10.0.0.9"), now=22.0)
    assert arp.counters.rx_ignored == 2
    bad = bytearray(arp_packet(1, "02:00:00:00:00:95", "10.0.0.52", "10.0.0.9"))
    bad[5] = 16  # plen 16 with IPv4
    arp.input(memoryview(bytes(bad)), now=22.0)
    assert arp.counters.rx_malformed == 1 and arp.counters.rx_packets == 13


# --- reassembly, sans-I/O -------------------------------------------------------------------

HDR = memoryview(bytes(IP(src=PEER, dst=US, proto=17, id=7)))[:20]
KEY = (b"\x0a\0\0\x01", b"\x0a\0\0\x02", 17, 7)


def test_reassembly_out_of_order_and_duplicates() -> None:
    r = Reassembler()
    data = bytes(range(256)) * 10
    parts = [(o, data[o : o + 800]) for o in range(0, len(data), 800)]
    random.Random(3).shuffle(parts)
    results = []
    for o, p in [parts[0], *parts]:  # with a duplicate
        results.append(r.add(KEY, HDR, o, o + 800 < len(data), memoryview(p), now=0.0))
    done = [x for x in results if x is not None]
    assert len(done) == 1
    pkt = IP(bytes(done[0]))
    assert pkt.len == 20 + len(data) and pkt.flags == 0 and pkt.frag == 0
    assert bytes(pkt.payload) == data
    chk = pkt.chksum
    del pkt.chksum
    assert IP(bytes(pkt)).chksum == chk  # our recomputed header checksum is right
    assert r.bytes_held == 0 and len(r) == 0


def test_reassembly_limits_overlap_and_timeout() -> None:
    wakes: list[float] = []
    r = Reassembler(
        wake=wakes.append,
        config=ReassemblyConfig(max_datagrams=2, max_fragments=3, max_bytes=4000, timeout=30.0),
    )
    assert r.add(KEY, HDR, 0, True, memoryview(bytes(16)), now=0.0) is None
    assert r.add(KEY, HDR, 8, True, memoryview(bytes(16)), now=0.0) is None  # overlaps
    assert r.counters.dropped_overlap == 1 and len(r) == 0
    for i in range(4):
        r.add(KEY, HDR, i * 8, True, memoryview(bytes(8)), now=0.0)
    assert r.counters.dropped_limit == 1  # the 4th fragment is one too many
    r.add((*KEY[:3], 1), HDR, 0, True, memoryview(bytes(8)), now=1.0)
    r.add((*KEY[:3], 2), HDR, 0, True, memoryview(bytes(8)), now=2.0)
    r.add((*KEY[:3], 3), HDR, 0, True, memoryview(bytes(8)), now=3.0)
    assert len(r) == 2  # the oldest was evicted
    r.add((*KEY[:3], 4), HDR, 0, True, memoryview(bytes(3000)), now=4.0)
    r.add((*KEY[:3], 5), HDR, 0, True, memoryview(bytes(3000)), now=4.0)
    assert r.bytes_held <= 4000
    assert r.add(KEY, HDR, 0, True, memoryview(bytes(5)), now=5.0) is None  # MF, not 8k bytes
    assert r.counters.dropped_bad >= 1
    assert r.poll_at() == 34.0
    r.handle_timer(100.0)
    assert len(r) == 0 and r.counters.timed_out >= 1 and r.bytes_held == 0


def test_icmp_errors_are_rate_limited() -> None:
    icmp = Icmp(error_rate=10.0, error_burst=2)
    pkt = memoryview(bytes(IP(src=PEER, dst=US) / UDP(dport=9) / b"x"))
    sent = [icmp.unreachable(3, pkt, now=0.0) for _ in range(5)]
    assert sum(m is not None for m in sent) == 2 and icmp.counters.errors_rate_limited == 3
    assert icmp.unreachable(3, pkt, now=0.1) is not None  # one token back after 0.1 s
    assert sent[0] is not None
    msg = ICMP(sent[0])
    assert msg.type == 3 and msg.code == 3 and bytes(msg.payload)[:28] == bytes(pkt)[:28]


# --- the stack on an in-memory link ----------------------------------------------------------


def test_gratuitous_arp_and_echo() -> None:
    async def main() -> None:
        stack, link = await make_stack()
        (garp,) = link.take()
        assert garp[ARP].op == 1 and garp[ARP].psrc == US == garp[ARP].pdst
        learn_peer(stack)
        link.take()
        inject(stack, from_peer() / IP(src=PEER, dst=US) / ICMP(type=8, id=5, seq=6) / b"abc")
        (reply,) = link.take()
        assert reply.dst == PEER_MAC and reply[IP].src == US and reply[IP].dst == PEER
        assert reply[ICMP].type == 0 and (reply[ICMP].id, reply[ICMP].seq) == (5, 6)
        assert bytes(reply[ICMP].payload) == b"abc"
        chk = reply[ICMP].chksum
        del reply[ICMP].chksum
        assert Ether(bytes(reply))[ICMP].chksum == chk
        # Not to a broadcast; other ICMP messages go to the registered handler.
        bcast = Ether(src=PEER_MAC, dst="ff:ff:ff:ff:ff:ff") / IP(src=PEER, dst="10.0.0.255")
        inject(stack, bcast / ICMP(type=8))
        assert link.take() == [] and stack.ipv4.icmp.counters.echo_requests_ignored == 1
        others: list[tuple[str, int]] = []
        stack.ipv4.set_handler(1, lambda s, d, p, v: others.append((str(s), p[0])))
        inject(
            stack, from_peer() / IP(src=PEER, dst=US) / ICMP(type=3, code=1) / IP(dst=PEER) / UDP()
        )
        assert others == [(PEER, 3)] and link.take() == []
        await stack.disconnect()

    run(main())


def test_bad_checksums_dropped_and_counted() -> None:
    async def main() -> None:
        stack, link = await make_stack()
        learn_peer(stack)
        link.take()
        inject(stack, from_peer() / IP(src=PEER, dst=US, chksum=0x1234) / ICMP(type=8))
        inject(stack, from_peer() / IP(src=PEER, dst=US) / ICMP(type=8, chksum=0x1234))
        inject(stack, from_peer() / IP(src=PEER, dst=US) / UDP(dport=7, chksum=0x1234) / b"x")
        assert link.take() == []
        c = stack.counters()
        assert c["ipv4"]["rx_bad_checksum"] == 1
        assert c["icmp"]["rx_malformed"] == 1
        assert c["udp"]["rx_bad_checksum"] == 1

    run(main())


def test_udp_demux_write_and_unreachable() -> None:
    async def main() -> None:
        stack, link = await make_stack()
        learn_peer(stack)
        link.take()
        got: list[tuple[str, int, bytes]] = []

        async def cb(src: A, dst: A, sport: int, buf: memoryview) -> None:
            got.append((str(src), sport, bytes(buf)))

        stack.listen_udpv4(port=5000, callback=cb)
        inject(stack, from_peer() / IP(src=PEER, dst=US) / UDP(sport=1234, dport=5000) / b"data")
        inject(
            stack,
            from_peer() / IP(src=PEER, dst=US) / UDP(sport=1234, dport=5000, chksum=0) / b"nock",
        )
        await asyncio.sleep(0)
        assert got == [(PEER, 1234, b"data"), (PEER, 1234, b"nock")]
        inject(stack, from_peer() / IP(src=PEER, dst=US) / UDP(sport=1234, dport=5001) / b"data")
        (unreach,) = link.take()
        assert unreach[ICMP].type == 3 and unreach[ICMP].code == 3
        assert unreach[ICMP].payload.payload.dport == 5001  # scapy: IPerror / UDPerror
        # No ICMP error about a broadcast.
        inject(
            stack,
            Ether(src=PEER_MAC, dst="ff:ff:ff:ff:ff:ff")
            / IP(src=PEER, dst="10.0.0.255")
            / UDP(dport=5001),
        )
        assert link.take() == []
        await stack.udp.write(b"out", dest_ip=A(PEER), dest_port=53)
        (out,) = link.take()
        assert out.dst == PEER_MAC and 49152 <= out[UDP].sport <= 65535 and out[UDP].dport == 53
        chk = out[UDP].chksum
        del out[UDP].chksum
        assert Ether(bytes(out))[UDP].chksum == chk
        assert bytes(out[UDP].payload) == b"out"

    run(main())


def test_routing_gateway_and_fragmentation() -> None:
    async def main() -> None:
        stack, link = await make_stack(mtu=576, gateways=[PEER])
        link.take()
        ip = stack.ipv4
        assert ip.get_ip() == [A(US)] and ip.get_ip_netmasks() == [
            ipaddress.IPv4Network("10.0.0.0/24")
        ]
        assert ip.get_ip_gateways() == [A(PEER)] and ip.get_source(dst=A("8.8.8.8")) == A(US)
        payload = bytes(range(256)) * 8  # 2048 bytes: 4 fragments at MTU 576
        await stack.udp.write(payload, dest_ip=A("192.0.2.9"), dest_port=9)
        (req,) = link.take()
        assert req[ARP].pdst == PEER  # off-link: resolve the gateway
        inject(stack, from_peer() / ARP(op=2, hwsrc=PEER_MAC, psrc=PEER, hwdst=OUR_MAC, pdst=US))
        frags = link.take()
        assert len(frags) == 4 and all(f.dst == PEER_MAC and len(f[IP]) <= 576 for f in frags)
        assert all(f[IP].dst == "192.0.2.9" for f in frags)
        r = Reassembler()
        whole = None
        for f in frags:
            raw = memoryview(bytes(f[IP]))
            whole = (
                r.add(KEY, raw[:20], f[IP].frag * 8, bool(f[IP].flags.MF), raw[20:], 0.0) or whole
            )
        assert whole is not None
        assert bytes(IP(bytes(whole))[UDP].payload) == payload

    run(main())


def test_v1_async_input_paths() -> None:
    async def main() -> None:
        link = MemLink()
        r1 = await Ethif.connect(link)
        assert isinstance(r1, Ok)
        eth = r1.value
        r2 = await IPv4.connect(eth, ip=A(US), network=ipaddress.IPv4Network("10.0.0.0/24"))
        assert isinstance(r2, Ok)
        ip = r2.value
        seen: list[str] = []

        async def on_arp(b: memoryview) -> None:
            seen.append("arp")
            await ip.input_arpv4(b)

        async def on_ip(b: memoryview) -> None:
            async def tcp(s: A, d: A, p: memoryview) -> None:
                seen.append(f"tcp {s}->{d} {bytes(p)[:2].hex()}")

            async def udp(s: A, d: A, p: memoryview) -> None:
                seen.append("udp")

            async def default(proto: int, s: A, d: A, p: memoryview) -> None:
                seen.append(f"proto {proto}")

            await ip.input(b, tcp=tcp, udp=udp, default=default)

        async def on_v6(b: memoryview) -> None:
            seen.append("ipv6")

        for pkt in [
            from_peer() / ARP(op=1, hwsrc=PEER_MAC, psrc=PEER, pdst=US),
            from_peer() / IP(src=PEER, dst=US, proto=6) / b"\x12\x34rest",
            from_peer() / IP(src=PEER, dst=US, proto=47) / b"gre",
            from_peer() / IP(src=PEER, dst="10.0.0.3") / b"not ours",
            Ether(src=PEER_MAC, dst=OUR_MAC, type=0x86DD) / b"v6",
            Ether(src=PEER_MAC, dst="02:99:99:99:99:99") / IP(src=PEER, dst=US),
        ]:
            await eth.input(memoryview(bytes(pkt)), arpv4=on_arp, ipv4=on_ip, ipv6=on_v6)
        assert seen == ["arp", f"tcp {PEER}->{US} 1234", "proto 47", "ipv6"]
        assert ip.counters.rx_not_for_us == 1 and eth.counters.rx_not_for_us == 1
        assert ip.arp.lookup(int(A(PEER)), 0.0) == MacAddr(PEER_MAC).packed
        frame, hl = ip.allocate_frame(dst=A(PEER), proto="UDP")
        assert hl == 34 and bytes(frame[6:12]) == MacAddr(OUR_MAC).packed
        udp_hdr = bytearray(b"\x00\x07\x00\x07\x00\x0b\x00\x00")
        c = ip.checksum(frame[:hl], [udp_hdr, b"abc"])
        expected = UDP(bytes(IP(src=US, dst=PEER) / UDP(sport=7, dport=7) / b"abc")[20:]).chksum
        assert c == expected

    run(main())


def test_arp_frames_go_straight_to_arp_counted_as_ethernet_counts_them() -> None:
    """The interface hands ARP to ARP without the ethertype dispatch: Ethernet still
    counts each frame, refuses one unicast to another MAC or too short, and ARP sees
    (and counts, and answers) the rest."""

    async def main() -> None:
        stack, link = await make_stack()
        eth, arp = stack.ethif.counters, stack.ipv4.arp.counters
        frames0, packets0 = eth.rx_frames, arp.rx_packets
        link.sent.clear()
        stranger = Ether(src="02:00:00:00:01:01", dst="ff:ff:ff:ff:ff:ff")
        inject(
            stack,
            stranger / ARP(op=1, hwsrc="02:00:00:00:01:01", psrc="10.0.0.50", pdst="10.0.0.9"),
        )
        assert (eth.rx_frames, arp.rx_packets, link.sent) == (frames0 + 1, packets0 + 1, [])
        inject(
            stack,
            Ether(src=PEER_MAC, dst="02:99:99:99:99:99")
            / ARP(op=1, hwsrc=PEER_MAC, psrc=PEER, pdst=US),
        )
        assert eth.rx_not_for_us == 1 and arp.rx_packets == packets0 + 1
        stack.receive_frame(memoryview(bytes(Ether(src=PEER_MAC, dst=OUR_MAC, type=0x0806))[:13]))
        assert (
            eth.rx_short == 1
            and arp.rx_packets == packets0 + 1
            and stack.iface.internal_errors == 0
        )
        learn_peer(stack)
        assert arp.rx_packets == packets0 + 2 and arp.replies_sent == 1
        (reply,) = [Ether(f) for f in link.sent]
        assert reply[ARP].op == 2 and reply[ARP].pdst == PEER and reply.dst == PEER_MAC
        assert eth.rx_frames == frames0 + 4

    run(main())
