"""miragekit.sim: virtual time, timer order, determinism, asyncio primitives, real fds."""

from __future__ import annotations

import asyncio
import socket
import threading
import time

import pytest

from miragekit import sim


def test_sleeping_an_hour_costs_milliseconds() -> None:
    async def main() -> float:
        await asyncio.sleep(3600)
        return sim.now()

    t0 = time.perf_counter()
    assert sim.run(main()) == 3600.0
    assert time.perf_counter() - t0 < 2  # an hour of virtual time, not of ours


def test_clock_starts_at_zero_or_start() -> None:
    async def main() -> tuple[float, float]:
        loop = asyncio.get_running_loop()
        return sim.now(), loop.time()

    assert sim.run(main()) == (0.0, 0.0)
    assert sim.run(main(), start=100.0) == (100.0, 100.0)


def test_clock_device_runs_on_virtual_time_from_a_fixed_epoch() -> None:
    async def main() -> tuple[float, float, int]:
        clock = sim.clock()
        t0 = clock.time()
        await asyncio.sleep(3600)
        return t0, clock.time() - t0, clock.gmtime(clock.time()).tm_year + 1900

    assert sim.run(main()) == (sim.CLOCK_START, 3600.0, 2000)
    assert sim.CLOCK_START == 946_684_800.0  # 2000-01-01 00:00:00 UTC, as documented
    assert sim.run(main(), start=50.0, clock_start=0.0) == (0.0, 3600.0, 1970)

    async def on_asyncio() -> None:
        sim.clock()

    with pytest.raises(RuntimeError, match=r"not running on a miragekit\.sim\.SimLoop"):
        asyncio.run(on_asyncio())


def test_timers_run_in_deadline_order_and_fifo_on_ties() -> None:
    async def main() -> list[tuple[float, int]]:
        loop = asyncio.get_running_loop()
        out: list[tuple[float, int]] = []
        done = asyncio.Event()
        # 300 timers on three deadlines, scheduled interleaved and out of order.
        for i in range(300):
            when = (2.0, 1.0, 3.0)[i % 3]
            loop.call_at(when, lambda i: out.append((loop.time(), i)), i)
        loop.call_at(3.0, done.set)
        await done.wait()
        return out

    out = sim.run(main())
    assert [t for t, _ in out] == sorted(t for t, _ in out)
    for deadline in (1.0, 2.0, 3.0):
        ids = [i for t, i in out if t == deadline]
        assert len(ids) == 100
        assert ids == sorted(ids), "equal deadlines must run in scheduling order"


def test_call_soon_before_timers_and_cancelled_timers_skip() -> None:
    async def main() -> list[str]:
        loop = asyncio.get_running_loop()
        out: list[str] = []
        loop.call_later(0.0, out.append, "later0")
        loop.call_soon(out.append, "soon")
        h = loop.call_later(1.0, out.append, "cancelled")
        loop.call_later(2.0, out.append, "two")
        h.cancel()
        # many cancelled timers trigger the bulk purge
        hs = [loop.call_later(5.0, out.append, "x") for _ in range(500)]
        for x in hs:
            x.cancel()
        await asyncio.sleep(10)
        return out

    assert sim.run(main()) == ["soon", "later0", "two"]


async def _workload(n_tasks: int) -> list[tuple[float, int, int]]:
    rng = sim.rng()
    trace: list[tuple[float, int, int]] = []
    q: asyncio.Queue[tuple[int, int]] = asyncio.Queue()

    async def worker(w: int) -> None:
        for step in range(20):
            await asyncio.sleep(rng.choice((0.0, 0.001, 0.5, rng.random())))
            await q.put((w, step))
            trace.append((sim.now(), w, step))

    async def consumer() -> None:
        for _ in range(n_tasks * 20):
            w, step = await q.get()
            trace.append((sim.now(), -w, step))

    await asyncio.gather(consumer(), *(worker(w) for w in range(n_tasks)))
    return trace


def test_same_seed_same_trace_other_seed_other_trace() -> None:
    a = sim.run(_workload(8), seed=7)
    b = sim.run(_workload(8), seed=7)
    c = sim.run(_workload(8), seed=8)
    assert a == b
    assert a != c
    assert len(a) == 8 * 20 * 2


def test_rng_is_seeded() -> None:
    async def draw() -> list[float]:
        return [sim.rng().random() for _ in range(5)]

    assert sim.run(draw(), seed=3) == sim.run(draw(), seed=3)
    assert sim.run(draw(), seed=3) != sim.run(draw(), seed=4)


