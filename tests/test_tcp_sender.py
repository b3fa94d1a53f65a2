"""TcpSender: the prebuilt-header fast path gives the same bytes as the general one.

The general path (TCPRepr.emit into IPv4.allocate_header, then IPv4.send_frame) is the
reference; scapy decodes the frames as an independent check of both checksums.
"""

from __future__ import annotations

import asyncio
import hashlib
import ipaddress
import random
from collections.abc import Callable, Sequence
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from scapy.layers.inet import IP, TCP
from scapy.layers.l2 import Ether

from miragekit import sim
from miragekit.link import LinkParams, VnetSwitch
from miragekit.macaddr import MacAddr
from miragekit.net import TCP as TCPLayer
from miragekit.net import ArpConfig, Ethif, IPv4, IPv4Stack
from miragekit.net._tcp import TcpSender
from miragekit.result import Ok
from miragekit.wire._checksum import checksum
from miragekit.wire.tcp import ACK, CWR, ECE, FIN, PSH, SYN, TCPRepr

LADDR = bytes([10, 0, 0, 1])
RADDR = bytes([10, 0, 0, 2])
GW = bytes([10, 0, 0, 254])
FAR = bytes([192, 0, 2, 9])
PEER_MAC = bytes.fromhex("020000000002")
GW_MAC = bytes.fromhex("0200000000fe")


class CaptureLink:
    """A FrameLink that keeps what is sent."""

    mtu = 1500

    def __init__(self) -> None:
        self.frames: list[bytes] = []

    def mac(self) -> MacAddr:
        return MacAddr("02:00:00:00:00:01")

    def set_receiver(self, fn: Callable[[memoryview], None] | None) -> None:
        pass

    def send(self, frame: Any) -> None:
        self.frames.append(bytes(frame))

    def sendv(self, bufs: Sequence[Any]) -> None:
        self.frames.append(b"".join(bufs))


async def _layer(seed: int = 7) -> tuple[IPv4, CaptureLink]:
    link = CaptureLink()
    ip = IPv4(Ethif(link), rng=random.Random(seed))  # type: ignore[arg-type]
    ip.configure(ipaddress.IPv4Interface("10.0.0.1/24"), [ipaddress.IPv4Address("10.0.0.254")])
    now = asyncio.get_running_loop().time()
    ip.arp.add_static(int.from_bytes(RADDR, "big"), PEER_MAC, now)
    ip.arp.add_static(int.from_bytes(GW, "big"), GW_MAC, now)
    link.frames.clear()  # the gratuitous ARP
    return ip, link


def _general(ip: IPv4, link: CaptureLink, seg: TCPRepr, raddr: bytes = RADDR) -> bytes:
    n = seg.buffer_len()
    frame = ip.allocate_header(raddr, 6, 34 + n, df=True)  # as the TCP driver asks
    seg.emit(frame[34:], LADDR, raddr)
    if seg.ecn:
        ip.set_ecn(frame, seg.ecn)  # as the driver does for ECN (RFC 3168)
    ip.send_frame(frame)
    return link.frames.pop()


def _but_ident(frame: bytes) -> bytes:
    """The frame without the IPv4 ID and header checksum: the general path takes the ID
    per destination, a connection's sender its own counter (docs/hardening.md)."""
    return frame[:18] + frame[20:24] + frame[26:]


def _fast(ip: IPv4, seg: TCPRepr, raddr: bytes = RADDR) -> bytes | None:
    """The fast path's frame for ``seg``, sent as the driver sends it (a burst of one)."""
    sender = TcpSender(ip, LADDR, raddr, seg.src_port, seg.dst_port)
    frame = sender.frame(seg, asyncio.get_running_loop().time())
    if frame is not None:
        ip.send_frames([frame])
    return frame


def _scapy_checks(frame: bytes) -> None:
    pkt = Ether(frame)
    again = pkt.copy()
    del again[IP].chksum
    del again[TCP].chksum
    rebuilt = Ether(bytes(again))
    assert rebuilt[IP].chksum == pkt[IP].chksum
    assert rebuilt[TCP].chksum == pkt[TCP].chksum


