"""One timer for many sans-I/O state machines: they announce deadlines, it fires once.

It uses ``loop.call_at`` on ``loop.time()``, so it runs on simulated time as well.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable


class Wakeup:
    """Calls ``fire(now)`` at the earliest deadline passed to :meth:`at`."""

    def __init__(self, loop: asyncio.AbstractEventLoop, fire: Callable[[float], None]) -> None:
        self._loop = loop
        self._fire = fire
        self._handle: asyncio.TimerHandle | None = None
        self._when = 0.0

    def at(self, when: float) -> None:
        if self._handle is not None:
            if self._when <= when:
                return
            self._handle.cancel()
        self._when = when
        self._handle = self._loop.call_at(when, self._run)

    def cancel(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None

    def _run(self) -> None:
        self._handle = None
        self._fire(self._loop.time())
