"""Handles scheduled again (``SimLoop.call_at_again``, ``call_soon_again``): a timer that
fired, or a callback that ran, goes back to the queue where a new one would go, and the
links' drains and TCP's timer and flush use them. A cancelled handle is never queued
again, debug mode and plain asyncio loops make new handles, and runs are the same as
with a new handle each time (the same frames at the same times)."""

from __future__ import annotations

import asyncio
import contextvars
import ipaddress
from collections.abc import Iterator
from typing import Any

import pytest

from miragekit import sim
from miragekit.link import LinkParams, VnetSwitch
from miragekit.net import TCP, IPv4Stack
from miragekit.result import Ok
from miragekit.sim import _loop as loop_mod
from miragekit.sim import _sched as sched_mod

_VAR: contextvars.ContextVar[str] = contextvars.ContextVar("rearm_test", default="-")


def _run(loop: sim.SimLoop, until: float) -> None:
    loop.call_at(until, loop.stop)
    loop.run_forever()


@pytest.fixture
def loop() -> Iterator[sim.SimLoop]:
    lp = sim.SimLoop()
    yield lp
    lp.close()


# --- the loop's methods -------------------------------------------------------------------


def test_a_fired_timer_is_scheduled_again_where_a_new_one_would_be(loop: sim.SimLoop) -> None:
    """The timer that fired at 1 comes back for 2, between two timers made for 2 before
    and after it: it runs between them, the same object, with the arguments it had."""
    ran: list[Any] = []
    timer = loop.call_at(1.0, ran.append, "t")
    again: list[asyncio.TimerHandle] = []

    def at_one() -> None:
        loop.call_at(2.0, ran.append, "before")
        again.append(loop.call_at_again(timer, 2.0, ran.append, ("t",)))
        loop.call_at(2.0, ran.append, "after")

    loop.call_at(1.0, at_one)
    _run(loop, 5.0)
    assert again == [timer]
    assert ran == ["t", "before", "t", "after"]
    assert timer.when() == 2.0


def test_a_timer_again_for_the_present_runs_after_those_due(loop: sim.SimLoop) -> None:
    """Scheduled again for the current instant, a timer runs in this instant's next
    batch, after a call_soon made before it (as a new timer for now would)."""
    ran: list[str] = []
    timer = loop.call_at(1.0, ran.append, "t")

    def at_one() -> None:
        loop.call_soon(ran.append, "soon")
        loop.call_at_again(timer, loop.time(), ran.append, ("t",))

    loop.call_at(1.0, at_one)
    _run(loop, 2.0)
    assert ran == ["t", "soon", "t"]


def test_none_makes_a_new_handle(loop: sim.SimLoop) -> None:
    """Without a handle to reuse the loop makes one, as call_at and call_soon would."""
    ran: list[str] = []
    timer = loop.call_at_again(None, 1.0, ran.append, ("t",))
    handle = loop.call_soon_again(None, ran.append, ("h",))
    assert isinstance(timer, asyncio.TimerHandle) and timer.when() == 1.0
    assert isinstance(handle, asyncio.Handle) and handle is not timer
    _run(loop, 2.0)
    assert ran == ["h", "t"]
    assert loop.call_at_again(timer, 3.0, ran.append, ("t",)) is timer


def test_a_handle_that_ran_is_queued_again_at_the_end(loop: sim.SimLoop) -> None:
    ran: list[str] = []
    handle = loop.call_soon(ran.append, "h")

    def later() -> None:
        loop.call_soon(ran.append, "first")
        assert loop.call_soon_again(handle, ran.append, ("h",)) is handle
        loop.call_soon(ran.append, "last")

    loop.call_at(1.0, later)
    _run(loop, 2.0)
    assert ran == ["h", "first", "h", "last"]


def test_the_context_is_the_callers_copy_or_the_one_given(loop: sim.SimLoop) -> None:
    """As call_at and call_soon: a copy of the context current when scheduled again (not
    the first scheduler's), or the context passed."""
    seen: list[str] = []

    def see() -> None:
        seen.append(_VAR.get())

    timer = loop.call_at(1.0, see)
    handle = loop.call_soon(see)

    def rearm(value: str) -> None:
        _VAR.set(value)
        loop.call_at_again(timer, 2.0, see)
        loop.call_soon_again(handle, see)

    loop.call_at(1.5, contextvars.copy_context().run, rearm, "second")
    ctx = contextvars.Context()
    ctx.run(_VAR.set, "given")

    def rearm_given() -> None:
        loop.call_at_again(timer, 3.0, see, context=ctx)
        loop.call_soon_again(handle, see, context=ctx)

    loop.call_at(2.5, rearm_given)
    _run(loop, 4.0)
    assert seen == ["-", "-", "second", "second", "given", "given"]


