"""The offload path without a kernel: a recording OffloadLink, scapy as the peer's decoder.

What the kernel would do with a NEEDS_CSUM frame (complete the checksum from
``csum_start``) is done here by hand, so the partial checksums we write are checked.
"""

from __future__ import annotations

import asyncio
import ipaddress
import random
from collections.abc import Sequence

from scapy.layers.inet import IP, TCP
from scapy.layers.l2 import ARP, Ether
from tests.ipstack.memlink import OUR_MAC, PEER, PEER_MAC, US, MemLink
from tests.ipstack.test_layers import from_peer, learn_peer, run

from miragekit.link import CSUM_NEEDED, OFFLOAD_CSUM, OFFLOAD_TSO4, MetaReceiver, OffloadLink
from miragekit.net import TCP as TCPDriver
from miragekit.net import IPv4Stack
from miragekit.v1 import Buffer
from miragekit.wire._checksum import ones_sum, pseudo_sum

_PEER_B = bytes(int(x) for x in PEER.split("."))
_US_B = bytes(int(x) for x in US.split("."))


class OffloadMemLink(MemLink):
    """A MemLink that offers checksum and segmentation offload and records its use."""

    def __init__(self, mtu: int = 1500) -> None:
        super().__init__(mtu)
        self.meta_receiver: MetaReceiver | None = None
        self.offloaded: list[tuple[bytes, int, int, int]] = []

    @property
    def offloads(self) -> int:
        return OFFLOAD_CSUM | OFFLOAD_TSO4

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
