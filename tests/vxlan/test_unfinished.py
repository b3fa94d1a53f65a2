"""Recognising inner checksums a kernel peer left unfinished (link/_unfinished.py)."""

from __future__ import annotations

import ipaddress

from scapy.layers.inet import IP, TCP, UDP
from scapy.layers.inet6 import IPv6
from scapy.layers.l2 import Ether
from scapy.packet import Packet

from miragekit.link._unfinished import unfinished_checksum
from miragekit.wire._checksum import pseudo_sum


def partial(pkt: Packet, l4: type[Packet]) -> memoryview:
    """``pkt`` as a kernel with transmit offload sends it: only the pseudo-header sum."""
    ip = pkt[IP] if IP in pkt else pkt[IPv6]
    src, dst = (ipaddress.ip_address(a).packed for a in (ip.src, ip.dst))
    seg = bytes(pkt[l4])
    buf = bytearray(bytes(pkt))
    at = len(buf) - len(seg) + (16 if l4 is TCP else 6)
    proto = 6 if l4 is TCP else 17
    buf[at : at + 2] = pseudo_sum(src, dst, proto, len(seg)).to_bytes(2, "big")
    return memoryview(buf)


def frames() -> list[tuple[Packet, type[Packet], str]]:
    e = Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02")
    return [
        (e / IP(src="10.0.0.1", dst="10.0.0.2") / TCP(sport=1, dport=2, flags="S"), TCP, "TCP"),
        (e / IP(src="10.0.0.1", dst="10.0.0.2") / UDP(sport=1, dport=2) / b"hi", UDP, "UDP"),
        (e / IPv6(src="fd00::1", dst="fd00::2") / TCP(sport=1, dport=2) / (b"x" * 33), TCP, "TCP"),
        (e / IPv6(src="fd00::1", dst="fd00::2") / UDP(sport=1, dport=2) / b"x", UDP, "UDP"),
    ]


def test_unfinished_segments_are_recognised_and_finished_ones_are_not() -> None:
    for pkt, l4, name in frames():
        assert unfinished_checksum(memoryview(bytes(pkt))) is None, pkt.summary()
        assert unfinished_checksum(partial(pkt, l4)) == name, pkt.summary()


def test_other_frames_and_truncations_are_not_judged() -> None:
    pkt, l4, _ = frames()[0]
    whole = partial(pkt, l4)
    for n in range(len(whole)):
        assert unfinished_checksum(whole[:n]) is None  # never raises on a short frame
    arp = bytes(Ether(type=0x0806)) + bytes(28)
    assert unfinished_checksum(memoryview(arp)) is None