def test_a_cancelled_or_scheduled_timer_is_refused(loop: sim.SimLoop) -> None:
    """A cancelled timer may sit in a bucket until purged: scheduling that object again
    would run it twice, or never; and a timer still scheduled is refused too."""
    ran: list[int] = []
    pending = loop.call_at(1.0, ran.append, 1)
    with pytest.raises(ValueError):
        loop.call_at_again(pending, 2.0, ran.append, (1,))
    pending.cancel()
    with pytest.raises(ValueError):
        loop.call_at_again(pending, 2.0, ran.append, (1,))
    fired = loop.call_at(0.5, ran.append, 0)
    _run(loop, 3.0)  # the cancelled one is purged meanwhile
    with pytest.raises(ValueError):
        loop.call_at_again(pending, 4.0, ran.append, (1,))
    fired.cancel()  # cancelled after it fired: refused as well
    with pytest.raises(ValueError):
        loop.call_at_again(fired, 4.0, ran.append, (0,))
    handle = loop.call_soon(ran.append, 2)
    handle.cancel()
    with pytest.raises(ValueError):
        loop.call_soon_again(handle, ran.append, (2,))
    _run(loop, 5.0)
    assert ran == [0]


def _moved(instead: bool) -> tuple[list[tuple[float, str]], list[tuple[int, int]]]:
    """Timer x (for 5) moved to 3 at time 1, between timers a, b (for 3, made before)
    and c (after), and y moved from 4 to the present at 2: with call_at_instead, or
    with cancel() and call_at. What ran when, and the queue's counts after each move."""
    loop = sim.SimLoop()
    ran: list[tuple[float, str]] = []

    def note(name: str) -> None:
        ran.append((loop.time(), name))

    counts: list[tuple[int, int]] = []
    x = loop.call_at(5.0, note, "x")
    y = loop.call_at(4.0, note, "y")
    loop.call_at(3.0, note, "a")
    moved: list[asyncio.TimerHandle] = []

    def move(timer: asyncio.TimerHandle, when: float, name: str) -> None:
        if instead:
            moved.append(loop.call_at_instead(timer, when, note, (name,)))
        else:
            timer.cancel()
            moved.append(loop.call_at(when, note, name))
        counts.append((loop._sched.timers, loop._sched.cancelled))

    def at_one() -> None:
        loop.call_at(3.0, note, "b")
        move(x, 3.0, "x")
        loop.call_at(3.0, note, "c")

    loop.call_at(1.0, at_one)
    loop.call_at(2.0, lambda: move(y, loop.time(), "y"))
    try:
        _run(loop, 10.0)
    finally:
        loop.close()
    assert (moved[0] is x) == instead and (moved[1] is y) == instead
    return ran, counts


def test_a_timer_moved_instead_of_cancelled_runs_as_a_new_one_would() -> None:
    """The same run as cancel() and call_at: x runs after a and b and before c at 3, y
    at 2 after what was due there, nothing at 4 or 5 (the clock never stops there),
    and the queue counts its old places as cancelled timers."""
    ran, counts = _moved(instead=True)
    assert (ran, counts) == _moved(instead=False)
    assert ran == [(2.0, "y"), (3.0, "a"), (3.0, "b"), (3.0, "x"), (3.0, "c")]


def test_a_fired_timer_not_run_yet_is_cancelled_and_made_anew(loop: sim.SimLoop) -> None:
    """Fired (in the ready queue, not in a bucket) but not run: moving it cancels it
    there and makes a new timer, so it runs once, at its new time."""
    ran: list[tuple[float, str]] = []
    moved: list[asyncio.TimerHandle] = []
    timers: list[asyncio.TimerHandle] = []

    def note(name: str) -> None:
        ran.append((loop.time(), name))

    def move() -> None:
        moved.append(loop.call_at_instead(timers[1], 2.0, note, ("b",)))

    timers.append(loop.call_at(1.0, move))
    timers.append(loop.call_at(1.0, note, "b"))
    first, second = timers
    _run(loop, 3.0)
    assert moved and moved[0] is not second and second.cancelled() and not first.cancelled()
    assert ran == [(2.0, "b")]
    with pytest.raises(ValueError):
        loop.call_at_instead(second, 4.0, note, ("b",))


