"""Name and address look-ups: numeric addresses, a static table, then DNS over the stack.

A program that asks for ``localhost`` or a name put in :data:`HOSTS` gets an answer at
once; any other name goes to the DNS resolver of the bound stack (``miragekit.dns``:
servers from ``miragekit exec --dns``, the DHCP lease or router advertisements), and a
name nobody knows fails as on a host (``socket.gaierror``), never by asking the host's
resolver.
"""

from __future__ import annotations

import ipaddress
import socket
from typing import Any

HOSTS: dict[str, list[str]] = {"localhost": ["127.0.0.1", "::1"]}
"""Host names and their addresses, in order of preference (edit to add names)."""

_SERVICES = {"http": 80, "https": 443, "ws": 80, "wss": 443, "domain": 53, "echo": 7}

AddrInfo = tuple[int, int, int, str, tuple[Any, ...]]


def _port(port: str | int | bytes | None) -> int:
    if port is None:
        return 0
    if isinstance(port, bytes):
        port = port.decode()
    if isinstance(port, int):
        return port
    if port.isdigit():
        return int(port)
    if port in _SERVICES:
        return _SERVICES[port]
    raise socket.gaierror(socket.EAI_SERVICE, "Servname not supported for ai_socktype")


def _addresses(host: str | bytes | None, flags: int) -> list[str]:
    if host is None:
        return ["0.0.0.0", "::"] if flags & socket.AI_PASSIVE else ["127.0.0.1", "::1"]
    if isinstance(host, bytes):
        host = host.decode()
    name = host.strip("[]")
    try:
        return [str(ipaddress.ip_address(name.split("%", 1)[0]))]
    except ValueError:
        pass
    if flags & socket.AI_NUMERICHOST:
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
    found = HOSTS.get(name.lower().rstrip("."))
    if not found:
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
    return found


def getaddrinfo(
    host: str | bytes | None,
    port: str | int | bytes | None,
    family: int = 0,
    type: int = 0,
    proto: int = 0,
    flags: int = 0,
) -> list[AddrInfo]:
    """``socket.getaddrinfo`` over the static table: TCP and UDP, IPv4 and IPv6."""
    if family not in (0, socket.AF_INET, socket.AF_INET6):
        raise socket.gaierror(socket.EAI_FAMILY, "ai_family not supported")
    p = _port(port)
    types = [type] if type else [socket.SOCK_STREAM, socket.SOCK_DGRAM]
    out: list[AddrInfo] = []
    for a in _addresses(host, flags):
        ip = ipaddress.ip_address(a)
        fam = socket.AF_INET if ip.version == 4 else socket.AF_INET6
        if family and fam != family:
            continue
        sa: tuple[Any, ...] = (a, p) if fam == socket.AF_INET else (a, p, 0, 0)
        for t in types:
            pr = proto or (socket.IPPROTO_TCP if t == socket.SOCK_STREAM else socket.IPPROTO_UDP)
            out.append((fam, t, pr, "", sa))
    if not out:
        raise socket.gaierror(socket.EAI_ADDRFAMILY, "Address family for hostname not supported")
    return out


def getnameinfo(sockaddr: tuple[Any, ...], flags: int = 0) -> tuple[str, str]:
    """``socket.getnameinfo``: the table's name for an address (unless ``NI_NUMERICHOST``),
    else the address; the port as a number."""
    host, port = str(sockaddr[0]), int(sockaddr[1])
    if not flags & socket.NI_NUMERICHOST:
        for name, addrs in HOSTS.items():
            if host in addrs:
                host = name
                break
    return host, str(port)


async def resolve(
    resolver: Any,
    host: str | bytes | None,
    port: str | int | bytes | None,
    family: int = 0,
    type: int = 0,
    proto: int = 0,
    flags: int = 0,
) -> list[AddrInfo]:
    """:func:`getaddrinfo`, then, for a name the table does not hold, ``resolver`` (a
    :class:`miragekit.dns.Resolver`: A and AAAA, IPv6 first on a stack with a global
    IPv6 address, RFC 6724 in short)."""
    try:
        return getaddrinfo(host, port, family, type, proto, flags)
    except socket.gaierror as e:
        if e.errno != socket.EAI_NONAME or host is None or flags & socket.AI_NUMERICHOST:
            raise
    name = (host.decode() if isinstance(host, bytes) else host).strip("[]")
    if resolver is None or not resolver.current_servers():
        raise socket.gaierror(socket.EAI_NONAME, f"{name}: no DNS server known to the stack")
    if family not in (0, socket.AF_INET, socket.AF_INET6):
        raise socket.gaierror(socket.EAI_FAMILY, "ai_family not supported")
    infos: list[AddrInfo] = await resolver.getaddrinfo(name, _port(port), family, type, proto)
    return infos
