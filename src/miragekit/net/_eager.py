"""Run an application callback eagerly: a task only if it actually has to wait.

Why: the seed's callbacks are coroutines, and a task per datagram costs about as much as
the whole stack's per-packet work (docs/design.md, the per-frame budget). Most callbacks (count, reply with a
synchronous send) finish without suspending, so we step the coroutine once in place; if
it suspends, a task takes over and drives it on as the task would have. This is the idea
of Python 3.12's eager task factory, done for one call site.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Coroutine, Generator
from typing import Any

_log = logging.getLogger(__name__)
_pending: set[asyncio.Future[None]] = set()


class _Continue:
    """Awaiting this drives ``coro`` on from the point where it first suspended."""

    __slots__ = ("coro", "first")

    def __init__(self, coro: Coroutine[Any, Any, None], first: Any) -> None:
        self.coro = coro
        self.first = first

    def __await__(self) -> Generator[Any, None, None]:
        coro, fut = self.coro, self.first
        self.first = None
        while True:
            try:
                yield fut
            except BaseException as e:
                try:
                    fut = coro.throw(e)
                except StopIteration:
                    return
                continue
            try:
                fut = coro.send(None)
            except StopIteration:
                return


async def _drive(cont: _Continue) -> None:
    await cont


def run_eager(aw: Awaitable[None], on_error: Callable[[BaseException], None]) -> None:
    """Start ``aw`` now; errors (now or later) go to ``on_error``, never to the caller."""
    if not isinstance(aw, Coroutine):
        fut = asyncio.ensure_future(aw)
        _track(fut, on_error)
        return
    try:
        first = aw.send(None)
    except StopIteration:
        return
    except Exception as e:
        on_error(e)
        return
    task = asyncio.get_running_loop().create_task(_drive(_Continue(aw, first)))
    _track(task, on_error)


def _track(fut: asyncio.Future[None], on_error: Callable[[BaseException], None]) -> None:
    _pending.add(fut)

    def done(f: asyncio.Future[None]) -> None:
        _pending.discard(f)
        if not f.cancelled() and (e := f.exception()) is not None:
            on_error(e)

    fut.add_done_callback(done)
