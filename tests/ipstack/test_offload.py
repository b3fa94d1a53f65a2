"""The offload path without a kernel: a recording OffloadLink, scapy as the peer's decoder.

What the kernel would do with a NEEDS_CSUM frame (complete the checksum from
``csum_start``) is done here by hand, so the partial checksums we write are checked.
"""

from __future__ import annotations

import asyncio
import ipaddress
import random
from collections.abc import Sequence
from typing import Any

import pytest
from scapy.layers.inet import IP, TCP
from scapy.layers.inet6 import (
    ICMPv6ND_NA,
    ICMPv6ND_NS,
    ICMPv6NDOptDstLLAddr,
    ICMPv6NDOptSrcLLAddr,
    ICMPv6PacketTooBig,
    IPv6,
    IPv6ExtHdrFragment,
)
from scapy.layers.l2 import ARP, Ether
from scapy.packet import Raw
from tests.ipstack.memlink import OUR_MAC, PEER, PEER_MAC, US, MemLink
from tests.ipstack.test_ipv6_layers import FAST, PEER6, US6
from tests.ipstack.test_layers import from_peer, learn_peer, run

from miragekit.link import (
    CSUM_NEEDED,
    CSUM_VALID,
    OFFLOAD_CSUM,
    OFFLOAD_TSO4,
    OFFLOAD_TSO6,
    MetaReceiver,
    OffloadLink,
)
from miragekit.net import TCP as TCPDriver
from miragekit.net import IPv4Stack, IPv6Stack
from miragekit.result import Ok
from miragekit.v1 import Buffer
from miragekit.wire._checksum import ones_sum, pseudo_sum

_PEER_B = bytes(int(x) for x in PEER.split("."))
_US_B = bytes(int(x) for x in US.split("."))


class OffloadMemLink(MemLink):
    """A MemLink that offers checksum and segmentation offload and records its use."""

    def __init__(self, mtu: int = 1500, offloads: int = OFFLOAD_CSUM | OFFLOAD_TSO4) -> None:
        super().__init__(mtu)
        self.meta_receiver: MetaReceiver | None = None
        self.offloaded: list[tuple[bytes, int, int, int]] = []
        self._offloads = offloads

    @property
    def offloads(self) -> int:
        return self._offloads

    def set_receiver_meta(self, fn: MetaReceiver | None) -> None:
        self.meta_receiver = fn

    def send_offload(
        self, bufs: Sequence[Buffer], *, csum_start: int, hdr_len: int, gso_size: int
    ) -> None:
        self.offloaded.append((b"".join(bufs), csum_start, hdr_len, gso_size))


_check: type[OffloadLink] = OffloadMemLink


def complete(frame: bytes, csum_start: int) -> bytes:
    """What the kernel does for NEEDS_CSUM: the checksum over [csum_start:], field at +16."""
    s = ones_sum(frame[csum_start:])
    out = bytearray(frame)
    out[csum_start + 16 : csum_start + 18] = (~s & 0xFFFF).to_bytes(2, "big")
    return bytes(out)


def tcp_ok(frame: bytes) -> bool:
    """Whether the TCP checksum of ``frame`` (over IPv4 or IPv6) is right, by scapy."""
    pkt = Ether(frame)
    sent = pkt[TCP].chksum
    del pkt[TCP].chksum
    return bool(Ether(bytes(pkt))[TCP].chksum == sent)


async def make() -> tuple[IPv4Stack, OffloadMemLink, TCPDriver[ipaddress.IPv4Address]]:
    link = OffloadMemLink()
    stack = await IPv4Stack.connect(link, cidr=f"{US}/24", rng=random.Random(1))
    assert link.meta_receiver is not None and link.receiver is None
    return stack, link, TCPDriver(stack.ipv4)


def syn(chksum: int | None = None) -> bytes:
    tcp = TCP(sport=4000, dport=80, flags="S", seq=1000, options=[("MSS", 1460)])
    if chksum is not None:
        tcp.chksum = chksum
    return bytes(from_peer() / IP(src=PEER, dst=US) / tcp)


def test_a_needs_csum_frame_is_trusted_a_plain_one_verified() -> None:
    async def body() -> None:
        stack, link, tcp = await make()
        assert tcp.config.tso_max > 60000
        learn_peer(stack)
        tcp.listen(80, lambda flow: asyncio.sleep(0))
        assert link.meta_receiver is not None
        # A wrong checksum without flags: dropped and counted.
        link.meta_receiver(memoryview(bytearray(syn(0x1234))), 0)
        await asyncio.sleep(0.01)
        assert tcp.stats["bad_checksum"] == 1 and not link.offloaded
        # The same with NEEDS_CSUM (the field holds a partial sum): trusted, answered.
        link.meta_receiver(memoryview(bytearray(syn(0x1234))), CSUM_NEEDED)
        await asyncio.sleep(0.01)
        assert tcp.stats["bad_checksum"] == 1
        (frame, start, hdr_len, gso), *_ = link.offloaded
        assert (start, gso) == (34, 0) and hdr_len == len(frame)
        reply = Ether(complete(frame, start))
        assert reply[TCP].flags == "SA" and reply[TCP].ack == 1001
        assert tcp_ok(complete(frame, start))
        await tcp.disconnect()

    run(body())


