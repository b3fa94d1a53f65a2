"""One Ethernet interface: a device, its :class:`Ethif`, and the IP layers on it.

Why one object: ARP and IPv4 and IPv6 share the device, its receiver and its ethertype
dispatch. The stacks (:class:`IPv4Stack`, :class:`IPv6Stack`, the dual stack) compose an
interface with the layers they want, and IPv6 joins an interface that already carries
IPv4 by setting :attr:`Interface.ipv6`, nothing more.

Received frames go from the device's fast path (``set_receiver``; ``set_receiver_flags``
with the flags of a device that vouches for checksums; or ``set_receiver_meta`` with the
offload flags) through :meth:`Interface.receive_frame`, synchronously, to the IP layer;
a device without the fast path is driven by its async ``listen``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from ..link import MetaReceiver, OffloadLink
from ._ethif import ETHERTYPE_ARP, ETHERTYPE_IPV4, ETHERTYPE_IPV6, Ethif
from ._ipv4 import IPv4
from ._ipv6 import IPv6

_log = logging.getLogger(__name__)

Input = Callable[[memoryview, int], None]
"""An ethertype's synchronous input: ``fn(payload, flags)`` with the offload flags."""


class Interface:
    """The IP layers ``ipv4`` and ``ipv6`` (either may be ``None``) on ``ethif``."""

    def __init__(self, ethif: Ethif, *, ipv4: IPv4 | None = None, ipv6: IPv6 | None = None):
        self.ethif = ethif
        self._ipv4 = ipv4
        self._ipv6 = ipv6
        self._inputs: dict[int, Input] = {}
        self._rebuild()
        self.internal_errors = 0
        """Exceptions of ours caught on the input path (a bug, never the peer's doing)."""
        self._listen_task: asyncio.Task[None] | None = None
        self._meta: OffloadLink | None = None  # receiving with the offload flags from it

    @property
    def ipv4(self) -> IPv4 | None:
        return self._ipv4

    @ipv4.setter
    def ipv4(self, ip: IPv4 | None) -> None:
        self._ipv4 = ip
        self._rebuild()

    @property
    def ipv6(self) -> IPv6 | None:
        return self._ipv6

    @ipv6.setter
    def ipv6(self, ip: IPv6 | None) -> None:
        """IPv6 joins (or leaves) the interface: its packets go there from now on."""
        self._ipv6 = ip
        self._rebuild()

    def _rebuild(self) -> None:
        inputs: dict[int, Input] = {}
        # Found once, not per frame: at 500 hosts each host is asked of ~10,000 requests
        # at start-up, on objects long out of the CPU's caches.
        self._passes_by: Callable[[memoryview], bool] | None = (
            None if self._ipv4 is None else self._ipv4.arp.passes_by
        )
        self._eth_counters = self.ethif.counters
        if (ip4 := self._ipv4) is not None:
            inputs[ETHERTYPE_IPV4] = ip4.receive
            inputs[ETHERTYPE_ARP] = ip4.receive_arp
        if (ip6 := self._ipv6) is not None:
            inputs[ETHERTYPE_IPV6] = ip6.receive
        self._inputs = inputs

    def receive_frame(self, frame: memoryview, flags: int = 0) -> None:
        """One received Ethernet frame, synchronously. Never raises.

        ``flags`` are an :class:`~miragekit.link.OffloadLink`'s receive flags.
        """
        try:
            ip4 = self._ipv4
            if ip4 is not None:
                if len(frame) > 13 and frame[13] == 6:
                    # ARP, straight to it: on a segment of hundreds of hosts most frames
                    # are other hosts' broadcast requests for other addresses, and ARP
                    # has nothing to do with them but count them. Asked before the
                    # frame's other bytes are read: it answers from what it read of the
                    # same broadcast for the previous host (the ethertype and the
                    # destination among them), each read here a call.
                    passes_by = self._passes_by
                    if passes_by is not None and passes_by(frame):
                        self._eth_counters.rx_frames += 1  # what accept counts of it
                        return
                    if frame[12] == 8:
                        if self.ethif.accept(frame):
                            ip4.receive_arp(frame[14:], flags)
                        return
                if (fast := ip4.frame_input) is not None and fast(frame, flags):
                    return
            fn = self.ethif.dispatch(frame, self._inputs)
            if fn is not None:
                fn(frame[14:], flags)  # the Ethernet header's 14 bytes
        except Exception:
            # A bug of ours, not the peer's: count it, keep the stack running.
            self.internal_errors += 1
            _log.exception("stack input failed")

    def _batch_done(self) -> None:
        """The device's read batch is over: IPv4's ``batch_done`` (TCP's flush). Never
        raises."""
        ip4 = self._ipv4
        done = ip4.batch_done if ip4 is not None else None
        if done is None:
            return
        try:
            done()
        except Exception:
            self.internal_errors += 1
            _log.exception("stack input failed")

    async def _listen_frame(self, frame: memoryview) -> None:
        self.receive_frame(frame)

    def start(self) -> None:
        """Take the device's received frames: with the offload flags when an IP layer
        uses the device's offloads, else on the fast path (with the flags of a device
        that vouches for checksums, when it can say so), else through ``listen``."""
        link = self.ethif.link
        ol = next((ip.offload for ip in (self._ipv4, self._ipv6) if ip and ip.offload), None)
        if ol is not None:
            ol.set_receiver_meta(self.receive_frame)
            self._meta = ol
        elif link is not None:
            flags_rx: Callable[[MetaReceiver], None] | None = getattr(
                link, "set_receiver_flags", None
            )
            if flags_rx is not None:
                flags_rx(self.receive_frame)
            else:
                link.set_receiver(self.receive_frame)
            set_done = getattr(link, "set_batch_done", None)
            if set_done is not None:
                set_done(self._batch_done)
                if self._ipv4 is not None:
                    self._ipv4.batched = True  # the device's batches end with batch_done
        else:
            netif = self.ethif.id()
            self._listen_task = asyncio.get_running_loop().create_task(
                netif.listen(self._listen_frame)
            )

    def stop(self) -> None:
        """Let go of the device's received frames."""
        if self._meta is not None:
            self._meta.set_receiver_meta(None)
        elif self.ethif.link is not None:
            self.ethif.link.set_receiver(None)
            set_done = getattr(self.ethif.link, "set_batch_done", None)
            if set_done is not None:
                set_done(None)
        if self._ipv4 is not None:
            self._ipv4.batched = False
        self._meta = None
        if self._listen_task is not None:
            self._listen_task.cancel()
            self._listen_task = None
