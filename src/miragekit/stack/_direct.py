"""STACKV4 on miragekit's own TCP/IP: a NETWORK device, Ethernet, ARP, IPv4, UDP and TCP.

``await DirectStackV4.connect(StackConfig(name, console, netif, Static("10.0.0.2/24")))``
composes the layers on any NETWORK backend (TAP, the virtual switch, VXLAN, a pcap
wrapper around one of those).
"""

from __future__ import annotations

import asyncio
import ipaddress
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Self

from .. import tcp as tcpcore
from ..dhcp import DhcpClientConfig
from ..dhcp import Event as DhcpEvent
from ..net._dhcp_client import DhcpClientDriver, dhcp_configure
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


@dataclass(frozen=True, slots=True)
class DHCP:
    """The ``mode`` of a stack that configures itself by DHCP (RFC 2131).

    ``connect`` completes once a lease is bound, or returns ``Error`` after ``timeout``
    seconds. The lease is renewed and rebound as the RFC says; on expiry the address is
    removed and ``on_event`` hears ``Expired``; ``disconnect`` sends a RELEASE.
    """

    timeout: float = 30.0
    config: DhcpClientConfig | None = None
    on_event: Callable[[DhcpEvent], None] | None = None

    def __post_init__(self) -> None:
        if self.timeout <= 0:
            raise ValueError(f"DHCP: timeout must be > 0, got {self.timeout}")


class DirectStackV4:
    """A whole TCP/IPv4 stack in Python over one NETWORK device."""

    def __init__(
        self,
        config: StackConfig[Any],
        ip: IPv4Stack,
        tcp: TCP,
        dhcp: DhcpClientDriver | None = None,
    ) -> None:
        self._config = config
        self._ip = ip
        self._tcp = tcp
        self._dhcp = dhcp
        self._done = asyncio.Event()

    @classmethod
    async def connect(
        cls, id: StackConfig[Any], *, tcp_config: tcpcore.Config | None = None
    ) -> Ok[Self] | Error[StackError]:
        mode = id.mode
        if isinstance(mode, Static):
            ip = await IPv4Stack.connect(id.netif, cidr=mode.cidr, gateways=mode.gateways)
            return Ok(cls(id, ip, TCP(ip.ipv4, config=tcp_config)))
        if isinstance(mode, DHCP):
            ip = await IPv4Stack.connect(id.netif, cidr="0.0.0.0/0")
            r = await dhcp_configure(
                ip, timeout=mode.timeout, config=mode.config, on_event=mode.on_event
            )
            if isinstance(r, Error):
                await ip.disconnect()
                return Error(Unknown(f"DHCP: no lease within {mode.timeout:g} s"))
            return Ok(cls(id, ip, TCP(ip.ipv4, config=tcp_config), r.value))
        return Error(Unknown(f"mode {mode!r}: use Static(cidr, gateways) or DHCP()"))

    def id(self) -> StackConfig[Any]:
        return self._config

    @property
    def ip_stack(self) -> IPv4Stack:
        """The layers below TCP (Ethernet, ARP, IPv4, ICMP, UDP) and their counters."""
        return self._ip

    def udpv4(self) -> UDP[Addr]:
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

    @property
    def dhcp(self) -> DhcpClientDriver | None:
        """The DHCP client (mode ``DHCP()``): its lease, state and counters."""
        return self._dhcp

    async def disconnect(self) -> None:
        if self._dhcp is not None:
            await self._dhcp.stop()  # RELEASE
        await self._tcp.disconnect()
        # What is queued behind ARP (the RELEASE, FINs) gets a moment to resolve and leave.
        loop = asyncio.get_running_loop()
        arp = self._ip.ipv4.arp
        end = loop.time() + 1.0
        while arp.pending and loop.time() < end:
            await asyncio.sleep(0.01)
        await self._ip.disconnect()
        self._done.set()


_check: type[StackV4] = DirectStackV4