segments = st.builds(
    lambda sp, dp, seq, ack, flags, win, plen, ts, ecn: TCPRepr(
        sp,
        dp,
        seq,
        ack,
        flags,
        win,
        bytes(random.Random(plen).randbytes(plen)),
        timestamp=ts,
        ecn=ecn,
    ),
    st.integers(1, 65535),
    st.integers(1, 65535),
    st.integers(0, 2**32 - 1),
    st.integers(0, 2**32 - 1),
    st.sampled_from([ACK, ACK | PSH, ACK | FIN, ACK | PSH | FIN, 0, ACK | ECE, ACK | PSH | CWR]),
    st.integers(0, 65535),
    st.sampled_from([0, 1, 2, 7, 536, 1447, 1448, 1460]),
    st.none() | st.tuples(st.integers(0, 2**32 - 1), st.integers(0, 2**32 - 1)),
    st.sampled_from([0, 2]),  # Not-ECT, ECT(0)
)


@settings(max_examples=300, deadline=None)
@given(segs=st.lists(segments, min_size=1, max_size=4))
def test_frame_is_byte_identical_to_the_general_path(segs: list[TCPRepr]) -> None:
    async def main() -> None:
        ref, ref_link = await _layer()
        ip, _ = await _layer()
        for seg in segs:
            if seg.buffer_len() + 20 > 1500:
                assert _fast(ip, seg) is None
                continue
            want = _general(ref, ref_link, seg)
            got = _fast(ip, seg)
            assert got is not None and _but_ident(got) == _but_ident(want)
            assert Ether(got)[IP].flags == "DF"
            assert Ether(got)[IP].tos & 3 == seg.ecn
            _scapy_checks(got)
            assert Ether(got)[TCP].seq == seg.seq
        assert ip.counters.tx_packets == ref.counters.tx_packets

    asyncio.run(main())


handshakes = st.builds(
    lambda sp, dp, seq, ack, flags, win, mss, ws, sackp, ts, ecn: TCPRepr(
        sp, dp, seq, ack, flags, win, b"", mss, ws, sackp, (), ts, ecn=ecn
    ),
    st.integers(1, 65535),
    st.integers(1, 65535),
    st.integers(0, 2**32 - 1),
    st.integers(0, 2**32 - 1),
    st.sampled_from([SYN, SYN | ACK, SYN | ACK | ECE, SYN | ECE | CWR]),
    st.integers(0, 65535),
    st.none() | st.integers(0, 65535),
    st.none() | st.integers(0, 14),
    st.booleans(),
    st.none() | st.tuples(st.integers(0, 2**32 - 1), st.integers(0, 2**32 - 1)),
    st.sampled_from([0, 2]),
)


@settings(max_examples=300, deadline=None)
@given(segs=st.lists(handshakes, min_size=1, max_size=4))
def test_handshake_frames_are_byte_identical_to_the_general_path(segs: list[TCPRepr]) -> None:
    """SYNs and SYN-ACKs with any mix of the handshake's options come out of the prebuilt
    headers (TcpSender._frame_handshake) as the general path writes them."""

    async def main() -> None:
        ref, ref_link = await _layer()
        ip, _ = await _layer()
        for seg in segs:
            sender = TcpSender(ip, LADDR, RADDR, seg.src_port, seg.dst_port)
            sender.frame(seg, asyncio.get_running_loop().time())  # headers refreshed
            assert sender._frame_handshake(seg) is not None
            want = _general(ref, ref_link, seg)
            got = _fast(ip, seg)
            assert got is not None and _but_ident(got) == _but_ident(want), seg
            assert checksum(got[14:34]) == 0
            _scapy_checks(got)

    asyncio.run(main())


def test_checksum_all_ones_edge() -> None:
    """Payloads whose sum makes the checksum field 0 or 0xFFFF come out as the general
    path writes them."""

    async def main() -> None:
        ref, ref_link = await _layer()
        ip, _ = await _layer()
        rng = random.Random(3)
        seen = set()
        for _ in range(3000):
            seg = TCPRepr(40000, 80, rng.getrandbits(32), 1, ACK, 100, rng.randbytes(2))
            want = _general(ref, ref_link, seg)
            got = _fast(ip, seg)
            assert got is not None and _but_ident(got) == _but_ident(want)
            assert checksum(got[14:34]) == 0  # the IPv4 header's, with its own ID
            seen.add(want[50:52])
        assert len(seen) > 1000

    asyncio.run(main())


