"""The synchronous fast path that every NETWORK backend offers beside the seed's API.

The seed's ``listen`` calls an async function per frame; a task or future per frame costs
several microseconds, which is most of the per-frame budget in Python (docs/design.md).
So every backend also offers this synchronous interface, and the stack uses it:

* ``set_receiver(fn)``: ``fn(frame)`` is called synchronously for every received frame;
  the view is only valid during the call (copy what you keep). Backends read frames in
  batches (until the device would block) and call ``fn`` for each.
* ``send(frame)`` / ``sendv(bufs)``: transmit one frame now, without awaiting; if the
  device would block, the backend queues the frame (bounded) and drains the queue when it
  becomes writable, dropping (and counting) beyond the bound.
* ``mtu``: the largest frame payload (the Ethernet MTU, not counting the 14-byte header).
* optionally ``send_frames(frames)``: transmit a burst of whole frames, in order, as
  ``send`` would one by one; a backend offers it when it can hand a burst to the kernel
  in fewer calls. :func:`send_frames` uses it when present and loops over ``send``
  otherwise, so callers need not care.

The seed's async ``listen``/``write``/``writev`` are built on these.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Final, Protocol, cast

from ..v1 import Buffer, Network

FrameReceiver = Callable[[memoryview], None]


class FrameLink(Protocol):
    @property
    def mtu(self) -> int: ...

    def set_receiver(self, fn: FrameReceiver | None) -> None: ...

    def send(self, frame: Buffer) -> None: ...

    def sendv(self, bufs: Sequence[Buffer]) -> None: ...


class FrameNetwork(Network, FrameLink, Protocol):
    """A NETWORK device that also offers the FrameLink fast path."""


def send_frames(link: FrameLink, frames: Sequence[Buffer]) -> None:
    """Send ``frames`` (whole frames, in order) on ``link``: with its own ``send_frames``
    when it has one (one call for the burst), else one ``send`` each."""
    batch = getattr(link, "send_frames", None)
    if batch is not None:
        batch(frames)
        return
    send = link.send
    for f in frames:
        send(f)


def send_split(link: FrameLink, heads: Sequence[bytes], bodies: Sequence[Buffer]) -> None:
    """:func:`send_frames` of the frames ``heads[i] + bodies[i]``: with the link's own
    ``send_split`` when it has one (it copies the parts where the frame goes, e.g. a
    ring slot, without joining them first), else joined."""
    split = getattr(link, "send_split", None)
    if split is not None:
        split(heads, bodies)
        return
    send_frames(link, [h + b for h, b in zip(heads, bodies, strict=True)])


# --- the offload extension (TAP with virtio-net header) ------------------------------------

CSUM_NEEDED: Final = 1
"""Receive flag (virtio ``NEEDS_CSUM``): the frame never crossed a wire; its transport
checksum field holds only the pseudo-header sum. Trust the data, do not verify."""
CSUM_VALID: Final = 2
"""Receive flag (virtio ``DATA_VALID``): the device already verified the checksums, or
vouches for them (a simulated switch whose every sender is a stack and whose links do not
corrupt): the IPv4 header's and the transport's need no verifying."""

OFFLOAD_CSUM: Final = 0x01
OFFLOAD_TSO4: Final = 0x02
OFFLOAD_TSO6: Final = 0x04

MetaReceiver = Callable[[memoryview, int], None]
"""``fn(frame, flags)``: a received frame with its ``CSUM_NEEDED``/``CSUM_VALID`` flags."""


class FlagsLink(FrameLink, Protocol):
    """A :class:`FrameLink` that can say which received frames need no verifying.

    * ``set_receiver_flags(fn)``: like ``set_receiver``, but ``fn(frame, flags)``, with
      ``CSUM_VALID`` in ``flags`` when the device vouches for the frame's checksums. It
      hands over nothing ``set_receiver`` would not (no GSO frames, no ``CSUM_NEEDED``),
      and claims no send offload. ``set_receiver`` installs a plain receiver again.

    Why not :class:`OffloadLink`'s ``set_receiver_meta``: a device can vouch for what it
    delivers without completing checksums or cutting segments for the sender.
    """

    def set_receiver_flags(self, fn: MetaReceiver | None) -> None: ...


class OffloadLink(FrameLink, Protocol):
    """A :class:`FrameLink` that can exchange checksum-offloaded and TSO frames.

    Why a separate protocol: the plain ``fn(frame)`` fast path stays as it is for every
    backend; a stack that understands offloads asks ``offloads`` and then uses these.

    * ``offloads``: a bit set of ``OFFLOAD_*`` the device offers (0: none right now).
    * ``set_receiver_meta(fn)``: like ``set_receiver``, but ``fn(frame, flags)``; while
      it is installed the device may hand over frames larger than ``mtu`` (GSO TCP
      segments) and frames with ``CSUM_NEEDED``. Installing a plain receiver with
      ``set_receiver`` turns that off again, so plain receivers only see plain frames.
    * ``send_offload(bufs, csum_start, hdr_len, gso_size)``: send one frame whose transport
      checksum field (at ``csum_start + 16``, TCP) holds the pseudo-header sum; the device
      completes it. ``gso_size`` > 0 makes it a TSO frame of up to 64 KiB, cut by the
      device into segments of ``gso_size`` payload bytes; ``hdr_len`` is the length of
      all headers (Ethernet, IP, TCP). The IP version in the frame (IPv4 or IPv6, no
      extension headers) says which segmentation the device applies.
    """

    @property
    def offloads(self) -> int: ...

    def set_receiver_meta(self, fn: MetaReceiver | None) -> None: ...

    def send_offload(
        self, bufs: Sequence[Buffer], *, csum_start: int, hdr_len: int, gso_size: int
    ) -> None: ...


def offload_link(link: FrameLink | None, tso: int = OFFLOAD_TSO4) -> OffloadLink | None:
    """``link`` as an :class:`OffloadLink` when it offers checksum offload and TCP
    segmentation offload ``tso`` (``OFFLOAD_TSO4`` for IPv4, ``OFFLOAD_TSO6`` for IPv6)."""
    if link is None or not hasattr(link, "set_receiver_meta"):
        return None
    ol = cast(OffloadLink, link)
    want = OFFLOAD_CSUM | tso
    return ol if ol.offloads & want == want else None
