"""IPv4.set_packed_handler: the short receive path and its fallbacks to the general one."""

from __future__ import annotations

import asyncio
import ipaddress
import random
from typing import Any

from scapy.layers.inet import IP, TCP, fragment
from tests.test_tcp_sender import CaptureLink

from miragekit.net import Ethif, IPv4

ME = "10.0.0.1"
PEER = "10.0.0.2"


async def _layer() -> tuple[IPv4, list[tuple[bytes, bytes, bytes, bool]]]:
    ip = IPv4(Ethif(CaptureLink()), rng=random.Random(1))  # type: ignore[arg-type]
    ip.configure(ipaddress.IPv4Interface(f"{ME}/24"))
    got: list[tuple[bytes, bytes, bytes, bool]] = []

    def handler(src: bytes, dst: bytes, payload: memoryview, verified: bool) -> None:
        got.append((src, dst, bytes(payload), verified))

    ip.set_packed_handler(6, handler)
    return ip, got


def _packet(**kw: Any) -> bytes:
    dst = kw.pop("dst", ME)
    return bytes(IP(src=PEER, dst=dst, **kw) / TCP(sport=1, dport=2) / b"hello")


def test_plain_packet_takes_the_short_path() -> None:
    async def main() -> None:
        ip, got = await _layer()
        pkt = _packet()
        ip.receive(memoryview(pkt))
        ip.receive(memoryview(pkt), 2)  # CSUM_VALID from an offload device
        ip.receive(memoryview(pkt + b"\0" * 6))  # Ethernet padding is cut off
        peer, me = ipaddress.IPv4Address(PEER).packed, ipaddress.IPv4Address(ME).packed
        want = [(peer, me, pkt[20:], False), (peer, me, pkt[20:], True)]
        assert got == [*want, (peer, me, pkt[20:], False)]
        assert ip.counters.rx_packets == ip.counters.rx_delivered == 3

    asyncio.run(main())


def test_other_packets_take_the_general_path() -> None:
    async def main() -> None:
        ip, got = await _layer()
        ip.receive(memoryview(_packet(options=[b"\x01\x01\x01\x00"])))  # IP options
        ip.receive(memoryview(_packet(dst="10.0.0.255")))  # broadcast
        whole = IP(src=PEER, dst=ME, id=7) / TCP(sport=1, dport=2) / (b"x" * 100)
        for frag in fragment(whole, fragsize=48):  # type: ignore[no-untyped-call]
            ip.receive(memoryview(bytes(frag)))
        # TCP to a broadcast never reaches the handler (docs/hardening.md).
        assert [g[1] for g in got] == [ipaddress.IPv4Address(ME).packed] * 2
        assert got[1][2] == bytes(whole)[20:]
        assert ip.counters.rx_delivered == 2 and ip.counters.rx_tcp_not_unicast == 1

        bad = bytearray(_packet())
        bad[10] ^= 0xFF  # the header checksum
        ip.receive(memoryview(bytes(bad)))
        ip.receive(memoryview(_packet(dst="10.0.0.9")))
        ip.receive(memoryview(bytes(IP(src="224.0.0.1", dst=ME) / TCP())))
        ip.receive(memoryview(_packet()[:30]))  # shorter than its total length
        c = ip.counters
        assert (c.rx_bad_checksum, c.rx_not_for_us, c.rx_martian, c.rx_bad_length) == (1, 1, 1, 1)
        assert len(got) == 2

    asyncio.run(main())


def test_handlers_replace_each_other() -> None:
    async def main() -> None:
        ip, got = await _layer()
        seen: list[str] = []
        ip.set_handler(6, lambda s, d, p, v: seen.append(str(s)))
        ip.receive(memoryview(_packet()))
        assert seen == [PEER] and got == []
        ip.set_packed_handler(6, lambda s, d, p, v: seen.append(s.hex()))
        ip.receive(memoryview(_packet()))
        assert seen == [PEER, "0a000002"]
        ip.set_packed_handler(6, None)
        ip.receive(memoryview(_packet()))
        assert ip.counters.rx_no_protocol == 1

    asyncio.run(main())
