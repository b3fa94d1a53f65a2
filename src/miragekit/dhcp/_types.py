"""The values a DHCP client hands out: the lease, what to send, and what happened."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Protocol

from ..macaddr import MacAddr
from ..wire import WireError
from ..wire.dhcp import DhcpRepr

Addr = ipaddress.IPv4Address
BROADCAST = Addr("255.255.255.255")


@dataclass(frozen=True, slots=True)
class Lease:
    """An address bound for a time. Times are absolute, on the clock that fed the client;
    ``None`` means the lease is infinite."""

    address: Addr
    network: ipaddress.IPv4Network
    server_id: Addr
    obtained_at: float
    """When the REQUEST that got the lease was first sent (RFC 2131 4.4.1)."""
    lease_time: float | None
    renew_at: float | None
    rebind_at: float | None
    expires_at: float | None
    routers: tuple[Addr, ...] = ()
    dns_servers: tuple[Addr, ...] = ()
    mtu: int | None = None
    host_name: str | None = None
    routes: tuple[tuple[ipaddress.IPv4Network, Addr], ...] = ()
    """Option 121's classless static routes (RFC 3442), as the server sent them; the
    IPv4 layer uses the default one (as ``routers``), the others are for the application."""

    @property
    def interface(self) -> ipaddress.IPv4Interface:
        return ipaddress.IPv4Interface((self.address, self.network.prefixlen))


@dataclass(frozen=True, slots=True)
class Transmit:
    """A DHCP message to send from port 68 to port 67 of ``dst`` (the server, or the
    limited broadcast address; the source is the configured address or 0.0.0.0)."""

    dst: Addr
    message: DhcpRepr

    @property
    def payload(self) -> bytes:
        return self.message.to_bytes()


@dataclass(frozen=True, slots=True)
class ArpProbe:
    """Send an ARP probe for ``address`` (sender address 0.0.0.0, RFC 5227 2.1.1)."""

    address: Addr


Output = Transmit | ArpProbe


@dataclass(frozen=True, slots=True)
class Bound:
    """A new address is ours: configure it (address, netmask, routers, MTU)."""

    lease: Lease


@dataclass(frozen=True, slots=True)
class Renewed:
    """The lease was extended (``rebound`` when by another server, in REBINDING)."""

    lease: Lease
    rebound: bool = False


@dataclass(frozen=True, slots=True)
class Expired:
    """The lease ran out without renewal: the address must be removed now."""

    lease: Lease


@dataclass(frozen=True, slots=True)
class Nak:
    """A server refused the request. ``lost`` is the lease that is no longer valid (its
    address must be removed), or ``None`` when nothing was bound."""

    server_id: Addr | None
    message: str | None
    lost: Lease | None


@dataclass(frozen=True, slots=True)
class Declined:
    """The offered address answered an ARP probe from ``mac``: declined, not used."""

    address: Addr
    mac: MacAddr


@dataclass(frozen=True, slots=True)
class Released:
    """The lease was given back (on stop): the address must be removed."""

    lease: Lease


Event = Bound | Renewed | Expired | Nak | Declined | Released


class _RxCounters(Protocol):
    rx_messages: int
    rx_malformed: int


def receive_message(data: bytes | bytearray | memoryview, c: _RxCounters) -> DhcpRepr | None:
    """A received message, counted; ``None`` (counted as malformed) if it does not parse."""
    c.rx_messages += 1
    try:
        return DhcpRepr.from_bytes(data)
    except WireError:
        c.rx_malformed += 1
        return None