def test_a_closed_loop_refuses(loop: sim.SimLoop) -> None:
    timer = loop.call_at(1.0, print)
    handle = loop.call_soon(print)
    _run(loop, 2.0)
    loop.close()
    for again in (timer, None):
        with pytest.raises(RuntimeError, match="closed"):
            loop.call_at_again(again, 3.0, print)
    for queued in (handle, None):
        with pytest.raises(RuntimeError, match="closed"):
            loop.call_soon_again(queued, print)


def test_debug_mode_makes_new_handles(loop: sim.SimLoop) -> None:
    """In debug mode (asyncio's checks, its handles) the loop makes new ones: the
    callbacks run all the same, at the same places."""
    ran: list[Any] = []
    timer = loop.call_at(1.0, ran.append, "t")
    handle = loop.call_soon(ran.append, "h")
    _run(loop, 1.5)
    loop.set_debug(True)
    again = loop.call_at_again(timer, 2.0, ran.append, ("t",))
    queued = loop.call_soon_again(handle, ran.append, ("h",))
    assert again is not timer and queued is not handle
    assert type(again) is asyncio.TimerHandle and type(queued) is asyncio.Handle
    loop.call_at(2.0, ran.append, "after")
    _run(loop, 3.0)
    assert ran == ["h", "t", "h", "t", "after"]
    loop.set_debug(False)
    assert loop.call_at_again(again, 4.0, ran.append, ("t",)) is again


def test_an_overridden_call_at_or_call_soon_makes_every_handle() -> None:
    """A subclass that overrides call_at or call_soon (to count or wrap handles) sees
    the handles scheduled again too: they are made through it."""
    made: list[str] = []

    class Counting(sim.SimLoop):
        def call_at(  # type: ignore[override]
            self, when: float, callback: Any, *args: Any, context: Any = None
        ) -> Any:
            made.append("at")
            return super().call_at(when, callback, *args, context=context)

        def call_soon(  # type: ignore[override]
            self, callback: Any, *args: Any, context: Any = None
        ) -> Any:
            made.append("soon")
            return super().call_soon(callback, *args, context=context)

    loop = Counting()
    try:
        timer = loop.call_at(1.0, print)
        handle = loop.call_soon(print)
        _run(loop, 1.5)
        made.clear()
        assert loop.call_at_again(timer, 2.0, print) is not timer
        assert loop.call_soon_again(handle, print) is not handle
        assert made == ["at", "soon"]
    finally:
        loop.close()


# --- the links' drains and TCP's driver ---------------------------------------------------


def _counting(monkeypatch: pytest.MonkeyPatch) -> dict[str, int]:
    """Counts of the timers the scheduler makes and the handles the loop's call_soon
    makes (both go through their module's ``_new``)."""
    counts = {"timers": 0, "handles": 0}

    def counter(key: str) -> Any:
        def new(cls: type) -> Any:
            counts[key] += 1
            return object.__new__(cls)

        return new

    monkeypatch.setattr(sched_mod, "_new", counter("timers"))
    monkeypatch.setattr(loop_mod, "_new", counter("handles"))
    return counts


