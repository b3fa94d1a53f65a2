"""Addresses no packet may carry: the checks of RFC 1122 3.2.1.3 and Linux's martians.

Why one module: the IPv4 receive paths (the general one and the packed short cut), ARP
and TCP all ask the same questions; keeping the rules here keeps them the same everywhere.
"""

from __future__ import annotations

from typing import Final

_ALL_ONES: Final = 0xFFFFFFFF
_OPT_EOL: Final = 0
_OPT_NOP: Final = 1
_OPT_LSRR: Final = 0x83
_OPT_SSRR: Final = 0x89


def subnet_broadcast(net: int, mask: int) -> int | None:
    """The directed broadcast of ``net``/``mask`` (None for /31, /32 or no mask)."""
    if mask == 0 or mask >= 0xFFFFFFFE:
        return None
    return net | (~mask & _ALL_ONES)


def bad_sources(ip: int, net: int, mask: int) -> frozenset[bytes]:
    """Packed source addresses refused besides the class checks of
    :func:`martian_source`: our own address (a spoof of ourselves) and the subnet's
    broadcast."""
    out = set()
    if ip:
        out.add(ip.to_bytes(4, "big"))
    b = subnet_broadcast(net, mask)
    if b is not None:
        out.add(b.to_bytes(4, "big"))
    return frozenset(out)


def martian_source(src: bytes, bad: frozenset[bytes]) -> bool:
    """May no packet come from ``src``? Multicast, reserved and broadcast (224/3),
    loopback (127/8), or one of ``bad`` (RFC 1122 3.2.1.3 (a), (c), (d); 0.0.0.0 stays
    allowed: it is a DHCP client's source)."""
    first = src[0]
    return first >= 224 or first == 127 or src in bad


def is_unicast(dst: int, net: int, mask: int) -> bool:
    """Is ``dst`` an address one host owns (not broadcast, multicast or 0)?"""
    if dst == 0 or dst == _ALL_ONES or dst >> 28 >= 14:
        return False
    return dst != subnet_broadcast(net, mask)


def source_routed(options: memoryview) -> bool:
    """Do the IPv4 ``options`` hold a loose or strict source route (RFC 791)? Linux
    (``accept_source_route=0``) drops such packets, used up or not."""
    i = 0
    n = len(options)
    while i < n:
        kind = options[i]
        if kind == _OPT_EOL:
            return False
        if kind == _OPT_NOP:
            i += 1
            continue
        if kind in (_OPT_LSRR, _OPT_SSRR):
            return True
        if i + 1 >= n or options[i + 1] < 2:
            return False  # malformed: the rest is not options
        i += options[i + 1]
    return False
