"""STACKV4 on miragekit's own TCP/IP: a NETWORK device, Ethernet, ARP, IPv4, UDP and TCP,
and optionally IPv6 beside them (a dual stack).

``await DirectStackV4.connect(StackConfig(name, console, netif, Static("10.0.0.2/24")))``
composes the layers on any NETWORK backend (TAP, the virtual switch, VXLAN, a pcap
wrapper around one of those). With ``ip6=IPv6Config(...)`` the same interface also
speaks IPv6: one Ethernet dispatch feeds ARP, IPv4 and IPv6, and TCP and UDP run the same
code over each family (one driver per family, so each has its own MSS).

Listeners are dual-stack, as a socket bound to ``::`` without ``IPV6_V6ONLY``:
``listen_tcpv4``/``listen_udpv4`` answer on both families (a flow's ``get_dest`` and a
datagram's source say which), so applications written for STACKV4 serve IPv6 unchanged;
``listen_tcpv6``/``listen_udpv6`` bind IPv6 only. ``tcpv4()``/``udpv4()`` stay IPv4;
``tcpv6()``/``udpv6()``/``ipv6()`` give the IPv6 layers (replies to an IPv6 datagram go
through ``udpv6()``).
"""

from __future__ import annotations

import asyncio
import dataclasses
import ipaddress
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Self

from .. import tcp as tcpcore
from ..dhcp import DhcpClientConfig
from ..dhcp import Event as DhcpEvent
from ..net import (
    TCP,
    UDP,
    AddressConflict,
    DhcpClientDriver,
    IPv4,
    IPv4Stack,
    IPv6,
    IPv6Stack,
    NdpConfig,
    dhcp_configure,
)
from ..result import Error, Ok, StackError, Unknown
from ..v1 import StackConfig, StackV4, TCPCallback, UDPCallback

Addr = ipaddress.IPv4Address
Addr6 = ipaddress.IPv6Address


@dataclass(frozen=True, slots=True)
class Static:
    """The ``mode`` of a stack with a fixed address: ``Static("10.0.0.2/24", ["10.0.0.1"])``.

    ``probe`` > 0: ``connect`` first probes for the address that many seconds (RFC 5227)
    and returns an ``Error`` naming the other host's MAC if the address is taken.
    """

    cidr: str | ipaddress.IPv4Interface
    gateways: Sequence[str | Addr] = field(default_factory=tuple)
    probe: float = 0.0

    def __post_init__(self) -> None:
        try:
            ipaddress.IPv4Interface(self.cidr)
            for g in self.gateways:
                ipaddress.IPv4Address(g)
        except ValueError as e:
            raise ValueError(f"Static: {e}") from None
        if not self.probe >= 0:
            raise ValueError(f"Static: probe must be >= 0 seconds, got {self.probe}")


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


@dataclass(frozen=True, slots=True)
class IPv6Config:
    """IPv6 beside IPv4 on the stack's interface (``DirectStackV4.connect(..., ip6=...)``).

    The link-local address from the MAC is always configured; ``cidrs`` adds static
    addresses (``"fd00::2/64"``: the prefix is on-link), ``slaac`` the addresses router
    advertisements offer. ``connect`` waits up to ``dad_timeout`` seconds for duplicate
    address detection and fails if a static address is already in use on the link.
    """

    cidrs: Sequence[str | ipaddress.IPv6Interface] = ()
    gateways: Sequence[str | Addr6] = ()
    slaac: bool = True
    ndp: NdpConfig | None = None
    dad_timeout: float = 10.0

    def __post_init__(self) -> None:
        try:
            for c in self.cidrs:
                ipaddress.IPv6Interface(c)
            for g in self.gateways:
                ipaddress.IPv6Address(g)
        except ValueError as e:
            raise ValueError(f"IPv6Config: {e}") from None
        if self.dad_timeout <= 0:
            raise ValueError(f"IPv6Config: dad_timeout must be > 0, got {self.dad_timeout}")