def _no_reuse(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every loop makes a new handle for call_at_again and call_soon_again (as before
    they existed: the same calls, a new handle each)."""
    bind = sim.SimLoop._bind

    def bind_without_reuse(self: sim.SimLoop) -> None:
        bind(self)
        self._sched.reuse_timers = False
        self._sched.reuse_handles = False

    monkeypatch.setattr(sim.SimLoop, "_bind", bind_without_reuse)


ECHOES = 30


def _echoes(counts: dict[str, int] | None = None) -> tuple[list[tuple[float, bytes]], int, int]:
    """Two stacks on a switch with latency, three connections echoing ``ECHOES`` times
    between them: every frame on the segment with its time, and the timers and handles
    made during the echoes (after the handshakes)."""
    frames: list[tuple[float, bytes]] = []
    made = [0, 0]

    async def main() -> None:
        loop = asyncio.get_running_loop()
        sw = VnetSwitch()
        sw.add_interface("mon", mirror=True).set_receiver(
            lambda f: frames.append((loop.time(), bytes(f)))
        )
        link = LinkParams(latency=0.0005, loss=0.05)
        sa = await IPv4Stack.connect(sw.add_interface("a", link=link), cidr="10.0.0.1/24")
        sb = await IPv4Stack.connect(sw.add_interface("b", link=link), cidr="10.0.0.2/24")
        client, server = TCP(sa.ipv4), TCP(sb.ipv4)

        async def echo(flow: Any) -> None:
            while isinstance(r := await flow.read(), Ok):
                if not isinstance(await flow.write(r.value), Ok):
                    return

        server.listen(7, echo)
        flows = []
        for _ in range(3):
            r = await client.create_connection((ipaddress.IPv4Address("10.0.0.2"), 7))
            assert isinstance(r, Ok)
            flows.append(r.value)
        if counts is not None:
            made[:] = [counts["timers"], counts["handles"]]

        async def ping(flow: Any, i: int) -> None:
            for k in range(ECHOES // 3):
                data = b"%d.%d" % (i, k)
                assert await flow.write(data) == Ok(None)
                got = await flow.read()
                assert isinstance(got, Ok) and bytes(got.value) == data
                await asyncio.sleep(0.1)

        await asyncio.gather(*(ping(f, i) for i, f in enumerate(flows)))
        if counts is not None:
            made[:] = [counts["timers"] - made[0], counts["handles"] - made[1]]
        for f in flows:
            await f.close()
        await asyncio.sleep(1.0)

    sim.run(main(), seed=3)
    return frames, made[0], made[1]


def test_links_and_tcp_schedule_their_handles_again(monkeypatch: pytest.MonkeyPatch) -> None:
    """The same frames at the same times as with a new handle for every drain, TCP timer
    and flush, with far fewer handles made: per echo, only the sleep's timer and the
    tasks' wake-ups remain."""
    counts = _counting(monkeypatch)
    frames, timers, handles = _echoes(counts)
    with monkeypatch.context() as m:
        _no_reuse(m)
        frames_new, timers_new, handles_new = _echoes(counts)
    assert frames == frames_new and len(frames) > 3 * ECHOES
    # Without reuse an echo makes about seven timers (drains both ways for the request,
    # its echo and the ACKs, TCP's timers, the sleep); with it the sleep's remains (TCP's
    # timer moves instead of being made anew). The flush handle is reused too.
    assert timers_new > 5 * ECHOES
    assert timers <= ECHOES + ECHOES // 3, (timers, timers_new)
    assert handles < handles_new - 2 * ECHOES, (handles, handles_new)


def test_a_plain_asyncio_loop_still_carries_frames_and_runs_tcp() -> None:
    """Outside a SimLoop (no call_at_again): links and TCP make a handle each time."""

    async def main() -> bytes:
        assert not hasattr(asyncio.get_running_loop(), "call_at_again")
        sw = VnetSwitch()
        link = LinkParams(latency=0.001)
        sa = await IPv4Stack.connect(sw.add_interface("a", link=link), cidr="10.0.0.1/24")
        sb = await IPv4Stack.connect(sw.add_interface("b", link=link), cidr="10.0.0.2/24")
        client, server = TCP(sa.ipv4), TCP(sb.ipv4)

        async def echo(flow: Any) -> None:
            while isinstance(r := await flow.read(), Ok):
                await flow.write(r.value)

        server.listen(7, echo)
        r = await client.create_connection((ipaddress.IPv4Address("10.0.0.2"), 7))
        assert isinstance(r, Ok)
        got = b""
        for i in range(3):
            assert await r.value.write(b"%d" % i) == Ok(None)
            data = await r.value.read()
            assert isinstance(data, Ok)
            got += bytes(data.value)
        await r.value.close()
        return got

    assert asyncio.run(main()) == b"012"


def test_a_cancelled_flush_handle_is_not_queued_again() -> None:
    """TCP drops its own flush handle when it cancels it (the end of a device's read
    batch runs the flush instead): the next flush gets a new handle, which is then the
    one queued again."""

    async def main() -> None:
        sw = VnetSwitch()
        sa = await IPv4Stack.connect(sw.add_interface("a"), cidr="10.0.0.1/24")
        tcp = TCP(sa.ipv4)
        tcp._schedule_flush()
        first = tcp._flush_handle
        assert isinstance(first, asyncio.Handle) and first is tcp._own_flush
        await asyncio.sleep(0)
        tcp._schedule_flush()
        assert tcp._flush_handle is first  # it ran: queued again
        tcp._batch_done()  # cancels the queued handle, flushes now
        assert first.cancelled() and tcp._own_flush is None
        tcp._schedule_flush()
        second = tcp._flush_handle
        assert isinstance(second, asyncio.Handle) and second is not first
        await asyncio.sleep(0)
        assert tcp._flush_handle is None
        tcp._schedule_flush()
        assert tcp._flush_handle is second and not second.cancelled()
        await asyncio.sleep(0)

    sim.run(main())
