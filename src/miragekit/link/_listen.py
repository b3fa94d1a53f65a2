"""The seed's async ``listen`` built on a backend's synchronous FrameLink receiver.

Two ways, for two needs:

* :class:`CallbackSpawner` runs each callback as its own task, as MirageOS runs each
  ``listen`` callback as its own thread (``Lwt.async``): a callback that waits (for an ARP
  reply, a TCP window) does not hold up the frames behind it. The virtual switch and the
  pcap wrapper use it.
* :class:`FrameListener` copies frames into a bounded queue and awaits the callback on
  each in order (a full queue drops and counts): one task per device, not per frame.
  The TAP and VXLAN backends use it (through ``FdLink``).

A task per frame costs a few microseconds; the stack avoids both by using
``set_receiver`` directly.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from typing import Any

from ..v1 import FrameCallback
from ._frame import FrameLink, FrameReceiver


class CallbackSpawner:
    """A FrameReceiver that runs ``fn(frame)`` as a task, keeping and reporting the tasks.

    ``copy`` says whether the view must be copied first (the backend's views are only
    valid during the receiver call); a view of immutable ``bytes`` is never copied.
    """

    __slots__ = ("_copy", "_fn", "_loop", "_tasks")

    def __init__(self, fn: FrameCallback, loop: asyncio.AbstractEventLoop, *, copy: bool) -> None:
        self._fn = fn
        self._loop = loop
        self._copy = copy
        self._tasks: set[asyncio.Task[None]] = set()

    def __call__(self, frame: memoryview) -> None:
        if self._copy and type(frame.obj) is not bytes:
            frame = memoryview(bytes(frame))
        task = self._loop.create_task(_run(self._fn, frame))
        self._tasks.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if task.cancelled():
            return
        exc = task.exception()
        if exc is not None:
            self._loop.call_exception_handler(
                {"message": "exception in a NETWORK.listen callback", "exception": exc}
            )

    @property
    def pending(self) -> int:
        """Callbacks still running."""
        return len(self._tasks)


async def _run(fn: FrameCallback, frame: memoryview) -> Any:
    await fn(frame)


class FrameListener:
    """One backend's listen queue; :meth:`close` (on disconnect) makes :meth:`run` return."""

    def __init__(self, limit: int, on_drop: Callable[[], None]) -> None:
        self.limit = limit
        self._on_drop = on_drop
        self._q: deque[bytes] = deque()
        self._wake: asyncio.Event | None = None
        self._closed = False

    async def run(
        self,
        link: FrameLink,
        fn: FrameCallback,
        *,
        installed: Callable[[], FrameReceiver | None] | None = None,
    ) -> None:
        """``installed`` reports the link's receiver: if given, a receiver someone else
        set meanwhile is left in place when this returns."""
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
            if installed is None or installed() is receive:
                link.set_receiver(None)

    def close(self) -> None:
        self._closed = True
        if self._wake is not None:
            self._wake.set()


class SpawnedListens:
    """The seed's ``listen`` on a device that delivers to one receiver: each call installs
    a :class:`CallbackSpawner` and returns when :meth:`close` is called (the device's
    ``disconnect``). The virtual switch's interfaces and impaired links use it."""

    __slots__ = ("_waiters",)

    def __init__(self) -> None:
        self._waiters: list[asyncio.Future[None]] = []

    async def run(
        self,
        fn: FrameCallback,
        install: Callable[[FrameReceiver | None], None],
        installed: Callable[[], FrameReceiver | None],
    ) -> None:
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[None] = loop.create_future()
        self._waiters.append(waiter)
        spawner = CallbackSpawner(fn, loop, copy=True)
        install(spawner)
        try:
            await waiter
        finally:
            if waiter in self._waiters:
                self._waiters.remove(waiter)
            if installed() is spawner:
                install(None)

    def close(self) -> None:
        for w in self._waiters:
            if not w.done():
                w.set_result(None)
        self._waiters.clear()