def test_asyncio_primitives() -> None:
    async def main() -> None:
        # wait_for times out on virtual time
        ev = asyncio.Event()
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(ev.wait(), timeout=30)
        assert sim.now() == 30.0
        # asyncio.timeout too
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(5):
                await asyncio.sleep(100)
        assert sim.now() == 35.0

        # gather returns in argument order, finishing at the longest sleep
        async def val(d: float, v: int) -> int:
            await asyncio.sleep(d)
            return v

        assert list(await asyncio.gather(val(3, 1), val(1, 2), val(2, 3))) == [1, 2, 3]
        assert sim.now() == 38.0
        # Event set from a timer
        loop = asyncio.get_running_loop()
        loop.call_later(7, ev.set)
        await ev.wait()
        assert sim.now() == 45.0
        # Queue with a bounded size blocks the producer
        q: asyncio.Queue[int] = asyncio.Queue(maxsize=1)

        async def slow_consumer() -> list[tuple[int, float]]:
            got = []
            for _ in range(3):
                await asyncio.sleep(1)
                got.append((await q.get(), sim.now()))
            return got

        t = asyncio.create_task(slow_consumer())
        for i in range(3):
            await q.put(i)
        assert await t == [(0, 46.0), (1, 47.0), (2, 48.0)]
        # Lock and Semaphore
        sem = asyncio.Semaphore(2)
        ends: list[float] = []

        async def job() -> None:
            async with sem:
                await asyncio.sleep(1)
                ends.append(sim.now())

        await asyncio.gather(*(job() for _ in range(5)))
        assert ends == [49.0, 49.0, 50.0, 50.0, 51.0]

    sim.run(main())


def test_real_fds_are_polled_without_hanging() -> None:
    async def main() -> tuple[bytes, float]:
        loop = asyncio.get_running_loop()
        a, b = socket.socketpair()
        a.setblocking(False)
        b.setblocking(False)
        got = loop.create_future()
        loop.add_reader(b.fileno(), lambda: got.set_result(b.recv(100)))
        try:
            a.send(b"ping")
            # A long timer is pending; the ready fd is still served first, at t=0.
            sleeper = asyncio.create_task(asyncio.sleep(1000))
            data = await got
            t = sim.now()
            await sleeper
            return data, t
        finally:
            loop.remove_reader(b.fileno())
            a.close()
            b.close()

    assert sim.run(main()) == (b"ping", 0.0)


def test_blocks_for_threads_when_nothing_is_scheduled() -> None:
    async def main() -> int:
        loop = asyncio.get_running_loop()
        fut = loop.create_future()

        def worker() -> None:
            time.sleep(0.05)
            loop.call_soon_threadsafe(fut.set_result, 5)

        threading.Thread(target=worker).start()
        r: int = await fut
        r += await loop.run_in_executor(None, lambda: 1)
        return r

    assert sim.run(main()) == 6


def test_leftover_tasks_cancelled_oldest_first() -> None:
    order: list[int] = []

    async def main() -> None:
        async def sleeper(i: int) -> None:
            try:
                await asyncio.sleep(1e9)
            finally:
                order.append(i)

        tasks = [asyncio.create_task(sleeper(i)) for i in range(20)]
        assert len(tasks) == 20
        await asyncio.sleep(1)

    sim.run(main())
    assert order == list(range(20))


def test_misuse() -> None:
    async def inner() -> None:
        coro = asyncio.sleep(0)
        with pytest.raises(RuntimeError):
            sim.run(coro)
        coro.close()

    sim.run(inner())
    with pytest.raises(TypeError):
        sim.run(42)  # type: ignore[arg-type]

    async def real() -> float:
        with pytest.raises(RuntimeError):
            sim.rng()
        assert sim.current() is None
        return sim.now()

    assert asyncio.run(real()) > 0
    assert sim.current() is None


def test_advance_and_loop_object() -> None:
    loop = sim.SimLoop(seed=1)
    try:
        with pytest.raises(ValueError):
            loop.advance(-1)
        loop.advance(2.5)
        assert loop.time() == 2.5
        assert loop.seed == 1

        async def main() -> float:
            assert sim.current() is loop
            await asyncio.sleep(1)
            return sim.now()

        assert loop.run_until_complete(main()) == 3.5
    finally:
        loop.close()


def test_runner_loop_factory_debug_and_run_forever() -> None:
    async def main() -> float:
        await asyncio.sleep(5)
        return sim.now()

    with asyncio.Runner(loop_factory=lambda: sim.SimLoop(seed=9)) as runner:
        assert runner.run(main()) == 5.0
        assert runner.run(main()) == 10.0
    assert sim.run(main(), debug=True) == 5.0

    loop = sim.SimLoop()
    try:
        loop.call_later(3600, loop.stop)
        t0 = time.perf_counter()
        loop.run_forever()
        assert loop.time() == 3600.0 and time.perf_counter() - t0 < 2
    finally:
        loop.close()


def test_idle_timeout_turns_a_deadlock_into_an_error() -> None:
    async def stuck() -> None:
        await asyncio.sleep(10)
        await asyncio.Event().wait()  # nobody will ever set it

    t0 = time.perf_counter()
    with pytest.raises(sim.SimDeadlock, match=r"t=10\.0"):
        sim.run(stuck(), idle_timeout=0.2)
    assert time.perf_counter() - t0 < 5  # well under the 10 s of virtual sleep

    async def thread_wakes() -> int:  # a thread within the timeout is not a deadlock
        def work() -> int:
            time.sleep(0.05)
            return 3

        return await asyncio.get_running_loop().run_in_executor(None, work)

    assert sim.run(thread_wakes(), idle_timeout=10) == 3
    with pytest.raises(ValueError, match="idle_timeout"):
        sim.SimLoop(idle_timeout=0)
