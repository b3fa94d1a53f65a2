"""The simulator's timer queue and the loop methods it lends the loop: timers run by
deadline, then in the order they were scheduled, whatever way they were made, and the
loop keeps asyncio's behaviour (debug mode, subclasses, cancelled timers)."""

from __future__ import annotations

import asyncio
import random
from typing import Any

import pytest

from miragekit import sim
from miragekit.sim._loop import SimDeadlock, run_on


def _run(loop: sim.SimLoop, until: float) -> None:
    loop.call_at(until, loop.stop)
    loop.run_forever()


def _equal_deadlines(tamper: bool = False) -> tuple[list[int], list[int]]:
    """Many timers on few deadlines (ints among floats, made by call_at and call_later):
    the order they ran in, and the order of (deadline, scheduling order). ``tamper``
    reverses each deadline's timers in the queue before they run."""
    loop = sim.SimLoop()
    try:
        rng = random.Random(5)
        ran: list[int] = []
        expected: list[tuple[float, int]] = []
        for k in range(300):
            when = rng.choice((1.0, 2, 2.0, 3.5, 0.25))
            if k % 2:
                loop.call_at(when, ran.append, k)
            else:
                loop.call_later(when, ran.append, k)
            expected.append((when, k))
        if tamper:
            for bucket in loop._sched.buckets.values():
                bucket.reverse()
        _run(loop, 10.0)
        return ran, [k for _, k in sorted(expected)]
    finally:
        loop.close()


def test_equal_deadlines_run_in_the_order_they_were_scheduled() -> None:
    ran, expected = _equal_deadlines()
    assert ran == expected


def test_a_queue_that_orders_equal_deadlines_wrongly_is_caught() -> None:
    """The check above sees a queue that runs equal deadlines in another order."""
    ran, expected = _equal_deadlines(tamper=True)
    assert ran != expected and sorted(ran) == sorted(expected)


def test_timers_made_while_a_batch_runs() -> None:
    """A callback at t=1 schedules, in this order: a timer for now, one in the past, a
    call_soon, another timer for now, one for later, one for now it cancels. The
    call_soon was ready first; the past timer's deadline precedes now's; the two timers
    for now keep their order; the cancelled one never runs."""
    loop = sim.SimLoop()
    try:
        ran: list[str] = []

        def at_one() -> None:
            loop.call_at(1.0, ran.append, "now1")
            loop.call_at(0.5, ran.append, "past")
            loop.call_soon(ran.append, "soon")
            loop.call_later(0, ran.append, "now2")
            loop.call_at(1.5, ran.append, "later")
            loop.call_at(1.0, ran.append, "cancelled").cancel()

        loop.call_at(1.0, at_one)
        _run(loop, 2.0)
        assert ran == ["soon", "past", "now1", "now2", "later"]
    finally:
        loop.close()


def test_advance_keeps_the_order_of_timers_for_the_old_present() -> None:
    """Timers made for the present instant, then the clock advanced: they run with the
    ones already due, in scheduling order, after what is ready."""
    loop = sim.SimLoop()
    try:
        ran: list[tuple[str, float]] = []

        def note(name: str) -> None:
            ran.append((name, loop.time()))

        def at_one() -> None:
            loop.call_at(1.0, note, "a")  # for now
            loop.advance(0.5)
            loop.call_at(1.0, note, "b")  # in the past now, same deadline as a
            loop.call_at(1.5, note, "c")  # for the new present
            loop.call_soon(note, "d")
            loop.call_at(1.25, note, "e")  # between a's deadline and now

        loop.call_at(1.0, at_one)
        _run(loop, 3.0)
        assert ran == [("d", 1.5), ("a", 1.5), ("b", 1.5), ("e", 1.5), ("c", 1.5)]
    finally:
        loop.close()


def test_the_clock_does_not_jump_to_a_deadline_whose_timers_are_all_cancelled() -> None:
    """Only cancelled timers left: that is a deadlock at the present instant, not after
    a jump to their deadline; and a cancelled timer's deadline is no stop on the way."""

    async def stuck() -> None:
        loop = asyncio.get_running_loop()
        loop.call_later(5, print).cancel()
        loop.call_later(5, print).cancel()
        await loop.create_future()

    with pytest.raises(SimDeadlock, match=r"at t=0\.0:"):
        sim.run(stuck())

    async def skips() -> list[float]:
        loop = asyncio.get_running_loop()
        seen: list[float] = []
        loop.call_later(2, print).cancel()
        keep = loop.call_later(3, lambda: seen.append(loop.time()))
        loop.call_later(3, print).cancel()
        await asyncio.sleep(4)
        assert not keep.cancelled()
        return seen

    assert sim.run(skips()) == [3.0]


