"""A small IPv6 stack: a NETWORK + Ethif + IPv6 (NDP, SLAAC, ICMPv6, MLD) + UDP.

The same composition and synchronous fast path as :class:`~miragekit.net.IPv4Stack`:
received frames go from the device's ``set_receiver`` straight down to UDP, with no
task per frame. TCP plugs in with :meth:`IPv6Stack.set_tcp_handler`.
"""

from __future__ import annotations

import asyncio
import dataclasses
import ipaddress
import random
from collections.abc import Sequence

from ..v1 import Network, UDPCallback
from ._ethif import Ethif
from ._fragment import ReassemblyConfig
from ._iface import Interface
from ._ipv6 import PROTO_TCP, PROTO_UDP, Handler, IPv6
from ._ndp import NdpConfig
from ._udp import UDP

Addr = ipaddress.IPv6Address


class IPv6Stack:
    def __init__(self, iface: Interface, ipv6: IPv6, udp: UDP[Addr], *, owns: bool) -> None:
        self.iface = iface
        self.ethif = iface.ethif
        self.netif = iface.ethif.id()
        self.ipv6 = ipv6
        self.udp = udp
        self._owns = owns  # the interface is ours (not shared with IPv4)

    @classmethod
    async def connect(
        cls,
        netif: Network,
        *,
        cidrs: Sequence[str | ipaddress.IPv6Interface] = (),
        gateways: Sequence[str | Addr] = (),
        rng: random.Random | None = None,
        ndp: NdpConfig | None = None,
        reassembly: ReassemblyConfig | None = None,
    ) -> IPv6Stack:
        """Build the layers on ``netif``: the link-local address from the MAC, the static
        addresses ``cidrs`` (e.g. ``"fd00::2/64"``) and, unless ``ndp.slaac`` is off, the
        addresses router advertisements offer. Each address is usable once DAD passes
        (see :meth:`wait_ready`)."""
        iface = Interface(Ethif(netif))
        return await cls._on(iface, True, cidrs, gateways, rng, ndp, reassembly)

    @classmethod
    async def join(
        cls,
        iface: Interface,
        *,
        cidrs: Sequence[str | ipaddress.IPv6Interface] = (),
        gateways: Sequence[str | Addr] = (),
        rng: random.Random | None = None,
        ndp: NdpConfig | None = None,
    ) -> IPv6Stack:
        """The same layers on an interface that already runs (IPv4's, for a dual stack):
        they share its device and its dispatch; :meth:`disconnect` leaves it running."""
        return await cls._on(iface, False, cidrs, gateways, rng, ndp, None)

    @classmethod
    async def _on(
        cls,
        iface: Interface,
        owns: bool,
        cidrs: Sequence[str | ipaddress.IPv6Interface],
        gateways: Sequence[str | Addr],
        rng: random.Random | None,
        ndp: NdpConfig | None,
        reassembly: ReassemblyConfig | None,
    ) -> IPv6Stack:
        ipv6 = IPv6(iface.ethif, rng=rng, ndp=ndp, reassembly=reassembly)
        udp: UDP[Addr] = UDP(ipv6, rng=rng)
        ipv6.set_handler(PROTO_UDP, udp.receive)
        self = cls(iface, ipv6, udp, owns=owns)
        iface.ipv6 = ipv6  # the interface's dispatch feeds it from now on
        if owns:
            iface.start()  # with the offload flags if IPv6 uses the device's offloads
        ipv6.start()  # after the receiver: DAD must hear the answers
        for c in cidrs:
            ip = ipaddress.IPv6Interface(c)
            await ipv6.set_ip_netmask(ip.network)
            await ipv6.set_ip(ip.ip)
        await ipv6.set_ip_gateways([Addr(g) for g in gateways])
        return self

    @property
    def internal_errors(self) -> int:
        """Exceptions of ours caught on the input path."""
        return self.iface.internal_errors

    async def wait_ready(self, *addrs: Addr, timeout: float = 10.0) -> bool:
        """Wait until no address is tentative and each of ``addrs`` is ours (for SLAAC,
        pass the address expected); False on timeout."""
        loop = asyncio.get_running_loop()
        end = loop.time() + timeout
        while loop.time() < end:
            st = self.ipv6.addresses()
            if "tentative" not in st.values() and all(a in st for a in addrs):
                return True
            await asyncio.sleep(0.05)
        return False

    def receive_frame(self, frame: memoryview) -> None:
        """One received Ethernet frame, synchronously (:meth:`Interface.receive_frame`)."""
        self.iface.receive_frame(frame)

    def listen_udpv6(self, *, port: int, callback: UDPCallback[Addr]) -> None:
        self.udp.listen(port, callback)

    def set_tcp_handler(self, handler: Handler | None) -> None:
        """Where TCP plugs in: ``handler(src, dst, segment)`` for each received TCP segment."""
        self.ipv6.set_handler(PROTO_TCP, handler)

    def counters(self) -> dict[str, dict[str, int]]:
        """Every layer's counters, by layer name."""
        return {
            "ethif": dataclasses.asdict(self.ethif.counters),
            "ndp": dataclasses.asdict(self.ipv6.ndp.counters),
            "ipv6": dataclasses.asdict(self.ipv6.counters),
            "reassembly": dataclasses.asdict(self.ipv6.reassembler.counters),
            "icmpv6": dataclasses.asdict(self.ipv6.icmp_counters),
            "udp": dataclasses.asdict(self.udp.counters),
        }

    async def disconnect(self) -> None:
        if self._owns:
            self.iface.stop()
        elif self.iface.ipv6 is self.ipv6:
            self.iface.ipv6 = None
        await self.udp.disconnect()
        await self.ipv6.disconnect()
