"""A small IPv4 stack: a NETWORK + Ethif + ARP + IPv4 (+ ICMP) + UDP, wired together.

Received frames take the synchronous path from the device's
:meth:`~miragekit.link.FrameLink.set_receiver` straight down to UDP (no task per frame);
only application callbacks run as tasks. A device without the fast path is driven by
its async ``listen``. TCP plugs in with :meth:`IPv4Stack.set_tcp_handler`.
"""

from __future__ import annotations

import asyncio
import dataclasses
import ipaddress
import logging
import random
from collections.abc import Sequence

from ..v1 import Network, UDPCallback
from ._arp import ArpConfig
from ._ethif import ETHERTYPE_ARP, ETHERTYPE_IPV4, ETHERTYPE_IPV6, Ethif
from ._fragment import ReassemblyConfig
from ._ipv4 import PROTO_TCP, Handler, IPv4
from ._ipv6 import IPv6
from ._udp import UDP

_log = logging.getLogger(__name__)


class IPv4Stack:
    def __init__(
        self, netif: Network, ethif: Ethif, ipv4: IPv4, udp: UDP[ipaddress.IPv4Address]
    ) -> None:
        self.netif = netif
        self.ethif = ethif
        self.ipv4 = ipv4
        self.udp = udp
        self.internal_errors = 0
        self._listen_task: asyncio.Task[None] | None = None
        self.ipv6: IPv6 | None = None
        """IPv6 on the same interface (a dual stack): its packets go there."""

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
    ) -> IPv4Stack:
        """Build the layers on ``netif`` with address ``cidr`` (e.g. ``"10.0.0.2/24"``)."""
        iface = ipaddress.IPv4Interface(cidr)
        ethif = Ethif(netif)
        ipv4 = IPv4(ethif, rng=rng, arp=arp, reassembly=reassembly)
        await ipv4.set_ip_netmask(iface.network)
        await ipv4.set_ip_gateways([ipaddress.IPv4Address(g) for g in gateways])
        udp = UDP(ipv4, rng=rng)
        ipv4.set_handler(17, udp.receive)
        self = cls(netif, ethif, ipv4, udp)
        if ipv4.offload is not None:
            ipv4.offload.set_receiver_meta(self.receive_frame)
        elif ethif.link is not None:
            ethif.link.set_receiver(self.receive_frame)
        else:
            self._listen_task = asyncio.get_running_loop().create_task(
                netif.listen(self._listen_frame)
            )
        await ipv4.set_ip(iface.ip)  # after the receiver: the gratuitous ARP goes out now
        return self

    def receive_frame(self, frame: memoryview, flags: int = 0) -> None:
        """One received Ethernet frame, synchronously. Never raises.

        ``flags`` are an :class:`~miragekit.link.OffloadLink`'s receive flags.
        """
        try:
            et = self.ethif.classify(frame)
            if et == ETHERTYPE_IPV4:
                self.ipv4.receive(frame[14:], flags)
            elif et == ETHERTYPE_ARP:
                self.ipv4.receive_arp(frame[14:])
            elif et == ETHERTYPE_IPV6 and self.ipv6 is not None:
                self.ipv6.receive(frame[14:], flags)
            elif et >= 0:
                self.ethif.counters.rx_unknown_type += 1
        except Exception:
            # A bug of ours, not the peer's: count it, keep the stack running.
            self.internal_errors += 1
            _log.exception("stack input failed")

    async def _listen_frame(self, frame: memoryview) -> None:
        self.receive_frame(frame)

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
        if self.ipv4.offload is not None:
            self.ipv4.offload.set_receiver_meta(None)
        elif self.ethif.link is not None:
            self.ethif.link.set_receiver(None)
        if self._listen_task is not None:
            self._listen_task.cancel()
        await self.udp.disconnect()
        await self.ipv4.disconnect()
