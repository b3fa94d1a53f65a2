"""A small IPv4 stack: a NETWORK + Ethif + ARP + IPv4 (+ ICMP) + UDP, wired together.

Received frames take the synchronous path from the device's
:meth:`~miragekit.link.FrameLink.set_receiver` straight down to UDP (no task per frame);
only application callbacks run as tasks. A device without the fast path is driven by
its async ``listen``. TCP plugs in with :meth:`IPv4Stack.set_tcp_handler`.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import random
from collections.abc import Sequence

from ..v1 import Network, UDPCallback
from ._acd import probe_address
from ._arp import ArpConfig
from ._ethif import Ethif
from ._fragment import ReassemblyConfig
from ._iface import Interface
from ._ipv4 import PROTO_TCP, Handler, IPv4
from ._udp import UDP


class IPv4Stack:
    def __init__(self, iface: Interface, ipv4: IPv4, udp: UDP[ipaddress.IPv4Address]) -> None:
        self.iface = iface
        self.ethif = iface.ethif
        self.netif = iface.ethif.id()
        self.ipv4 = ipv4
        self.udp = udp

    @classmethod
    async def connect(
        cls,
        netif: Network,
        *,
        cidr: str | ipaddress.IPv4Interface,
        gateways: Sequence[str | ipaddress.IPv4Address] = (),
        rng: random.Random | None = None,
        arp: ArpConfig | None = None,
        reassembly: ReassemblyConfig | None = None,
        probe: float = 0.0,
    ) -> IPv4Stack:
        """Build the layers on ``netif`` with address ``cidr`` (e.g. ``"10.0.0.2/24"``).

        ``probe`` > 0: first probe for the address that many seconds (RFC 5227) and raise
        :class:`AddressConflict` (the stack stopped) if another host has it."""
        iface = ipaddress.IPv4Interface(cidr)
        ethif = Ethif(netif)
        ipv4 = IPv4(ethif, rng=rng, arp=arp, reassembly=reassembly)
        await ipv4.set_ip_netmask(iface.network)
        await ipv4.set_ip_gateways([ipaddress.IPv4Address(g) for g in gateways])
        udp = UDP(ipv4, rng=rng)
        ipv4.set_handler(17, udp.receive)
        self = cls(Interface(ethif, ipv4=ipv4), ipv4, udp)
        self.iface.start()
        if probe > 0 and int(iface.ip):
            try:
                await probe_address(ipv4.arp, iface.ip, probe)
            except BaseException:
                await self.disconnect()
                raise
        await ipv4.set_ip(iface.ip)  # after the receiver: the gratuitous ARP goes out now
        return self

    @property
    def internal_errors(self) -> int:
        """Exceptions of ours caught on the input path."""
        return self.iface.internal_errors

    def receive_frame(self, frame: memoryview, flags: int = 0) -> None:
        """One received Ethernet frame, synchronously (:meth:`Interface.receive_frame`)."""
        self.iface.receive_frame(frame, flags)

    def listen_udpv4(self, *, port: int, callback: UDPCallback[ipaddress.IPv4Address]) -> None:
        self.udp.listen(port, callback)

    def set_tcp_handler(self, handler: Handler | None) -> None:
        """Where TCP plugs in: ``handler(src, dst, segment)`` for each received TCP segment."""
        self.ipv4.set_handler(PROTO_TCP, handler)

    def counters(self) -> dict[str, dict[str, int]]:
        """Every layer's counters, by layer name."""
        return {
            "ethif": dataclasses.asdict(self.ethif.counters),
            "arp": dataclasses.asdict(self.ipv4.arp.counters),
            "ipv4": dataclasses.asdict(self.ipv4.counters),
            "reassembly": dataclasses.asdict(self.ipv4.reassembler.counters),
            "icmp": dataclasses.asdict(self.ipv4.icmp.counters),
            "udp": dataclasses.asdict(self.udp.counters),
        }

    async def disconnect(self) -> None:
        self.iface.stop()
        await self.udp.disconnect()
        await self.ipv4.disconnect()