def test_a_large_segment_goes_out_whole_with_gso_and_a_partial_checksum() -> None:
    async def body() -> None:
        stack, link, _ = await make()
        learn_peer(stack)
        ip = stack.ipv4
        payload = bytes(range(256)) * 200  # 51,200 bytes
        frame = ip.allocate_header(_PEER_B, 6, 34 + 20)
        hdr = bytes(TCP(sport=80, dport=4000, seq=7, ack=9, flags="PA", window=100))[:20]
        frame[34:54] = hdr
        psum = pseudo_sum(_US_B, _PEER_B, 6, 20 + len(payload))
        frame[50:52] = psum.to_bytes(2, "big")
        ip.send_offload(frame, payload, 1448)
        ((out, start, hdr_len, gso),) = link.offloaded
        assert (start, hdr_len, gso) == (34, 54, 1448)
        pkt = Ether(complete(out, start))
        assert pkt[Ether].dst == PEER_MAC and pkt[IP].len == 20 + 20 + len(payload)
        assert bytes(pkt[TCP].payload) == payload
        assert tcp_ok(complete(out, start))
        assert ip.counters.tx_fragments == 0 and ip.counters.tx_offload == 1

    run(body())


def test_while_arp_resolves_a_large_segment_waits_as_its_first_mss() -> None:
    async def body() -> None:
        stack, link, _ = await make()
        ip = stack.ipv4
        payload = bytes(range(256)) * 40  # 10,240 bytes
        frame = ip.allocate_header(_PEER_B, 6, 34 + 20)
        frame[34:54] = bytes(TCP(sport=80, dport=4000, seq=7, ack=9, flags="FPA"))[:20]
        link.take()  # the gratuitous ARP
        ip.send_offload(frame, payload, 1448)
        assert not link.offloaded
        (req,) = link.take()
        assert req[ARP].pdst == PEER
        reply = Ether(src=PEER_MAC, dst=OUR_MAC) / ARP(
            op=2, hwsrc=PEER_MAC, psrc=PEER, hwdst=OUR_MAC, pdst=US
        )
        stack.receive_frame(memoryview(bytearray(bytes(reply))))
        (out,) = link.take()
        assert out[IP].len == 20 + 20 + 1448 and bytes(out[TCP].payload) == payload[:1448]
        assert out[TCP].flags == "A"  # no FIN or PSH: the rest comes later
        assert tcp_ok(bytes(out))
        assert ip.counters.tx_offload_unresolved == 1

    run(body())


# --- IPv6: the same offload path ----------------------------------------------------------

ALL6 = OFFLOAD_CSUM | OFFLOAD_TSO4 | OFFLOAD_TSO6
PEER6_B = PEER6.packed
US6_B = US6.packed


async def make6(
    offloads: int = ALL6,
) -> tuple[IPv6Stack, OffloadMemLink, TCPDriver[ipaddress.IPv6Address]]:
    link = OffloadMemLink(offloads=offloads)
    stack = await IPv6Stack.connect(link, cidrs=["fd00::2/64"], rng=random.Random(1), ndp=FAST)
    assert await stack.wait_ready(US6, timeout=5)
    link.take()
    return stack, link, TCPDriver(stack.ipv6)


def learn_peer6(stack: IPv6Stack) -> None:
    """The peer solicits us: its MAC is known (STALE) from then on."""
    ns = ICMPv6ND_NS(tgt=str(US6)) / ICMPv6NDOptSrcLLAddr(lladdr=PEER_MAC)
    inject6(stack, from_peer6(dst=US6, hlim=255) / ns)


def from_peer6(dst: ipaddress.IPv6Address = US6, **kw: Any) -> Any:
    return Ether(src=PEER_MAC, dst=OUR_MAC) / IPv6(src=str(PEER6), dst=str(dst), **kw)


def inject6(stack: IPv6Stack, pkt: Any, flags: int = 0) -> None:
    stack.iface.receive_frame(memoryview(bytearray(bytes(pkt))), flags)