def test_segments_with_other_options_match_the_general_path() -> None:
    """The handshake's options, SACK blocks, urgent data and unknown options: the TCP
    header is emitted behind the prebuilt headers, with the same bytes as the general
    path; only a segment above the MTU is left to it."""

    async def main() -> None:
        ref, ref_link = await _layer()
        ip, _ = await _layer()
        base = TCPRepr(40000, 80, 1, 2, ACK, 100, b"x", timestamp=(1, 2))
        synack = TCPRepr(80, 40000, 7, 9, SYN | ACK, 65535, b"", 1460, 7, True, (), (3, 4))
        for seg in (
            base._replace(sack_blocks=((5, 9),)),
            base._replace(sack_blocks=((5, 9), (11, 20), (30, 31)), payload=b""),
            synack,
            synack._replace(timestamp=None, wscale=None, sack_permitted=False),
            base._replace(wscale=7),
            base._replace(sack_permitted=True),
            base._replace(urgent=1, flags=ACK | 0x20),
            base._replace(unknown_options=((30, b"ab"),)),
            base._replace(sack_blocks=((5, 9),), ecn=2),  # ECT(0) data with SACK (RFC 3168)
        ):
            want = _general(ref, ref_link, seg)
            got = _fast(ip, seg)
            assert got is not None and _but_ident(got) == _but_ident(want), seg
            assert checksum(got[14:34]) == 0
            _scapy_checks(got)
        assert _fast(ip, base._replace(payload=bytes(1449))) is None  # 1449 + 32 + 20 > 1500
        assert _fast(ip, base) is not None
        assert _fast(ip, base._replace(sack_blocks=((5, 9),), ecn=3)) is None  # CE: general

    asyncio.run(main())


def test_connections_to_one_destination_share_its_headers() -> None:
    """The driver's cache: the second connection to a peer costs no ARP lookup, and a
    change of the layer (here the TTL) builds the shared headers again."""

    async def main() -> None:
        ip, _ = await _layer()
        now = asyncio.get_running_loop().time()
        seg = TCPRepr(40000, 80, 1, 2, ACK, 100, b"abc", timestamp=(1, 2))
        cache: dict[bytes, Any] = {}
        first = TcpSender(ip, LADDR, RADDR, 40000, 80, cache)
        assert first.frame(seg, now) is not None
        calls = 0
        real = ip.prebuilt_header

        def counted(*a: Any, **k: Any) -> Any:
            nonlocal calls
            calls += 1
            return real(*a, **k)

        ip.prebuilt_header = counted  # type: ignore[method-assign]
        second = TcpSender(ip, LADDR, RADDR, 40001, 80, cache)
        f = second.frame(seg._replace(src_port=40001), now)
        assert f is not None and calls == 0 and Ether(f)[TCP].sport == 40001
        _scapy_checks(f)
        ip.ttl = 9
        f = second.frame(seg._replace(src_port=40001), now)
        assert f is not None and calls == 1 and Ether(f)[IP].ttl == 9
        f = first.frame(seg, now)  # the rebuilt entry serves the first one too
        assert f is not None and calls == 1 and Ether(f)[IP].ttl == 9

    asyncio.run(main())


