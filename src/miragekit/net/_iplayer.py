"""What the IPv4 and IPv6 layers share: address objects, the seed's async ``input``,
``write``/``writev``, the transport checksum and handing a frame to the device or to the
neighbour cache. The family's own rules (parsing, routing, ICMP) stay in each layer."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import ClassVar, Final, Generic, Protocol, TypeVar

from ..v1 import A, Buffer, IPCallback, IPDefaultCallback
from ..wire import checksum_v, pseudo_sum
from ._ethif import Ethif

K = TypeVar("K")
K_contra = TypeVar("K_contra", contravariant=True)

PROTO_TCP: Final = 6
PROTO_UDP: Final = 17


class Neighbours(Protocol[K_contra]):
    """ARP or NDP: send a frame to an on-link neighbour, resolving it first if need be."""

    def send(self, ip: K_contra, bufs: Sequence[Buffer], now: float) -> None: ...


V = TypeVar("V")


class AddressCache(Generic[K, V]):
    """One address object per address (ints or packed bytes in, objects out), bounded:
    a flow or a datagram's source needs one, a packet should not make a new one."""

    __slots__ = ("_cache", "_make")

    def __init__(self, make: Callable[[K], V]) -> None:
        self._make = make
        self._cache: dict[K, V] = {}

    def __call__(self, key: K) -> V:
        a = self._cache.get(key)
        if a is None:
            if len(self._cache) >= 4096:
                self._cache.clear()
            a = self._cache[key] = self._make(key)
        return a


class IPCommon(Generic[A, K]):
    """The base of :class:`IPv4` (``K`` = int) and :class:`IPv6` (``K`` = packed bytes)."""

    _ICMP: ClassVar[int]
    """The protocol number of the family's ICMP."""
    _ADDRS: ClassVar[tuple[int, int, int]]
    """Offsets in a frame of the source, of the protocol byte, and the address length."""

    _ethif: Ethif
    _loop: asyncio.AbstractEventLoop
    _addr: AddressCache[K, A]
    _neighbours: Neighbours[K]
    _rx_packet: memoryview | None
    _ECN_SHIFT: ClassVar[int]
    """Where the ECN bits sit in the IP header's second byte: the low bits of IPv4's TOS,
    bits 4-5 for IPv6's traffic class (it straddles the first two bytes)."""

    def rx_ecn(self) -> int:
        """The ECN codepoint (RFC 3168: 0 Not-ECT, 1/2 ECT, 3 CE) of the packet being
        delivered to a handler; 0 outside a delivery."""
        pkt = self._rx_packet
        return 0 if pkt is None else (pkt[1] >> self._ECN_SHIFT) & 3

    def set_ecn(self, frame: memoryview | bytearray, ecn: int) -> None:
        """Put ECN codepoint ``ecn`` into the IP header of ``frame`` (an Ethernet frame
        from this layer, before it is sent: the IPv4 checksum is computed then)."""
        shift = self._ECN_SHIFT
        frame[15] = (frame[15] & ~(3 << shift) & 0xFF) | (ecn << shift)

    def _parse_packet(self, pkt: memoryview) -> tuple[int, K, K, memoryview, memoryview] | None:
        """(protocol, src, dst, payload, whole packet) of a valid packet, or None (counted)."""
        raise NotImplementedError

    def _icmp_input(self, src: K, dst: K, msg: memoryview, pkt: memoryview) -> bool:
        """The family's ICMP; True when the message was used up (or malformed)."""
        raise NotImplementedError

    def send(self, frame: Buffer, bufs: Sequence[Buffer]) -> None:
        raise NotImplementedError

    async def input(
        self,
        buf: memoryview,
        *,
        tcp: IPCallback[A],
        udp: IPCallback[A],
        default: IPDefaultCallback[A],
    ) -> None:
        r = self._parse_packet(memoryview(buf))
        if r is None:
            return
        proto, src, dst, payload, pkt = r
        s, d = self._addr(src), self._addr(dst)
        if proto == self._ICMP:
            if not self._icmp_input(src, dst, payload, pkt):
                await default(proto, s, d, payload)
            return
        self._rx_packet = pkt
        try:
            if proto == PROTO_TCP:
                await tcp(s, d, payload)
            elif proto == PROTO_UDP:
                await udp(s, d, payload)
            else:
                await default(proto, s, d, payload)
        finally:
            self._rx_packet = None

    async def write(self, frame: Buffer, buf: Buffer) -> None:
        self.send(frame, (buf,))

    async def writev(self, frame: Buffer, bufs: Sequence[Buffer]) -> None:
        self.send(frame, bufs)

    def checksum(self, frame: Buffer, bufs: Sequence[Buffer]) -> int:
        """The transport checksum of ``bufs`` under the IP header in ``frame``."""
        f = memoryview(frame)
        src, proto, n = self._ADDRS
        length = 0
        for b in bufs:
            length += len(b)
        pseudo = pseudo_sum(f[src : src + n], f[src + n : src + 2 * n], f[proto], length)
        return checksum_v(bufs, pseudo)

    def _send_unresolved(
        self, f: memoryview, tcp: int, payload: Buffer, gso_size: int, mtu: int
    ) -> bool:
        """A TSO packet (headers in ``f``, the TCP header at ``tcp``) while the next hop
        is being resolved: it waits as a plain frame, cut to its first ``gso_size`` bytes
        of data when above ``mtu`` (TCP sends the rest again), with the checksum done
        here. True when it was cut."""
        data = memoryview(payload)
        cut = len(f) - 14 + len(data) > mtu
        if cut:
            data = data[: max(gso_size, 0)]
            f[tcp + 13] &= ~0x09  # no FIN or PSH: the packet is cut short
        f[tcp + 16 : tcp + 18] = b"\0\0"
        f[tcp + 16 : tcp + 18] = self.checksum(f, (f[tcp:], data)).to_bytes(2, "big")
        self.send(f, (data,))
        return cut

    def _emit(self, parts: list[Buffer], hop: K, mac: bytes | None) -> None:
        """Out to the device when the next hop's MAC is known, else through ARP/NDP."""
        if mac:
            head = parts[0]
            assert isinstance(head, bytearray | memoryview)
            head[0:6] = mac
            self._ethif.sendv(parts)
        else:
            self._neighbours.send(hop, parts, self._loop.time())
