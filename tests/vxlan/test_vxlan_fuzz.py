"""VXLAN fuzzing: mutated datagrams (the VXLAN header, and inner frames whose checksums
are recomputed) into a VxlanNetif on loopback with a whole stack on it, fresh for each
example: nothing raises, every datagram is accounted for, and inner segments with fixed
sums reach TCP (none is dropped for its checksum)."""

from __future__ import annotations

import asyncio
import socket
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from scapy.layers.inet import ICMP, IP, TCP, UDP
from scapy.layers.l2 import ARP, Ether
from tests.fuzzkit import fix_frame, mutation, valid_sum_frame

from miragekit.link import VxlanConfig, VxlanNetif
from miragekit.macaddr import MacAddr
from miragekit.result import Ok
from miragekit.stack import DirectStackV4, Static
from miragekit.v1 import StackConfig
from miragekit.wire import vxlan

VNI = 77
OUR_MAC, PEER_MAC = "02:00:00:00:77:02", "02:00:00:00:77:01"
US, PEER = "10.7.0.2", "10.7.0.1"
E = Ether(src=PEER_MAC, dst=OUR_MAC)
INNER = [
    bytes(Ether(src=PEER_MAC, dst="ff:ff:ff:ff:ff:ff") / ARP(hwsrc=PEER_MAC, psrc=PEER, pdst=US)),
    bytes(E / IP(src=PEER, dst=US) / ICMP(type=8) / b"ping"),
    bytes(E / IP(src=PEER, dst=US) / UDP(sport=5, dport=7) / b"udp"),
    bytes(
        E
        / IP(src=PEER, dst=US)
        / TCP(
            sport=4000,
            dport=80,
            flags="S",
            options=[("MSS", 1400), ("SAckOK", b""), ("Timestamp", (1, 0)), ("WScale", 3)],
        )
    ),
]
HEADER = vxlan.header(VNI)


@st.composite
def datagram(draw: Any) -> bytes:
    inner: bytes = draw(valid_sum_frame(INNER))
    if draw(st.integers(0, 3)) == 0:
        return bytes(draw(mutation(HEADER + inner, 0, 8)))  # the VXLAN header itself
    return HEADER + inner


def deliver(datagrams: list[bytes]) -> dict[str, Any]:
    """Send ``datagrams`` to a fresh netif and stack; their counters once all arrived."""

    async def main() -> dict[str, Any]:
        cfg = VxlanConfig(VNI, local=("127.0.0.1", 0), mac=MacAddr(OUR_MAC))
        r = await VxlanNetif.connect(cfg)
        assert isinstance(r, Ok), r
        netif = r.value
        s = await DirectStackV4.connect(StackConfig("vx", None, netif, Static(f"{US}/24")))
        assert isinstance(s, Ok), s
        stack = s.value
        stack.listen_tcpv4(port=80, callback=lambda flow: flow.close())
        c = netif.counters
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as tx:
            for d in datagrams:
                tx.sendto(d, netif.local_addr)
            for _ in range(400):
                st_ = netif.get_stats_counters()
                seen = st_.rx_pkts + c.rx_short + c.rx_bad_flags + c.rx_bad_vni + c.rx_looped
                if seen >= len(datagrams):
                    break
                await asyncio.sleep(0.005)
        await asyncio.sleep(0)
        try:
            assert seen == len(datagrams), (seen, c)
            assert stack.ip_stack.internal_errors == 0 and stack.tcpv4().internal_errors == 0
            return stack.counters()
        finally:
            await stack.disconnect()
            await netif.disconnect()

    return asyncio.run(asyncio.wait_for(main(), 20))


@settings(max_examples=150)
@given(st.lists(datagram(), min_size=1, max_size=4))
def test_mutated_datagrams_never_raise(datagrams: list[bytes]) -> None:
    deliver(datagrams)


def test_inner_segments_with_fixed_sums_reach_tcp() -> None:
    """Each byte of the inner TCP SYN changed in turn, its sums fixed: TCP sees every one
    that IPv4 passes on, and counts no bad checksum."""
    syn = INNER[3]
    frames = []
    for i in range(34, len(syn)):
        f = bytearray(syn)
        f[i] ^= 0x3C
        frames.append(HEADER + bytes(fix_frame(f)))
    c = deliver(frames)
    assert c["tcp"]["bad_checksum"] == 0 and c["tcp"]["segments_in"] > len(frames) // 2, c["tcp"]
