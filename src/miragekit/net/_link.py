"""The synchronous fast path that every NETWORK backend offers beside the seed's API.

The seed's ``listen`` calls an async function per frame; a task or future per frame costs
several microseconds, which is most of the per-frame budget in Python (docs/DATAPATH).
So every backend also offers this synchronous interface, and the stack uses it:

* ``set_receiver(fn)``: ``fn(frame)`` is called synchronously for every received frame;
  the view is only valid during the call (copy what you keep). Backends read frames in
  batches (until the device would block) and call ``fn`` for each.
* ``send(frame)`` / ``sendv(bufs)``: transmit one frame now, without awaiting; if the
  device would block, the backend queues the frame (bounded) and drains the queue when it
  becomes writable, dropping (and counting) beyond the bound.
* ``mtu``: the largest frame payload (the Ethernet MTU, not counting the 14-byte header).

The seed's async ``listen``/``write``/``writev`` are built on these.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol

from ..v1 import Buffer

FrameReceiver = Callable[[memoryview], None]


class FrameLink(Protocol):
    @property
    def mtu(self) -> int: ...

    def set_receiver(self, fn: FrameReceiver | None) -> None: ...

    def send(self, frame: Buffer) -> None: ...

    def sendv(self, bufs: Sequence[Buffer]) -> None: ...