def tso6_frame(stack: IPv6Stack, flags: str = "PA") -> memoryview:
    """Ethernet, IPv6 and a 20-byte TCP header to the peer, the checksum field holding the
    pseudo-header sum of a 20 + 51,200-byte segment."""
    frame = stack.ipv6.allocate_header(PEER6_B, 6, 54 + 20, US6_B)
    frame[54:74] = bytes(TCP(sport=80, dport=4000, seq=7, ack=9, flags=flags, window=100))[:20]
    frame[70:72] = pseudo_sum(US6_B, PEER6_B, 6, 20 + 51_200).to_bytes(2, "big")
    return frame


PAYLOAD6 = bytes(range(256)) * 200  # 51,200 bytes


def test_ipv6_uses_the_tso6_offload_and_its_receiver_the_flags() -> None:
    """IPv6 alone on the device: it takes TSO6 (not TSO4) and installs the flag-taking
    receiver; without TSO6 it sends no offloaded frame and TCP no super-segment."""

    async def body() -> None:
        stack, link, tcp = await make6()
        assert stack.ipv6.offload is link and link.meta_receiver is not None
        assert link.receiver is None and tcp.config.tso_max == 65535 - 60
        await stack.disconnect()
        stack, link, tcp = await make6(OFFLOAD_CSUM | OFFLOAD_TSO4)
        assert stack.ipv6.offload is None and tcp.config.tso_max == 0
        with pytest.raises(ValueError, match="no IPv6 offload"):
            stack.ipv6.send_offload(tso6_frame(stack), PAYLOAD6, 1428)

    run(body())


def test_a_large_ipv6_segment_goes_out_whole_with_gso_and_a_partial_checksum() -> None:
    async def body() -> None:
        stack, link, _ = await make6()
        learn_peer6(stack)
        ip = stack.ipv6
        ip.send_offload(tso6_frame(stack), PAYLOAD6, 1428)
        ((out, start, hdr_len, gso),) = link.offloaded
        assert (start, hdr_len, gso) == (54, 74, 1428)
        pkt = Ether(complete(out, start))
        assert pkt[Ether].dst == PEER_MAC and pkt[IPv6].plen == 20 + len(PAYLOAD6)
        assert bytes(pkt[TCP].payload) == PAYLOAD6
        assert tcp_ok(complete(out, start))
        # Uncompleted, the field holds the pseudo-header sum: the checksum is wrong.
        assert not tcp_ok(out)
        assert ip.counters.tx_fragments == 0 and ip.counters.tx_offload == 1
        # A packet that fits goes out as one frame, without segmentation.
        ip.send_offload(tso6_frame(stack), PAYLOAD6[:1000], 1428)
        assert link.offloaded[1][3] == 0

    run(body())


def test_a_packet_too_big_shrinks_the_segments_the_device_cuts() -> None:
    """RFC 8201: after a Packet Too Big of 1280 the device cuts at 1280 - 40 - 20 even
    when TCP, not yet told, asks for more; the packet is still never fragmented."""

    async def body() -> None:
        stack, link, _ = await make6()
        learn_peer6(stack)
        quote = IPv6(src=str(US6), dst=str(PEER6)) / TCP(sport=80, dport=4000) / (b"x" * 1300)
        inject6(stack, from_peer6() / ICMPv6PacketTooBig(mtu=1280) / quote)
        assert stack.ipv6.path_mtu(PEER6) == 1280
        stack.ipv6.send_offload(tso6_frame(stack), PAYLOAD6, 1428)
        ((out, start, _, gso),) = link.offloaded
        assert gso == 1280 - 40 - 20 and tcp_ok(complete(out, start))
        assert stack.ipv6.counters.tx_fragments == 0

    run(body())


def test_while_ndp_resolves_a_large_ipv6_segment_waits_as_its_first_mss() -> None:
    async def body() -> None:
        stack, link, _ = await make6()
        stack.ipv6.send_offload(tso6_frame(stack, "FPA"), PAYLOAD6, 1428)
        assert not link.offloaded
        (ns,) = link.take()
        assert ns[ICMPv6ND_NS].tgt == str(PEER6)
        na = ICMPv6ND_NA(tgt=str(PEER6), R=0, S=1, O=1) / ICMPv6NDOptDstLLAddr(lladdr=PEER_MAC)
        inject6(stack, from_peer6(hlim=255) / na)
        (out,) = link.take()
        assert out[IPv6].plen == 20 + 1428 and bytes(out[TCP].payload) == PAYLOAD6[:1428]
        assert out[TCP].flags == "A"  # no FIN or PSH: the rest comes later
        assert tcp_ok(bytes(out))
        assert stack.ipv6.counters.tx_offload_unresolved == 1

    run(body())


