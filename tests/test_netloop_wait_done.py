"""``wait_done``: what every accepted connection's task waits in for the connection's
life (``create_server``), so it is light: no ``asyncio.shield`` (its second future's
callback and two closures, about 430 bytes a connection), same outcome."""

from __future__ import annotations

import asyncio
import tracemalloc
from typing import Any

from miragekit.netloop._transport import wait_done


class Transport:
    """The part of a StackTransport that wait_done uses."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self.done: asyncio.Future[None] = loop.create_future()


def _bytes_per_task(n: int, wait: Any) -> float:
    async def main() -> float:
        loop = asyncio.get_running_loop()
        ts = [Transport(loop) for _ in range(n)]
        tracemalloc.start()
        try:
            before = tracemalloc.get_traced_memory()[0]
            tasks = [loop.create_task(wait(t)) for t in ts]
            await asyncio.sleep(0)
            after = tracemalloc.get_traced_memory()[0]
        finally:
            tracemalloc.stop()
        for t in ts:
            t.done.set_result(None)
        await asyncio.gather(*tasks)
        return (after - before) / n

    return asyncio.run(main())


def test_a_waiting_connection_costs_little_more_than_a_bare_await() -> None:
    async def until_done(t: Transport) -> None:
        await t.done  # cancelled with the task: not for real use

    async def bare(t: Transport) -> None:
        await until_done(t)

    async def waiting(t: Transport) -> None:
        await wait_done(t)  # type: ignore[arg-type]

    extra = _bytes_per_task(200, waiting) - _bytes_per_task(200, bare)
    assert extra < 950, extra  # 750 here; with asyncio.shield: 1,180


def test_it_returns_once_done_and_when_cancelled_leaves_done_pending() -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        t = Transport(loop)
        task = loop.create_task(wait_done(t))  # type: ignore[arg-type]
        await asyncio.sleep(0)
        task.cancel()
        await asyncio.sleep(0)
        assert task.done() and not task.cancelled()  # the cancellation is swallowed
        assert not t.done.done()  # and does not reach the transport's future
        t2 = Transport(loop)
        task2 = loop.create_task(wait_done(t2))  # type: ignore[arg-type]
        await asyncio.sleep(0)
        t2.done.set_result(None)
        await asyncio.wait_for(task2, 1)
        t3 = Transport(loop)
        t3.done.set_result(None)
        await wait_done(t3)  # type: ignore[arg-type]  # already done: at once

    asyncio.run(main())