@dataclass(slots=True)
class _V6:
    """The IPv6 half of a dual stack: IPv6 and UDP on the IPv4 stack's interface, TCP."""

    stack: IPv6Stack
    tcp: TCP[Addr6]

    @property
    def ip(self) -> IPv6:
        return self.stack.ipv6

    @property
    def udp(self) -> UDP[Addr6]:
        return self.stack.udp


class DirectStackV4:
    """A whole TCP/IPv4 stack in Python over one NETWORK device, IPv6 too if asked."""

    def __init__(
        self,
        config: StackConfig[Any],
        ip: IPv4Stack,
        tcp: TCP[Addr],
        dhcp: DhcpClientDriver | None = None,
    ) -> None:
        self._config = config
        self._ip = ip
        self._tcp = tcp
        self._dhcp = dhcp
        self._v6: _V6 | None = None
        self._done = asyncio.Event()

    @classmethod
    async def connect(
        cls,
        id: StackConfig[Any],
        *,
        tcp_config: tcpcore.Config | None = None,
        ip6: IPv6Config | None = None,
    ) -> Ok[Self] | Error[StackError]:
        mode = id.mode
        if isinstance(mode, Static):
            try:
                ip = await IPv4Stack.connect(
                    id.netif, cidr=mode.cidr, gateways=mode.gateways, probe=mode.probe
                )
            except AddressConflict as e:
                return Error(Unknown(str(e)))
            self = cls(id, ip, TCP(ip.ipv4, config=tcp_config))
        elif isinstance(mode, DHCP):
            ip = await IPv4Stack.connect(id.netif, cidr="0.0.0.0/0")
            r = await dhcp_configure(
                ip, timeout=mode.timeout, config=mode.config, on_event=mode.on_event
            )
            if isinstance(r, Error):
                await ip.disconnect()
                return Error(Unknown(f"DHCP: no lease within {mode.timeout:g} s"))
            self = cls(id, ip, TCP(ip.ipv4, config=tcp_config), r.value)
        else:
            return Error(Unknown(f"mode {mode!r}: use Static(cidr, gateways) or DHCP()"))
        if ip6 is not None:
            err = await self._add_ipv6(ip6, tcp_config)
            if err is not None:
                await self.disconnect()
                return Error(Unknown(err))
        return Ok(self)

    async def _add_ipv6(self, cfg: IPv6Config, tcp_config: tcpcore.Config | None) -> str | None:
        ndp = cfg.ndp or NdpConfig()
        if ndp.slaac != cfg.slaac:
            ndp = replace(ndp, slaac=cfg.slaac)
        v6 = await IPv6Stack.join(
            self._ip.iface, cidrs=cfg.cidrs, gateways=cfg.gateways, rng=self._ip.ipv4.rng, ndp=ndp
        )
        ipv6 = v6.ipv6
        if tcp_config is not None:
            tcp_config = replace(tcp_config, mss=min(tcp_config.mss, ipv6.mtu - 60))
        self._v6 = _V6(v6, TCP(ipv6, config=tcp_config))
        if not await v6.wait_ready(timeout=cfg.dad_timeout):
            return f"IPv6: duplicate address detection still running after {cfg.dad_timeout:g} s"
        have = ipv6.addresses()
        for c in cfg.cidrs:
            ip = ipaddress.IPv6Interface(c).ip
            if ip not in have:
                return f"IPv6: {ip} is already in use on the link (DAD)"
        return None

    def id(self) -> StackConfig[Any]:
        return self._config

    @property
    def ip_stack(self) -> IPv4Stack:
        """The layers below TCP (Ethernet, ARP, IPv4, ICMP, UDP) and their counters."""
        return self._ip

    def udpv4(self) -> UDP[Addr]:
        return self._ip.udp

    def tcpv4(self) -> TCP[Addr]:
        return self._tcp

    def ipv4(self) -> IPv4:
        return self._ip.ipv4

    def listen_udpv4(self, *, port: int, callback: UDPCallback[Addr]) -> None:
        """Bind UDP ``port`` on every family (a datagram's source says which)."""
        self._ip.listen_udpv4(port=port, callback=callback)
        if self._v6 is not None:
            self._v6.udp.listen(port, callback)  # type: ignore[arg-type]

    def listen_tcpv4(self, *, port: int, callback: TCPCallback, fastopen: bool = False) -> None:
        """Accept TCP on ``port`` on every family (a flow's ``get_dest`` says which);
        ``fastopen``: with TCP Fast Open (RFC 7413), see :meth:`TCP.listen`."""
        self._tcp.listen(port, callback, fastopen=fastopen)
        if self._v6 is not None:
            self._v6.tcp.listen(port, callback, fastopen=fastopen)

    # -- IPv6 --------------------------------------------------------------------------------

    def _ndp_pending(self) -> bool:
        """Packets wait for a neighbour being resolved (e.g. FINs at disconnect)."""
        v6 = self._v6
        return v6 is not None and any(e.queue for e in v6.ip.ndp.cache.values())

    def _need_v6(self) -> _V6:
        if self._v6 is None:
            raise ValueError("the stack has no IPv6: connect it with ip6=IPv6Config(...)")
        return self._v6

    @property
    def has_ipv6(self) -> bool:
        return self._v6 is not None

    def ipv6(self) -> IPv6:
        return self._need_v6().ip

    def udpv6(self) -> UDP[Addr6]:
        return self._need_v6().udp

    def tcpv6(self) -> TCP[Addr6]:
        return self._need_v6().tcp

    def listen_udpv6(self, *, port: int, callback: UDPCallback[Addr6]) -> None:
        """Bind UDP ``port`` on IPv6 only."""
        self._need_v6().udp.listen(port, callback)

    def listen_tcpv6(self, *, port: int, callback: TCPCallback, fastopen: bool = False) -> None:
        """Accept TCP on ``port`` over IPv6 only (``fastopen`` as for ``listen_tcpv4``)."""
        self._need_v6().tcp.listen(port, callback, fastopen=fastopen)

    async def listen(self) -> None:
        await self._done.wait()

    def counters(self) -> dict[str, dict[str, int]]:
        c = self._ip.counters()
        c["tcp"] = dict(self._tcp.stats)
        if (v6 := self._v6) is not None:
            c["ndp"] = dataclasses.asdict(v6.ip.ndp.counters)
            c["ipv6"] = dataclasses.asdict(v6.ip.counters)
            c["icmpv6"] = dataclasses.asdict(v6.ip.icmp_counters)
            c["udp6"] = dataclasses.asdict(v6.udp.counters)
            c["tcp6"] = dict(v6.tcp.stats)
        return c

    @property
    def dhcp(self) -> DhcpClientDriver | None:
        """The DHCP client (mode ``DHCP()``): its lease, state and counters."""
        return self._dhcp

    def stop_accepting(self) -> None:
        """Stop accepting TCP on both families (a graceful stop's first step)."""
        self._tcp.stop_accepting()
        if self._v6 is not None:
            self._v6.tcp.stop_accepting()

    def live_connections(self) -> int:
        """Accepted TCP connections whose callback is still running."""
        n = self._tcp.live_connections()
        return n + (self._v6.tcp.live_connections() if self._v6 is not None else 0)

    async def disconnect(self) -> None:
        if self._dhcp is not None:
            await self._dhcp.stop()  # RELEASE
        await self._tcp.disconnect()
        if self._v6 is not None:
            await self._v6.tcp.disconnect()
        # What is queued behind ARP (the RELEASE, FINs) gets a moment to resolve and leave.
        loop = asyncio.get_running_loop()
        arp = self._ip.ipv4.arp
        end = loop.time() + 1.0
        while (arp.pending or self._ndp_pending()) and loop.time() < end:
            await asyncio.sleep(0.01)
        if self._v6 is not None:
            await self._v6.stack.disconnect()
        await self._ip.disconnect()
        self._done.set()


DirectStack = DirectStackV4
"""The same class: the name to use when it serves both families."""

_check: type[StackV4] = DirectStackV4