def test_cancelled_timers_are_purged_in_bulk() -> None:
    """Many timers, most cancelled: the next iteration drops them all (asyncio's purge:
    the count goes back to 0 and they are no longer scheduled); the rest run in order."""
    loop = sim.SimLoop()
    try:
        ran: list[int] = []
        timers = [loop.call_at(1.0 + (k % 7), ran.append, k) for k in range(400)]
        for t in timers[:300]:
            t.cancel()
        assert loop._timer_cancelled_count == 300
        loop.call_soon(loop.stop)
        loop.run_forever()
        assert loop._timer_cancelled_count == 0 and loop._sched.timers == 100
        assert not any(t._scheduled for t in timers[:300])  # type: ignore[attr-defined]
        assert all(t._scheduled for t in timers[300:])  # type: ignore[attr-defined]
        assert len(loop._scheduled) == 100
        _run(loop, 20.0)
        assert ran == sorted(range(300, 400), key=lambda k: (k % 7, k))
    finally:
        loop.close()


def test_scheduled_lists_the_timers_in_run_order_and_close_forgets_them() -> None:
    loop = sim.SimLoop(start=1.0)
    a = loop.call_at(3.0, print)
    b = loop.call_at(0.5, print)
    c = loop.call_at(1.0, print)  # for now
    d = loop.call_at(3.0, print)
    assert loop._scheduled == [b, c, a, d]
    loop.close()
    assert loop._scheduled == [] and not loop._sched.pending()
    with pytest.raises(RuntimeError, match="closed"):
        loop.call_at(5.0, print)
    with pytest.raises(RuntimeError, match="closed"):
        loop.call_soon(print)


def test_the_loop_lends_the_schedulers_methods_except_in_debug_mode() -> None:
    """Outside debug mode call_at, call_later and time are the scheduler's (no frame of
    the loop's in between); debug mode brings back the loop's, with asyncio's checks,
    and leaving it the scheduler's."""
    loop = sim.SimLoop()
    try:
        sched = loop._sched
        for name in ("call_at", "call_later"):
            assert getattr(loop, name) == getattr(sched, name), name
        compiled = not hasattr(type(sched).time, "__code__")
        assert ("time" in loop.__dict__) == compiled  # the loop's own, interpreted
        assert loop._ready is sched.ready  # asyncio's own code appends to it
        loop.set_debug(True)
        assert type(loop.call_soon(print)).__name__ == "Handle"
        assert type(loop.call_later(1, print)).__name__ == "TimerHandle"
        assert loop.call_at.__func__ is sim.SimLoop.call_at  # type: ignore[attr-defined]
        with pytest.raises(TypeError, match="coroutines cannot be used"):
            loop.call_at(2.0, asyncio.sleep)  # type: ignore[arg-type]
        loop.set_debug(False)
        assert loop.call_at == sched.call_at
        assert type(loop.call_at(3.0, print)).__name__ == "_Timer"
    finally:
        loop.close()


def test_a_subclass_override_is_not_shadowed() -> None:
    """A subclass's call_at (or a patched SimLoop.call_later) is what runs, not the
    scheduler's; call_later goes through a subclass's call_at, as asyncio's does."""
    seen: list[str] = []

    class Counting(sim.SimLoop):
        def call_at(  # type: ignore[override]
            self, when: float, callback: Any, *args: Any, context: Any = None
        ) -> asyncio.TimerHandle:
            seen.append("at")
            return super().call_at(when, callback, *args, context=context)

    async def main() -> None:
        await asyncio.sleep(0.5)
        asyncio.get_running_loop().call_later(0.5, print)

    run_on(Counting(), main())
    assert seen == ["at", "at"]

    real = sim.SimLoop.call_later

    def patched(self: sim.SimLoop, *a: Any, **k: Any) -> asyncio.TimerHandle:
        seen.append("later")
        return real(self, *a, **k)

    seen.clear()
    sim.SimLoop.call_later = patched  # type: ignore[method-assign,assignment]
    try:
        sim.run(main())
    finally:
        sim.SimLoop.call_later = real  # type: ignore[method-assign]
    assert seen == ["later", "later"]


def _lent(loop: sim.SimLoop) -> set[str]:
    names = ("get_debug", "create_future", "is_running", "call_soon", "_timer_handle_cancelled")
    return {name for name in names if name in loop.__dict__}


