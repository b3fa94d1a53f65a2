"""ETHIF: Ethernet framing over a NETWORK, dispatching received frames by ethertype.

``write``/``writev`` take whole frames (the seed: "outputs buf"); the IP layer builds the
Ethernet header itself in :meth:`IPv4.allocate_frame`. :meth:`dispatch` is the
ethertype dispatch the stack's fast path uses; :meth:`input` is the seed's async form.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Final, Self, TypeVar, cast

from ..link import FrameLink
from ..link import send_frames as _link_send_frames
from ..link import send_split as _link_send_split
from ..macaddr import MacAddr
from ..result import Error, EthifError, Ok
from ..v1 import Buffer, FrameCallback, Network
from ..v1 import Ethif as EthifProtocol

ETHERTYPE_IPV4: Final = 0x0800
ETHERTYPE_ARP: Final = 0x0806
ETHERTYPE_IPV6: Final = 0x86DD
HEADER_LEN: Final = 14
H = TypeVar("H")


@dataclass(slots=True)
class EthifCounters:
    rx_frames: int = 0
    rx_short: int = 0  # shorter than an Ethernet header
    rx_not_for_us: int = 0  # unicast to another MAC
    rx_unknown_type: int = 0  # no handler for the ethertype
    tx_frames: int = 0


class Ethif:
    """Ethernet over ``netif``; uses its :class:`FrameLink` fast path when it has one."""

    def __init__(self, netif: Network) -> None:
        self._netif = netif
        self._mac = netif.mac()
        self._mac_bytes = self._mac.packed
        self.counters = EthifCounters()
        self.link: FrameLink | None = (
            cast(FrameLink, netif)
            if all(hasattr(netif, a) for a in ("send", "sendv", "set_receiver", "mtu"))
            else None
        )
        self.promiscuous = False

    @classmethod
    async def connect(cls, id: Network) -> Ok[Self] | Error[EthifError]:
        return Ok(cls(id))

    def id(self) -> Network:
        return self._netif

    async def disconnect(self) -> None:
        """The NETWORK device below is the caller's to disconnect."""

    @property
    def mtu(self) -> int:
        return self.link.mtu if self.link is not None else 1500

    def mac(self) -> MacAddr:
        return self._mac

    # --- output ----------------------------------------------------------------------------

    def send(self, frame: Buffer) -> None:
        """Send one whole frame now (synchronously when the device allows)."""
        self.counters.tx_frames += 1
        if self.link is not None:
            self.link.send(frame)
        else:
            self._spawn_write([frame])

    def sendv(self, bufs: Sequence[Buffer]) -> None:
        self.counters.tx_frames += 1
        if self.link is not None:
            self.link.sendv(bufs)
        else:
            self._spawn_write(bufs)

    def send_frames(self, frames: Sequence[Buffer]) -> None:
        """Send a burst of whole frames, in order, in one call down to the device."""
        self.counters.tx_frames += len(frames)
        link = self.link
        if link is not None:
            _link_send_frames(link, frames)
        else:
            for f in frames:
                self._spawn_write([f])

    def send_split(self, heads: Sequence[bytes], bodies: Sequence[Buffer]) -> None:
        """:meth:`send_frames` of the frames ``heads[i] + bodies[i]``, the parts joined
        only where the device needs them joined."""
        link = self.link
        if link is not None:
            self.counters.tx_frames += len(heads)
            _link_send_split(link, heads, bodies)
        else:
            self.send_frames([h + b for h, b in zip(heads, bodies, strict=True)])

    def _spawn_write(self, bufs: Sequence[Buffer]) -> None:

        data = b"".join(bufs)
        task = asyncio.get_running_loop().create_task(self._netif.write(data))
        _pending.add(task)
        task.add_done_callback(_pending.discard)

    async def write(self, buf: Buffer) -> None:
        self.counters.tx_frames += 1
        await self._netif.write(buf)

    async def writev(self, bufs: Sequence[Buffer]) -> None:
        self.counters.tx_frames += 1
        await self._netif.writev(bufs)

    # --- input -----------------------------------------------------------------------------

    def accept(self, frame: memoryview) -> bool:
        """Count a received frame; whether it is for us (long enough, and unicast to our
        MAC, broadcast or multicast). What :meth:`dispatch` does before the ethertype."""
        c = self.counters
        c.rx_frames += 1
        if len(frame) < HEADER_LEN:
            c.rx_short += 1
            return False
        if not (frame[0] & 1) and frame[0:6] != self._mac_bytes and not self.promiscuous:
            c.rx_not_for_us += 1
            return False
        return True

    def dispatch(self, frame: memoryview, inputs: Mapping[int, H]) -> H | None:
        """The input for ``frame``'s ethertype in ``inputs``, if the frame is for us
        (unicast to our MAC, broadcast or multicast); ``None`` otherwise (counted).

        The one ethertype dispatch: the stack's synchronous path (:class:`Interface`)
        and the seed's async :meth:`input` both go through it.
        """
        if not self.accept(frame):
            return None
        try:
            return inputs[(frame[12] << 8) | frame[13]]
        except KeyError:
            self.counters.rx_unknown_type += 1
            return None

    async def input(
        self,
        buf: memoryview,
        *,
        arpv4: FrameCallback,
        ipv4: FrameCallback,
        ipv6: FrameCallback,
    ) -> None:
        buf = memoryview(buf)
        fn = self.dispatch(buf, {ETHERTYPE_IPV4: ipv4, ETHERTYPE_ARP: arpv4, ETHERTYPE_IPV6: ipv6})
        if fn is not None:
            await fn(buf[HEADER_LEN:])


_pending: set[asyncio.Task[None]] = set()

_check: type[EthifProtocol] = Ethif
