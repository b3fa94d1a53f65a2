"""Interface: one ethertype dispatch for the IP layers on one Ethernet device."""

from __future__ import annotations

import asyncio
import random

from scapy.layers.inet import IP, UDP
from scapy.layers.inet6 import IPv6 as IP6
from scapy.layers.l2 import ARP, Ether
from tests.test_tcp_sender import CaptureLink

from miragekit.net import Ethif, Interface, IPv4, IPv6

OUR_MAC = "02:00:00:00:00:01"


def frame(pkt: object) -> memoryview:
    return memoryview(bytearray(bytes(Ether(dst=OUR_MAC, src="02:00:00:00:00:09") / pkt)))


def test_dispatch_follows_the_layers_present() -> None:
    async def main() -> None:
        ethif = Ethif(CaptureLink())  # type: ignore[arg-type]
        ip4 = IPv4(ethif, rng=random.Random(1))
        iface = Interface(ethif, ipv4=ip4)
        v6 = frame(IP6(src="fe80::9", dst="fe80::1") / UDP(dport=9))
        iface.receive_frame(v6)
        assert ethif.counters.rx_unknown_type == 1  # no IPv6 on the interface yet
        ip6 = IPv6(ethif, rng=random.Random(2))
        iface.ipv6 = ip6
        iface.receive_frame(v6)
        assert ip6.counters.rx_packets == 1 and ethif.counters.rx_unknown_type == 1
        iface.receive_frame(frame(IP(src="10.0.0.9", dst="10.0.0.1") / UDP(dport=9)))
        iface.receive_frame(frame(ARP(psrc="10.0.0.9", pdst="10.0.0.1")))
        assert ip4.counters.rx_packets == 1 and ip4.arp.counters.rx_packets == 1
        iface.ipv6 = None  # IPv6 leaves: its frames are unknown again
        iface.receive_frame(v6)
        assert ethif.counters.rx_unknown_type == 2 and ip6.counters.rx_packets == 1
        await ip6.disconnect()
        await ip4.disconnect()

    asyncio.run(main())


def test_a_failing_layer_is_counted_not_raised() -> None:
    async def main() -> None:
        ethif = Ethif(CaptureLink())  # type: ignore[arg-type]
        ip4 = IPv4(ethif, rng=random.Random(1))

        def boom(packet: memoryview, flags: int = 0) -> None:
            raise RuntimeError("a bug of ours")

        ip4.receive = boom  # type: ignore[method-assign]
        iface = Interface(ethif, ipv4=ip4)
        iface.receive_frame(frame(IP(src="10.0.0.9", dst="10.0.0.1") / UDP(dport=9)))
        assert iface.internal_errors == 1
        await ip4.disconnect()

    asyncio.run(main())
