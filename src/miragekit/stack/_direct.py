"""STACKV4 on miragekit's own TCP/IP: a NETWORK device, Ethernet, ARP, IPv4, UDP and TCP.

``await DirectStackV4.connect(StackConfig(name, console, netif, Static("10.0.0.2/24")))``
composes the layers on any NETWORK backend (TAP, the virtual switch, VXLAN, a pcap
wrapper around one of those).
"""

from __future__ import annotations

import asyncio
import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Self

from .. import tcp as tcpcore
from ..net._ipstack import IPv4Stack
from ..net._ipv4 import IPv4
from ..net._tcp import TCP
from ..net._udp import UDP
from ..result import Error, Ok, StackError, Unknown
from ..v1 import StackConfig, StackV4, TCPCallback, UDPCallback

Addr = ipaddress.IPv4Address


@dataclass(frozen=True, slots=True)
class Static:
    """The ``mode`` of a stack with a fixed address: ``Static("10.0.0.2/24", ["10.0.0.1"])``."""

    cidr: str | ipaddress.IPv4Interface
    gateways: Sequence[str | Addr] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        try:
            ipaddress.IPv4Interface(self.cidr)
            for g in self.gateways:
                ipaddress.IPv4Address(g)
        except ValueError as e:
            raise ValueError(f"Static: {e}") from None


class DirectStackV4:
    """A whole TCP/IPv4 stack in Python over one NETWORK device."""

    def __init__(self, config: StackConfig[Any], ip: IPv4Stack, tcp: TCP) -> None:
        self._config = config
        self._ip = ip
        self._tcp = tcp
        self._done = asyncio.Event()

    @classmethod
    async def connect(
        cls, id: StackConfig[Any], *, tcp_config: tcpcore.Config | None = None
    ) -> Ok[Self] | Error[StackError]:
        mode = id.mode
        if not isinstance(mode, Static):
            return Error(Unknown(f"mode {mode!r}: use Static(cidr, gateways)"))
        ip = await IPv4Stack.connect(id.netif, cidr=mode.cidr, gateways=mode.gateways)
        tcp = TCP(ip.ipv4, config=tcp_config)
        return Ok(cls(id, ip, tcp))

    def id(self) -> StackConfig[Any]:
        return self._config

    @property
    def ip_stack(self) -> IPv4Stack:
        """The layers below TCP (Ethernet, ARP, IPv4, ICMP, UDP) and their counters."""
        return self._ip

    def udpv4(self) -> UDP:
        return self._ip.udp

    def tcpv4(self) -> TCP:
        return self._tcp

    def ipv4(self) -> IPv4:
        return self._ip.ipv4

    def listen_udpv4(self, *, port: int, callback: UDPCallback[Addr]) -> None:
        self._ip.listen_udpv4(port=port, callback=callback)

    def listen_tcpv4(self, *, port: int, callback: TCPCallback) -> None:
        self._tcp.listen(port, callback)

    async def listen(self) -> None:
        await self._done.wait()

    def counters(self) -> dict[str, dict[str, int]]:
        c = self._ip.counters()
        c["tcp"] = dict(self._tcp.stats)
        return c

    async def disconnect(self) -> None:
        await self._tcp.disconnect()
        await self._ip.disconnect()
        self._done.set()


_check: type[StackV4] = DirectStackV4