def test_next_hop_follows_arp_and_configuration_changes() -> None:
    async def main() -> None:
        ip, _ = await _layer()
        loop = asyncio.get_running_loop()
        seg = TCPRepr(40000, 80, 1, 2, ACK, 100, b"abc", timestamp=(1, 2))
        near = TcpSender(ip, LADDR, RADDR, 40000, 80)
        far = TcpSender(ip, LADDR, FAR, 40000, 80)
        now = loop.time()

        def dst_mac(f: bytes | None) -> bytes:
            assert f is not None
            return f[0:6]

        assert dst_mac(near.frame(seg, now)) == PEER_MAC
        assert dst_mac(far.frame(seg, now)) == GW_MAC  # off-link: via the gateway
        # The peer's MAC changes in the ARP cache: the next frame has the new one.
        new_mac = bytes.fromhex("0200000000aa")
        ip.arp.add_static(int.from_bytes(RADDR, "big"), new_mac, now)
        assert dst_mac(near.frame(seg, now)) == new_mac
        # Another gateway: the far destination goes through it.
        await ip.set_ip_gateways([ipaddress.IPv4Address("10.0.0.253")])
        assert far.frame(seg, now) is None  # 10.0.0.253 is not resolved
        ip.arp.add_static(int.from_bytes(bytes([10, 0, 0, 253]), "big"), new_mac, now)
        assert dst_mac(far.frame(seg, now)) == new_mac
        # No gateway at all: no route, the general path counts it.
        await ip.set_ip_gateways([])
        assert far.frame(seg, now) is None
        # The TTL is in the prebuilt header.
        ip.ttl = 9
        f = near.frame(seg, now)
        assert f is not None and Ether(f)[IP].ttl == 9
        _scapy_checks(f)
        # The ARP entry expires: the fast path stops using the MAC.
        later = now + ip.arp.config.entry_ttl + 1
        assert near.frame(seg, later) is None
        assert ip.arp.lookup(int.from_bytes(RADDR, "big"), later) is None

    asyncio.run(main())


def test_ipv4_seam_header_ident_generation() -> None:
    async def main() -> None:
        ip, _ = await _layer()
        now = asyncio.get_running_loop().time()
        r = ip.prebuilt_header(RADDR, 6, now)
        assert r is not None
        hdr, until = r
        assert len(hdr) == 34 and until > now
        pkt = Ether(hdr)
        assert (pkt.dst, pkt[IP].src, pkt[IP].dst) == ("02:00:00:00:00:02", "10.0.0.1", "10.0.0.2")
        assert (pkt[IP].ttl, pkt[IP].proto, pkt[IP].len, pkt[IP].id) == (64, 6, 0, 0)
        far = ip.prebuilt_header(FAR, 6, now)
        assert far is not None and far[0][:6] == GW_MAC and far[1] > now
        # DF on request (TCP's path-MTU discovery), in the header's fixed part.
        df = ip.prebuilt_header(RADDR, 6, now, df=True)
        assert df is not None and Ether(df[0])[IP].flags == "DF" and pkt[IP].flags == 0
        # IDs per destination: another destination's packets leave RADDR's counter alone.
        a = ip.next_ident(RADDR)
        ip.next_ident(FAR)
        assert ip.next_ident(RADDR) == (a + 1) & 0xFFFF
        g = ip.generation
        assert ip.generation == g  # reading it changes nothing
        ip.ttl = 9
        assert ip.generation != g
        g = ip.generation
        ip.arp.add_static(int.from_bytes(RADDR, "big"), bytes.fromhex("0200000000aa"), now)
        assert ip.generation != g
        g = ip.generation
        await ip.set_ip_gateways([])
        assert ip.generation != g
        assert ip.prebuilt_header(FAR, 6, now) is None  # no route
        assert ip.prebuilt_header(bytes([10, 0, 0, 9]), 6, now) is None  # not resolved

    asyncio.run(main())


def test_send_frames_counts_and_keeps_order() -> None:
    async def main() -> None:
        ip, link = await _layer()
        sender = TcpSender(ip, LADDR, RADDR, 40000, 80)
        now = asyncio.get_running_loop().time()
        frames = []
        for i in range(5):
            f = sender.frame(TCPRepr(40000, 80, i, 0, ACK, 1, bytes([i])), now)
            assert f is not None
            frames.append(f)
        before = ip._ethif.counters.tx_frames
        ip.send_frames(frames)
        assert link.frames == frames
        assert ip._ethif.counters.tx_frames == before + 5

    asyncio.run(main())