def test_tcp_over_ipv6_trusts_needs_csum_and_sends_super_segments() -> None:
    """The driver end to end: a SYN with a wrong (partial) checksum and NEEDS_CSUM is
    answered, one without flags dropped; then 200 KB leave in a few TSO frames whose
    completed checksums and payload are right."""

    async def body() -> None:
        stack, link, tcp = await make6()
        learn_peer6(stack)
        got: list[Any] = []

        async def serve(flow: Any) -> None:
            got.append(flow)
            await flow.write(DATA6)
            await asyncio.sleep(1)

        tcp.listen(80, serve)
        opts = [("MSS", 1440), ("WScale", 7), ("SAckOK", b"")]
        syn = from_peer6() / TCP(sport=4000, dport=80, flags="S", seq=1000, window=65535,
                                 options=opts, chksum=0x1234)  # fmt: skip
        inject6(stack, syn)
        await asyncio.sleep(0.01)
        assert tcp.stats["bad_checksum"] == 1 and not link.offloaded
        inject6(stack, syn, CSUM_NEEDED)
        await asyncio.sleep(0.01)
        ((frame, start, _, gso),) = link.offloaded
        assert (start, gso) == (54, 0)
        synack = Ether(complete(frame, start))
        assert synack[TCP].flags == "SA" and tcp_ok(complete(frame, start))
        link.offloaded.clear()
        iss = synack[TCP].seq + 1
        sent = b""
        frames = 0
        for _ in range(200):  # the peer acknowledges all it got, window 4096 << 7
            ack = from_peer6() / TCP(sport=4000, dport=80, flags="A", seq=1001,
                                     ack=iss + len(sent), window=4096)  # fmt: skip
            inject6(stack, ack)
            await asyncio.sleep(0.005)
            for f, start, hdr_len, gso in link.offloaded:
                pkt = Ether(complete(f, start))
                assert tcp_ok(complete(f, start)) and hdr_len == 54 + 20
                assert pkt[TCP].seq == iss + len(sent)
                data = bytes(pkt[TCP].payload)
                # Above the MTU: cut by the device at the peer's MSS.
                assert gso == (1440 if len(data) > 1440 else 0)
                sent += data
                frames += 1
            link.offloaded.clear()
            if len(sent) >= len(DATA6):
                break
        assert sent == DATA6
        assert frames <= 10  # super-segments: 140 would be needed at the MSS
        assert stack.ipv6.counters.tx_fragments == 0 and tcp.internal_errors == 0
        await tcp.disconnect()

    run(body())


DATA6 = bytes(range(251)) * 800  # 200,800 bytes


def test_tcp_over_ipv6_to_our_own_address_with_offload() -> None:
    """To our own address the offloaded packet is delivered here as the device would
    hand it over (``NEEDS_CSUM``, the checksum unfinished, above the MTU): 200 KB echo
    back byte-exact, nothing on the link."""

    async def body() -> None:
        stack, link, tcp = await make6()

        async def echo(flow: Any) -> None:
            while isinstance(r := await flow.read(), Ok):
                await flow.write(r.value)

        tcp.listen(7, echo)
        r = await tcp.create_connection((US6, 7))
        assert isinstance(r, Ok), r
        flow = r.value
        await flow.write(DATA6)
        back = b""
        while len(back) < len(DATA6):
            got = await asyncio.wait_for(flow.read(), 5)
            assert isinstance(got, Ok), got
            back += bytes(got.value)
        assert back == DATA6
        assert not link.offloaded and not link.sent
        c = stack.ipv6.counters
        assert c.tx_loopback > 0 and tcp.stats["bad_checksum"] == 0
        await tcp.disconnect()

    run(body())


def test_tcp_over_ipv6_trusts_data_valid_and_verifies_a_reassembled_segment() -> None:
    """``DATA_VALID`` (the device checked the sum) is trusted as ``NEEDS_CSUM`` is; a
    segment rebuilt from fragments is not what the device vouched for: verified."""

    async def body() -> None:
        stack, link, tcp = await make6()
        learn_peer6(stack)
        tcp.listen(80, lambda flow: asyncio.sleep(0))
        syn = from_peer6() / TCP(sport=4001, dport=80, flags="S", seq=5, chksum=0x1234)
        inject6(stack, syn, CSUM_VALID)
        await asyncio.sleep(0.01)
        ((frame, start, _, _),) = link.offloaded
        assert Ether(complete(frame, start))[TCP].flags == "SA"
        assert tcp.stats["bad_checksum"] == 0
        seg = bytes(TCP(sport=4002, dport=80, flags="S", seq=5, chksum=0x1234) / (b"x" * 40))
        for off, more, part in ((0, 1, seg[:32]), (4, 0, seg[32:])):
            frag = IPv6ExtHdrFragment(nh=6, id=7, m=more, offset=off) / Raw(part)
            inject6(stack, from_peer6(nh=44) / frag, CSUM_VALID)
        await asyncio.sleep(0.01)
        assert stack.ipv6.reassembler.counters.reassembled == 1
        assert tcp.stats["bad_checksum"] == 1
        await tcp.disconnect()

    run(body())
