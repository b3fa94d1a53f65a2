"""``create_datagram_endpoint`` over the stack's UDP: an asyncio ``DatagramTransport``.

A bound port of the stack's UDP (both families when the stack has IPv6) delivers each
datagram to ``protocol.datagram_received`` in the context the endpoint was made in; a
connected endpoint (``remote_addr``) drops datagrams from other peers, as a connected
UDP socket does, and hears through ``protocol.error_received`` of the ICMP errors Linux
reports to one (``ConnectionRefusedError`` when nobody listens at the peer's port).
"""

from __future__ import annotations

import asyncio
import contextvars
import errno
import ipaddress
import socket
from typing import Any

from ._errors import os_error
from ._server import layers
from ._sock import StackSocket

#: ICMP destination-unreachable codes that Linux reports to a connected UDP socket (the
#: "hard" ones), and the errno it gives each (RFC 792, RFC 1812 codes).
_HARD_UNREACHABLE = {
    2: errno.ENOPROTOOPT,  # protocol unreachable
    3: errno.ECONNREFUSED,  # port unreachable
    6: errno.ENETUNREACH,  # destination network unknown
    7: errno.EHOSTDOWN,  # destination host unknown
    8: errno.ENETUNREACH,  # source host isolated
    9: errno.ENETUNREACH,  # network administratively prohibited
    10: errno.EHOSTUNREACH,  # host administratively prohibited
    13: errno.EHOSTUNREACH,  # communication administratively prohibited
}


#: The same for ICMPv6 destination unreachable (RFC 4443 3.1).
_HARD_UNREACHABLE6 = {
    1: errno.EACCES,  # communication administratively prohibited
    4: errno.ECONNREFUSED,  # port unreachable
    5: errno.EACCES,  # source address failed ingress/egress policy
    6: errno.EACCES,  # reject route to destination
}


def _source_towards(stack: Any, host: str) -> str | None:
    """The address a connected socket is bound to once connected (what ``getsockname``
    gives on Linux, and what programs read to learn their own address); None when the
    stack cannot say."""
    ip = ipaddress.ip_address(host)
    try:
        udp = stack.udpv4() if ip.version == 4 else stack.udpv6()
        return str(udp.id().get_source(dst=ip))
    except (AttributeError, NotImplementedError):
        return None


def udp_port_in_use(stack: Any, port: int) -> bool:
    return any(port in getattr(u, "_listeners", {}) for u in layers(stack, "udp"))


class StackDatagramTransport(asyncio.DatagramTransport):
    """One bound UDP port of a stack."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        stack: Any,
        port: int,
        protocol: asyncio.DatagramProtocol,
        family: int,
        remote: tuple[str, int] | None,
    ) -> None:
        local = "0.0.0.0" if family != socket.AF_INET6 else "::"
        if remote is not None:  # connected: the source address the stack picks for it
            local = _source_towards(stack, remote[0]) or local
        sockname: tuple[Any, ...] = (
            (local, port) if family != socket.AF_INET6 else (local, port, 0, 0)
        )
        peername: tuple[Any, ...] | None = remote
        if remote is not None and ":" in remote[0]:
            peername = (remote[0], remote[1], 0, 0)  # an IPv6 socket's 4-tuple
        super().__init__(
            {
                "sockname": sockname,
                "peername": peername,
                "socket": StackSocket(
                    family or socket.AF_INET, socket.SOCK_DGRAM, sockname, peername
                ),
            }
        )
        self._loop = loop
        self._stack = stack
        self._port = port
        self._protocol = protocol
        self._remote = remote
        self._remote_ip = ipaddress.ip_address(remote[0]) if remote else None
        self._ctx = contextvars.copy_context()
        self._closing = False
        stack.listen_udpv4(port=port, callback=self._on_datagram)
        if remote is not None:
            for udp in layers(stack, "udp"):
                if hasattr(udp, "on_error"):
                    udp.on_error(port, self._on_icmp_error)
        loop.call_soon(protocol.connection_made, self, context=self._ctx)

    async def _on_datagram(self, src: Any, dst: Any, sport: int, data: memoryview) -> None:
        if self._closing:
            return
        if self._remote is not None and (src != self._remote_ip or sport != self._remote[1]):
            return
        addr: tuple[Any, ...] = (str(src), sport) if src.version == 4 else (str(src), sport, 0, 0)
        self._loop.call_soon(self._protocol.datagram_received, bytes(data), addr, context=self._ctx)

    def _on_icmp_error(self, icmp_type: int, code: int, remote: Any, rport: int) -> None:
        # As a connected Linux UDP socket without IP_RECVERR: only the errors it counts
        # as hard, about datagrams to the connected peer.
        if remote.version == 4:
            err = _HARD_UNREACHABLE.get(code) if icmp_type == 3 else None
        else:
            err = _HARD_UNREACHABLE6.get(code) if icmp_type == 1 else None
        if err is None or self._closing or self._remote is None:
            return
        if remote != self._remote_ip or rport != self._remote[1]:
            return
        self._loop.call_soon(self._protocol.error_received, os_error(err), context=self._ctx)

    def sendto(self, data: Any, addr: Any = None) -> None:
        if self._closing:
            return  # asyncio drops it too (and warns after a few)
        if addr is None:
            if self._remote is None:
                raise ValueError("sendto(): no address given and the endpoint is not connected")
            addr = self._remote
        elif self._remote is not None and tuple(addr[:2]) != self._remote:
            raise ValueError(f"Invalid address: must be None or {self._remote}")
        try:
            ip = ipaddress.ip_address(addr[0])
        except ValueError:
            raise ValueError(f"sendto(): {addr[0]!r} is not a numeric address") from None
        udp = self._stack.udpv4() if ip.version == 4 else self._stack.udpv6()
        try:
            udp.send(bytes(data), dest_ip=ip, dest_port=int(addr[1]), source_port=self._port)
        except ValueError:
            self._loop.call_soon(
                self._protocol.error_received, os_error(errno.EMSGSIZE), context=self._ctx
            )

    def abort(self) -> None:
        self.close()

    def close(self) -> None:
        if self._closing:
            return
        self._closing = True
        for udp in layers(self._stack, "udp"):
            if udp._listeners.get(self._port) is not None:
                udp.listen(self._port, None)
            if self._remote is not None and hasattr(udp, "on_error"):
                udp.on_error(self._port, None)
        self._loop.call_soon(self._protocol.connection_lost, None, context=self._ctx)

    def is_closing(self) -> bool:
        return self._closing

    def get_write_buffer_size(self) -> int:
        return 0

    def get_protocol(self) -> asyncio.BaseProtocol:
        return self._protocol

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        assert isinstance(protocol, asyncio.DatagramProtocol)
        self._protocol = protocol
