"""The seed's async ``listen`` on top of a backend's synchronous :class:`FrameLink` receiver.

Frames are copied into a bounded queue (the receiver's view is only valid during the call)
and handed to the application's coroutine in order; a full queue drops and counts.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable

from ..v1 import FrameCallback
from ._link import FrameLink


class FrameListener:
    """One backend's listen queue; :meth:`close` (on disconnect) makes :meth:`run` return."""

    def __init__(self, limit: int, on_drop: Callable[[], None]) -> None:
        self.limit = limit
        self._on_drop = on_drop
        self._q: deque[bytes] = deque()
        self._wake: asyncio.Event | None = None
        self._closed = False

    async def run(self, link: FrameLink, fn: FrameCallback) -> None:
        if self._closed:
            return
        wake = self._wake = asyncio.Event()
        q, limit = self._q, self.limit

        def receive(frame: memoryview) -> None:
            if len(q) >= limit:
                self._on_drop()
                return
            q.append(bytes(frame))
            wake.set()

        link.set_receiver(receive)
        try:
            while not self._closed:
                while q and not self._closed:
                    await fn(memoryview(q.popleft()))
                if self._closed:
                    break
                wake.clear()
                await wake.wait()
        finally:
            q.clear()
            link.set_receiver(None)

    def close(self) -> None:
        self._closed = True
        if self._wake is not None:
            self._wake.set()
