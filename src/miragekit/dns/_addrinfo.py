"""Addresses in the shape ``socket.getaddrinfo`` gives them."""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Sequence
from typing import Any

AddrInfo = tuple[int, int, int, str, tuple[Any, ...]]


def addrinfo(
    addrs: Sequence[ipaddress.IPv4Address | ipaddress.IPv6Address],
    port: int | str | None,
    type: int = 0,
    proto: int = 0,
) -> list[AddrInfo]:
    """One entry per address and socket type (stream and datagram unless ``type``)."""
    p = int(port or 0)
    types = [type] if type else [socket.SOCK_STREAM, socket.SOCK_DGRAM]
    out: list[AddrInfo] = []
    for a in addrs:
        for t in types:
            pr = proto or (socket.IPPROTO_TCP if t == socket.SOCK_STREAM else socket.IPPROTO_UDP)
            if a.version == 6:
                out.append((socket.AF_INET6, t, pr, "", (str(a), p, 0, 0)))
            else:
                out.append((socket.AF_INET, t, pr, "", (str(a), p)))
    return out