def test_transfer_survives_arp_expiry_in_simulated_time() -> None:
    """A bulk transfer outlives many ARP entry lifetimes: each expiry sends frames the
    general way (queued while ARP resolves again), and the stream arrives intact."""
    data = random.Random(5).randbytes(3_000_000)

    async def main() -> None:
        sw = VnetSwitch()
        stacks = []
        for i in (1, 2):
            vif = sw.add_interface(f"h{i}", link=LinkParams(latency=0.002, rate=200e6))
            st_ = await IPv4Stack.connect(vif, cidr=f"10.0.0.{i}/24", arp=ArpConfig(entry_ttl=0.05))
            stacks.append(st_)
        a, b = TCPLayer(stacks[0].ipv4), TCPLayer(stacks[1].ipv4)
        done: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()

        async def sink(flow: Any) -> None:
            h = hashlib.sha256()
            while isinstance(r := await flow.read(), Ok):
                h.update(r.value)
            done.set_result(h.digest())

        b.listen(80, sink)
        r = await a.create_connection((ipaddress.IPv4Address("10.0.0.2"), 80))
        assert isinstance(r, Ok)
        assert await r.value.write(data) == Ok(None)
        await r.value.close()
        assert await asyncio.wait_for(done, 60) == hashlib.sha256(data).digest()
        arp = stacks[0].ipv4.arp.counters
        assert arp.requests_sent >= 3  # resolved again after expiries
        assert stacks[0].ipv4.counters.tx_packets > len(data) // 1448

    sim.run(main(), seed=3)


def test_send_frames_uses_the_links_own_batch_method() -> None:
    """A link with ``send_frames`` gets each burst in one call (the io_uring/sendmmsg
    hook); without it, frames go one ``send`` each, in order."""

    class BatchLink(CaptureLink):
        def __init__(self) -> None:
            super().__init__()
            self.batches: list[list[bytes]] = []

        def send_frames(self, frames: Sequence[Any]) -> None:
            self.batches.append([bytes(f) for f in frames])

    async def main() -> None:
        link = BatchLink()
        ip = IPv4(Ethif(link), rng=random.Random(1))  # type: ignore[arg-type]
        ip.configure(ipaddress.IPv4Interface("10.0.0.1/24"))
        ip.send_frames([b"a" * 60, b"b" * 60])
        assert link.batches == [[b"a" * 60, b"b" * 60]]
        assert ip._ethif.counters.tx_frames >= 2

    asyncio.run(main())


def test_send_split_gives_the_parts_to_a_link_that_takes_them_else_joined() -> None:
    """``IPv4.send_split``: a link with ``send_split`` (a ring-mapped device) gets the
    headers and payloads apart in one call; any other gets the joined frames, in order,
    as ``send_frames`` would; both counted as packets and frames sent."""

    class SplitLink(CaptureLink):
        def __init__(self) -> None:
            super().__init__()
            self.splits: list[tuple[list[bytes], list[bytes]]] = []

        def send_split(self, heads: Sequence[Any], bodies: Sequence[Any]) -> None:
            self.splits.append(([bytes(h) for h in heads], [bytes(b) for b in bodies]))

    heads = [b"a" * 60, b"b" * 54]
    bodies: list[bytes | memoryview] = [b"", memoryview(b"xyz")]
    for link in (SplitLink(), CaptureLink()):

        async def main(link: CaptureLink = link) -> None:
            ip = IPv4(Ethif(link), rng=random.Random(1))  # type: ignore[arg-type]
            ip.configure(ipaddress.IPv4Interface("10.0.0.1/24"))
            sent = len(link.frames)  # the announcement of the address
            packets, frames = ip.counters.tx_packets, ip._ethif.counters.tx_frames
            ip.send_split(heads, bodies)
            if isinstance(link, SplitLink):
                assert link.splits == [([b"a" * 60, b"b" * 54], [b"", b"xyz"])]
                assert link.frames[sent:] == []
            else:
                assert link.frames[sent:] == [b"a" * 60, b"b" * 54 + b"xyz"]
            assert ip.counters.tx_packets == packets + 2
            assert ip._ethif.counters.tx_frames == frames + 2

        asyncio.run(main())
