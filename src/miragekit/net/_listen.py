"""The seed's async ``listen`` built on the synchronous FrameLink receiver.

Why a task per frame: MirageOS runs each ``listen`` callback as its own thread
(``Lwt.async``), so a callback that waits (for an ARP reply, a TCP window) must not hold
up the frames behind it. A task per frame costs a few microseconds; the stack avoids that
by using ``set_receiver`` directly.
"""

from __future__ import annotations

import asyncio
from typing import Any

from ..v1 import FrameCallback


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
