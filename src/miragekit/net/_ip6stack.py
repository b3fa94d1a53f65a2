"""A small IPv6 stack: a NETWORK + Ethif + IPv6 (NDP, SLAAC, ICMPv6, MLD) + UDP.

The same composition and synchronous fast path as :class:`~miragekit.net.IPv4Stack`:
received frames go from the device's ``set_receiver`` straight down to UDP, with no
task per frame. TCP plugs in with :meth:`IPv6Stack.set_tcp_handler`.
"""

from __future__ import annotations

import asyncio
import dataclasses
import ipaddress
import logging
import random
from collections.abc import Sequence

from ..v1 import Network, UDPCallback
from ._ethif import ETHERTYPE_IPV6, Ethif
from ._fragment import ReassemblyConfig
from ._ipv6 import PROTO_TCP, PROTO_UDP, Handler, IPv6
from ._ndp import NdpConfig
from ._udp import UDP

_log = logging.getLogger(__name__)
Addr = ipaddress.IPv6Address


class IPv6Stack:
    def __init__(self, netif: Network, ethif: Ethif, ipv6: IPv6, udp: UDP[Addr]) -> None:
        self.netif = netif
        self.ethif = ethif
        self.ipv6 = ipv6
        self.udp = udp
        self.internal_errors = 0
        self._listen_task: asyncio.Task[None] | None = None

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
        ethif = Ethif(netif)
        ipv6 = IPv6(ethif, rng=rng, ndp=ndp, reassembly=reassembly)
        udp: UDP[Addr] = UDP(ipv6, rng=rng)
        ipv6.set_handler(PROTO_UDP, udp.receive)
        self = cls(netif, ethif, ipv6, udp)
        if ethif.link is not None:
            ethif.link.set_receiver(self.receive_frame)
        else:
            self._listen_task = asyncio.get_running_loop().create_task(
                netif.listen(self._listen_frame)
            )
        ipv6.start()  # after the receiver: DAD must hear the answers
        for c in cidrs:
            iface = ipaddress.IPv6Interface(c)
            await ipv6.set_ip_netmask(iface.network)
            await ipv6.set_ip(iface.ip)
        await ipv6.set_ip_gateways([Addr(g) for g in gateways])
        return self

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
        """One received Ethernet frame, synchronously. Never raises."""
        try:
            et = self.ethif.classify(frame)
            if et == ETHERTYPE_IPV6:
                self.ipv6.receive(frame[14:])
            elif et >= 0:
                self.ethif.counters.rx_unknown_type += 1
        except Exception:
            # A bug of ours, not the peer's: count it, keep the stack running.
            self.internal_errors += 1
            _log.exception("stack input failed")

    async def _listen_frame(self, frame: memoryview) -> None:
        self.receive_frame(frame)

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
        if self.ethif.link is not None:
            self.ethif.link.set_receiver(None)
        if self._listen_task is not None:
            self._listen_task.cancel()
        await self.udp.disconnect()
        await self.ipv6.disconnect()