def test_get_debug_create_future_and_is_running_are_native_outside_debug_mode() -> None:
    """Outside debug mode get_debug is ``bool`` (a C callable: False), a cancelled
    timer is counted by the scheduler's method, and with the compiled scheduler
    create_future and is_running are its (no Python frame for the C futures,
    asyncio.sleep or the switch); they answer as asyncio's. Debug mode brings
    back asyncio's methods: futures then record where they were made."""
    loop = sim.SimLoop()
    compiled = not hasattr(type(loop._sched).time, "__code__")
    try:
        assert loop.get_debug is bool and loop.get_debug() is False
        both = {"get_debug", "_timer_handle_cancelled"}
        assert _lent(loop) == (both | {"create_future", "is_running"} if compiled else both)
        timer = loop.call_at(5.0, print)
        timer.cancel()  # asyncio's TimerHandle.cancel: the loop counts it (the scheduler)
        timer.cancel()
        assert loop._timer_cancelled_count == 1
        fut = loop.create_future()
        assert type(fut) is asyncio.Future and fut.get_loop() is loop
        assert fut._source_traceback is None  # type: ignore[attr-defined]
        assert not loop.is_running()

        async def main() -> bool:
            return asyncio.get_running_loop().is_running()

        assert loop.run_until_complete(main()) is True
        assert not loop.is_running()

        loop.set_debug(True)
        assert _lent(loop) == set()
        assert loop.get_debug() is True
        assert loop.create_future.__func__ is asyncio.BaseEventLoop.create_future  # type: ignore[attr-defined]
        fut = loop.create_future()
        assert fut._source_traceback  # type: ignore[attr-defined]
        assert loop.run_until_complete(main()) is True and not loop.is_running()
        loop.set_debug(False)
        assert "get_debug" in _lent(loop) and loop.get_debug() is False
    finally:
        loop.close()


def test_an_override_of_get_debug_create_future_or_is_running_is_not_shadowed() -> None:
    """A subclass's get_debug, create_future and is_running are what its callers (the C
    futures among them) call, not the scheduler's or ``bool``."""
    seen: list[str] = []

    class Counting(sim.SimLoop):
        def get_debug(self) -> bool:
            seen.append("debug")
            return super().get_debug()

        def create_future(self) -> asyncio.Future[Any]:
            seen.append("future")
            return super().create_future()

        def is_running(self) -> bool:
            seen.append("running")
            return super().is_running()

    loop = Counting()
    assert not _lent(loop) & {"get_debug", "create_future", "is_running"}

    async def main() -> None:
        await asyncio.sleep(0.5)  # create_future, whose future asks get_debug
        assert asyncio.get_running_loop().is_running()

    run_on(loop, main())
    assert set(seen) == {"future", "debug", "running"}


def _calendar_program(seed: int, n: int, cancel_share: float) -> tuple[list[int], list[int]]:
    """Timers that schedule timers (offsets of zero, within one calendar slot, across
    slots and seconds, ints among floats), some cancelled at once: the order they ran in
    on a SimLoop, and the order of (deadline, scheduling order) the queue must keep."""
    rng = random.Random(seed)
    offsets = (0, 0.001, 0.004, 1 / 64, 0.02, 0.3, 1, 1.0, 2.5, 7)
    loop = sim.SimLoop()
    ran: list[int] = []
    expected: list[tuple[float, int]] = []
    labels = iter(range(10**9))

    def schedule(now: float) -> None:
        for i in range(rng.choice((1, 2, 3))):
            k = next(labels)
            if k >= n:
                return
            when = now + rng.choice(offsets) + rng.choice((0, 0, rng.random() / 100))
            timer = loop.call_at(when, fire, k)
            if i and rng.random() < cancel_share:  # the first one always runs
                timer.cancel()
            else:
                expected.append((when, k))

    def fire(k: int) -> None:
        ran.append(k)
        schedule(loop.time())

    try:
        for _ in range(20):
            schedule(0.0)
        loop.call_at(10**6, loop.stop)
        loop.run_forever()
    finally:
        loop.close()
    return ran, [k for _, k in sorted(expected)]


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("cancel_share", [0.0, 0.3, 0.8])
def test_the_calendar_runs_timers_by_deadline_then_scheduling_order(
    seed: int, cancel_share: float
) -> None:
    ran, expected = _calendar_program(seed, 3000, cancel_share)
    assert len(ran) > 1000
    assert ran == expected


def test_the_calendar_keeps_far_and_infinite_deadlines_last() -> None:
    loop = sim.SimLoop()
    try:
        ran: list[object] = []
        for when in (float("inf"), 1e300, 5, 1e17, 0.5, 2.0**70):
            loop.call_at(when, ran.append, when)
        loop.call_at(1e301, loop.stop)
        loop.run_forever()
        assert ran == [0.5, 5, 1e17, 2.0**70, 1e300]
        assert loop.time() == 1e301
    finally:
        loop.close()
