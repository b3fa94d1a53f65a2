"""What makes simulations faster must not change what they do: the loop's lean handles,
the collector settings during a run, the short path of plain links, and the TCP driver
skipping a flush after a read that announces nothing."""

from __future__ import annotations

import asyncio
import contextvars
import gc
import heapq
import itertools
import random
import sys
import types
from collections.abc import Callable

import pytest

from miragekit import aio, sim, tcp, v1
from miragekit.link import LinkParams, VnetIf, VnetSwitch
from miragekit.link._impair import Flood, ImpairCounters, _Direction
from miragekit.result import Ok
from miragekit.sim._loop import run_on
from miragekit.stack import DirectStackV4, Static


def test_debug_mode_keeps_asyncio_checks() -> None:
    async def coro_fn() -> None:
        pass

    async def main() -> tuple[str, str]:
        loop = asyncio.get_running_loop()
        with pytest.raises(TypeError, match="coroutines cannot be used with call_soon"):
            loop.call_soon(coro_fn)
        return type(loop.call_soon(print)).__name__, type(loop.call_later(1, print)).__name__

    assert sim.run(main(), debug=True) == ("Handle", "TimerHandle")
    assert sim.run(lean()) == ("_Handle", "_Timer")


async def lean() -> tuple[str, str]:
    loop = asyncio.get_running_loop()
    soon, later = loop.call_soon(print, "x"), loop.call_later(1, print, "y")
    soon.cancel()
    later.cancel()
    return type(soon).__name__, type(later).__name__


def test_the_collector_is_tuned_during_a_run_and_restored_after() -> None:
    before = gc.get_threshold()

    async def main() -> tuple[int, int]:
        young = gc.get_threshold()[0]
        gc.collect()  # a full collection: what survives it is frozen
        return young, gc.get_freeze_count()

    young, frozen = sim.run(main())
    assert young >= 100_000 and frozen > 0
    assert gc.get_threshold() == before and gc.get_freeze_count() == 0
    gc.disable()
    try:
        assert sim.run(main())[0] == before[0]  # a disabled collector is left alone
    finally:
        gc.enable()
        gc.unfreeze()


async def arrivals(link: LinkParams) -> list[tuple[float, int]]:
    """300 numbered frames a->b over ``link``: when each arrives."""
    sw = VnetSwitch(seed=4)
    a = sw.add_interface("a", link=link)
    b = sw.add_interface("b")
    loop = asyncio.get_running_loop()
    got: list[tuple[float, int]] = []
    b.set_receiver(lambda f: got.append((loop.time(), int.from_bytes(bytes(f[-4:]), "big"))))
    for i in range(300):
        a.send(frame(a, b, i))
        if i % 7 == 0:
            await asyncio.sleep(0.0005)
    await asyncio.sleep(1)
    return got


def frame(src: VnetIf, dst: VnetIf, seq: int) -> bytes:
    head = dst.mac().packed + src.mac().packed + b"\x08\x00"
    return head + bytes(46) + seq.to_bytes(4, "big")  # not ECN-capable: `mark` skips it


def test_a_plain_link_takes_the_short_path_with_the_same_outcome() -> None:
    plain = LinkParams(latency=0.003, loss=0.2)
    full = LinkParams(latency=0.003, loss=0.2, mark=1e-9)  # marks only ECN-capable IP
    assert plain.plain and not full.plain and not plain.ideal
    short, long = sim.run(arrivals(plain)), sim.run(arrivals(full))
    assert short == long and 200 < len(short) < 270
    plain.jitter = 0.001  # a change of parameters leaves the short path
    assert not plain.plain
    plain.jitter = 0
    assert plain.plain and LinkParams().ideal and LinkParams().plain


async def flood_arrivals(link: LinkParams) -> list[tuple[str, float, int]]:
    """200 numbered broadcasts and 100 unicasts from one port to five over ``link``:
    where and when each arrives."""
    sw = VnetSwitch(seed=5)
    src = sw.add_interface("src", link=link)
    ports = [sw.add_interface(f"p{i}", link=link) for i in range(5)]
    loop = asyncio.get_running_loop()
    got: list[tuple[str, float, int]] = []

    def receiver(name: str) -> Callable[[memoryview], None]:
        return lambda f: got.append((name, loop.time(), int.from_bytes(bytes(f[-4:]), "big")))

    for p in ports:
        p.set_receiver(receiver(p.name))
        p.send(frame(p, src, 0))  # the switch learns where p is
    bcast = b"\xff" * 6 + src.mac().packed + b"\x08\x06" + bytes(28)
    for i in range(300):
        src.send_frames([bcast + i.to_bytes(4, "big") if i % 3 else frame(src, ports[1], i)])
        if i % 7 == 0:
            await asyncio.sleep(0.0005)
    await asyncio.sleep(1)
    return got


def test_a_flood_over_plain_links_arrives_as_over_any_other() -> None:
    """The switch carries a broadcast over plain links reading the clock once: the same
    draws, losses and arrival times as the general path of every link."""
    plain = LinkParams(latency=0.003, loss=0.2)
    full = LinkParams(latency=0.003, loss=0.2, mark=1e-9)
    short, long = sim.run(flood_arrivals(plain)), sim.run(flood_arrivals(full))
    assert short == long and len(short) > 600
    assert len({n for n, _, i in short if i % 3}) == 5  # the broadcasts reached every port


async def transfer(size: int) -> tuple[float, bytes]:
    """``size`` bytes through a receive window of 4 KiB, the reader taking 4 KiB every
    50 ms (so the window is shut when it reads, and only the read can reopen it): how
    long it takes, and what arrived."""
    sw = VnetSwitch()
    stacks = []
    for i in (1, 2):
        vif = sw.add_interface(f"h{i}", link=LinkParams(latency=0.001))
        cfg = tcp.Config(recv_buffer=4096)
        r = await DirectStackV4.connect(
            v1.StackConfig(f"h{i}", None, vif, Static(f"10.0.0.{i}/24")), tcp_config=cfg
        )
        assert isinstance(r, Ok), r
        stacks.append(r.value)
    got = bytearray()
    done = asyncio.Event()

    async def sink(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            await asyncio.sleep(0.05)
            if not (data := await reader.read(4096)):
                break
            got.extend(data)
            if len(got) >= size:
                done.set()

    await aio.start_server(sink, stacks[1], 9)
    _, writer = await aio.open_connection(stacks[0], "10.0.0.2", 9)
    t0 = asyncio.get_running_loop().time()
    writer.write(bytes(range(256)) * (size // 256))
    await done.wait()
    return asyncio.get_running_loop().time() - t0, bytes(got)


def test_reads_that_open_the_window_still_announce_it() -> None:
    took, got = sim.run(transfer(64 * 1024))
    assert got == bytes(range(256)) * 256
    # 16 reads 50 ms apart, each announcing the window it opens at once: the last data
    # arrives a round trip after the last read, not after a zero-window probe.
    assert took < 16 * 0.05 + 0.01, took


async def mixed_flood_arrivals(links: list[LinkParams]) -> list[tuple[str, float, int]]:
    """Broadcasts from one port to five whose links are ``links``; a port that receives
    every fifth broadcast answers at once with a unicast and a broadcast of its own (new
    timers while a flood is being delivered): where and when each frame arrives."""
    sw = VnetSwitch(seed=6)
    src = sw.add_interface("src", link=links[0])
    ports = [sw.add_interface(f"p{i}", link=link) for i, link in enumerate(links)]
    loop = asyncio.get_running_loop()
    got: list[tuple[str, float, int]] = []
    bcast = b"\xff" * 6 + src.mac().packed + b"\x08\x06" + bytes(28)

    def receiver(p: VnetIf) -> Callable[[memoryview], None]:
        def on_frame(f: memoryview) -> None:
            n = int.from_bytes(bytes(f[-4:]), "big")
            got.append((p.name, loop.time(), n))
            if n < 1000 and n % 5 == 0:
                p.send(frame(p, src, n + 1000))
                p.send(
                    b"\xff" * 6
                    + p.mac().packed
                    + b"\x08\x06"
                    + bytes(28)
                    + (n + 2000).to_bytes(4, "big")
                )

        return on_frame

    src.set_receiver(
        lambda f: got.append(("src", loop.time(), int.from_bytes(bytes(f[-4:]), "big")))
    )
    for p in ports:
        p.set_receiver(receiver(p))
        p.send(frame(p, src, 999))  # the switch learns where p is
    for i in range(200):
        src.send(bcast + i.to_bytes(4, "big"))
        if i % 7 == 0:
            await asyncio.sleep(0.0005)
    await asyncio.sleep(1)
    return got


def test_a_flood_keeps_the_order_of_one_timer_per_port() -> None:
    """A broadcast's arrivals on idle plain links share one timer (:class:`Flood`): what
    arrives where and in which order is what one timer per link gives, with links of
    other kinds among them and receivers that send while the flood is delivered."""
    plain = LinkParams(latency=0.003, loss=0.1)
    full = LinkParams(latency=0.003, loss=0.1, mark=1e-9)  # the general path, same draws
    reference = sim.run(mixed_flood_arrivals([full] * 5))
    assert len(reference) > 1000
    assert sim.run(mixed_flood_arrivals([plain] * 5)) == reference
    assert sim.run(mixed_flood_arrivals([plain, full, plain, plain, full])) == reference


def test_a_cleared_link_leaves_its_flood_without_stopping_it() -> None:
    async def main() -> list[str]:
        loop = asyncio.get_running_loop()
        got: list[str] = []
        link = LinkParams(latency=0.001)
        dirs = [
            _Direction(lambda f: got.append(bytes(f).decode()), random.Random(i)) for i in range(3)
        ]
        flood = Flood()
        for d in dirs:
            d.carry(link, ImpairCounters(), b"x", loop.time(), loop, flood)
        assert all(d.timer is flood for d in dirs)
        dirs[1].clear()
        dirs[1].carry(link, ImpairCounters(), b"y", loop.time(), loop)  # its own timer
        await asyncio.sleep(0.01)
        return got

    assert sim.run(main()) == ["x", "x", "y"]


async def bridged_flood_arrivals(link: LinkParams) -> list[tuple[str, float, int]]:
    """Broadcasts from one port to four over ``link`` (no latency); a host with two ports
    (``p0``, and ``bridge`` on an ideal link) sends a broadcast through its other port
    when ``p0`` receives every third one: that frame reaches ``p0``'s link, due at once,
    while ``p0`` is being delivered the flood. Where and when each frame arrives."""
    sw = VnetSwitch(seed=7)
    src = sw.add_interface("src", link=link)
    ports = [sw.add_interface(f"p{i}", link=link) for i in range(4)]
    bridge = sw.add_interface("bridge")
    loop = asyncio.get_running_loop()
    got: list[tuple[str, float, int]] = []

    def bcast(via: VnetIf, n: int) -> bytes:
        return b"\xff" * 6 + via.mac().packed + b"\x08\x06" + bytes(28) + n.to_bytes(4, "big")

    def receiver(p: VnetIf) -> Callable[[memoryview], None]:
        def on_frame(f: memoryview) -> None:
            n = int.from_bytes(bytes(f[-4:]), "big")
            got.append((p.name, loop.time(), n))
            if p is ports[0] and n < 1000 and n % 3 == 0:
                bridge.send(bcast(bridge, n + 2000))

        return on_frame

    for p in (src, *ports, bridge):
        p.set_receiver(receiver(p))
    for i in range(150):
        src.send(bcast(src, i))
        if i % 5 == 0:
            await asyncio.sleep(0.0005)
    await asyncio.sleep(1)
    return got


def test_a_frame_carried_onto_a_flood_member_while_it_delivers_arrives_in_order() -> None:
    """The flood's delivery of its one frame on a link (without the link's drain) still
    delivers, in the same turn, a frame carried onto that link meanwhile and due at
    once, as the general path (one drain per link) does."""
    plain = LinkParams(loss=0.1)
    full = LinkParams(loss=0.1, mark=1e-9)  # the general path, same draws
    reference = sim.run(bridged_flood_arrivals(full))
    assert len({n for name, _, n in reference if name == "p0" and n >= 2000}) > 20
    assert sim.run(bridged_flood_arrivals(plain)) == reference


def test_a_callback_that_raises_is_reported_as_asyncio_reports_it() -> None:
    """The loop runs callbacks without Handle._run; an exception still reaches the
    exception handler with asyncio's message and the handle, and the loop goes on."""
    seen: list[dict[str, object]] = []

    def boom(x: int) -> None:
        raise ValueError(f"boom {x}")

    async def main() -> list[str]:
        loop = asyncio.get_running_loop()
        loop.set_exception_handler(lambda _loop, ctx: seen.append(ctx))
        ran: list[str] = []
        h1 = loop.call_soon(boom, 1)
        loop.call_soon(ran.append, "after soon")
        h2 = loop.call_later(0.5, boom, 2)
        loop.call_later(0.5, ran.append, "after timer")
        await asyncio.sleep(1)
        assert [c["handle"] for c in seen] == [h1, h2]
        return ran

    assert sim.run(main()) == ["after soon", "after timer"]
    assert [str(c["exception"]) for c in seen] == ["boom 1", "boom 2"]
    for c in seen:
        assert isinstance(c["message"], str)
        assert c["message"].startswith("Exception in callback ")
        assert "boom" in c["message"]


def test_a_switch_port_shows_its_tap_each_frame_before_the_receiver() -> None:
    """VnetIf.set_tap: the tap sees every frame the receiver gets, just before it, and
    none that nobody received; a sim host's observer counts through it."""

    async def main() -> list[tuple[str, bytes]]:
        sw = VnetSwitch(seed=1)
        a, b = sw.add_interface("a"), sw.add_interface("b")
        order: list[tuple[str, bytes]] = []
        b.set_tap(lambda f, n: order.append(("tap", bytes(f) if n == len(f) else b"size?")))
        frame = b"\xff" * 6 + b"\x02" * 6 + b"\x08\x06" + b"x" * 28
        a.send(frame)  # nobody receives on b yet: not tapped either
        await asyncio.sleep(0.01)
        b.set_receiver(lambda f: order.append(("rx", bytes(f))))
        a.send(frame)
        await asyncio.sleep(0.01)
        b.set_tap(None)
        a.send(frame)
        await asyncio.sleep(0.01)
        assert b.counters.dropped_no_receiver == 1
        return order

    f = b"\xff" * 6 + b"\x02" * 6 + b"\x08\x06" + b"x" * 28
    assert sim.run(main()) == [("tap", f), ("rx", f), ("rx", f)]


def test_a_sim_hosts_observer_counts_what_its_stack_received() -> None:
    """Through the tap, a host's counters still equal its port's statistics."""

    async def main() -> None:
        r, w = await asyncio.open_connection("b", 7)
        w.write(b"x" * 100)
        await r.readexactly(100)

    async def serve() -> None:
        async def echo(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
            w.write(await r.readexactly(100))
            await w.drain()

        await asyncio.start_server(echo, None, 7)
        await asyncio.sleep(5)

    net = sim.Network(seed=3)
    net.host("a", main=main)
    net.host("b", main=serve)
    report = net.run(until=10)
    assert report.ok
    for name in ("a", "b"):
        c = report[name].counters
        assert c.frames_in >= 4 and c.bytes_in > 100
        assert c.stack["ethif"]["rx_frames"] == c.frames_in


def test_lean_handles_hold_what_asyncios_own_hold() -> None:
    """call_soon, call_at and call_later set the slots of the handles they make
    themselves (no __init__ call): every attribute asyncio's Handle and TimerHandle set,
    to the same values."""

    async def main() -> None:
        loop = asyncio.get_running_loop()
        ctx = contextvars.Context()
        ours = [
            loop.call_soon(print, 1, context=ctx),
            loop.call_at(5.0, print, 2, context=ctx),
            loop.call_later(3.0, print, 3, 4, context=ctx),
        ]
        theirs = [
            asyncio.Handle(print, (1,), loop, ctx),
            asyncio.TimerHandle(5.0, print, (2,), loop, ctx),
            asyncio.TimerHandle(loop.time() + 3.0, print, (3, 4), loop, ctx),
        ]
        for t in theirs[1:]:
            t._scheduled = True  # type: ignore[attr-defined]  # as call_at sets it
        for o, t in zip(ours, theirs, strict=True):
            slots = [s for c in type(t).__mro__ for s in getattr(c, "__slots__", ())]
            assert slots
            for name in slots:
                if name != "__weakref__":
                    assert getattr(o, name) == getattr(t, name), name
            o.cancel()

    sim.run(main())


def test_callbacks_of_every_arity_get_their_arguments() -> None:
    """The loop calls callbacks of no and one argument without a tuple of them, others
    with one: each gets exactly its arguments, from call_soon and from timers, and an
    exception from any of them is reported with its handle."""
    seen: list[tuple[object, ...]] = []
    errors: list[object] = []

    def record(*args: object) -> None:
        seen.append(args)
        if args and args[0] == "raise":
            raise ValueError(len(args))

    async def main() -> None:
        loop = asyncio.get_running_loop()
        loop.set_exception_handler(lambda _loop, ctx: errors.append(ctx["handle"]))
        handles = []
        for n in range(4):
            loop.call_soon(record, *range(n))
            loop.call_later(0.5, record, *range(10, 10 + n))
            handles.append(loop.call_soon(record, "raise", *range(n)))
            handles.append(loop.call_later(0.25, record, "raise", *range(n)))
        await asyncio.sleep(1)
        assert sorted(errors, key=id) == sorted(handles, key=id)

    sim.run(main())
    assert seen[:12] == [
        *[x for n in range(4) for x in [tuple(range(n)), ("raise", *range(n))]],
        *[("raise", *range(n)) for n in range(4)],
    ]
    assert seen[12:] == [tuple(range(10, 10 + n)) for n in range(4)]


def test_the_loop_runs_instant_after_instant_in_one_iteration() -> None:
    """Without real I/O one iteration of the loop runs instant after instant (no return
    to run_forever in between), and still stops at the instant whose callback stops the
    loop, and still polls once real I/O is registered."""
    calls = [0]

    class Counting(sim.SimLoop):
        def _run_once(self) -> None:
            calls[0] += 1
            super()._run_once()

    loop = Counting()
    try:
        ran: list[float] = []
        for k in range(1, 101):
            loop.call_at(float(k), lambda: ran.append(loop.time()))
        loop.call_at(50.0, loop.stop)
        loop.run_forever()
        assert ran == [float(k) for k in range(1, 51)] and loop.time() == 50.0
        assert calls[0] <= 2, calls[0]
        loop.call_at(100.5, loop.stop)
        loop.run_forever()
        assert ran == [float(k) for k in range(1, 101)] and loop.time() == 100.5
        assert calls[0] <= 4, calls[0]
    finally:
        loop.close()


def test_the_loop_knows_of_real_io_without_asking_the_selector_each_turn() -> None:
    """Registering a reader or a writer (and removing it) is what tells the loop there is
    real I/O to poll: it does not ask the selector for its map on every iteration."""
    import socket

    async def main() -> list[bool]:
        loop = asyncio.get_running_loop()
        assert isinstance(loop, sim.SimLoop)
        sel = loop._selector
        get_map = sel.get_map
        asked = [0]

        def counting() -> object:
            asked[0] += 1
            return get_map()

        sel.get_map = counting
        seen = [loop._real_io]
        for k in range(50):
            await asyncio.sleep(0.1 * (k % 3))
        assert asked[0] == 0, asked[0]
        a, b = socket.socketpair()
        loop.add_reader(a.fileno(), lambda: None)
        seen.append(loop._real_io)
        loop.add_writer(a.fileno(), lambda: None)
        loop.remove_reader(a.fileno())
        seen.append(loop._real_io)  # the writer is still there
        loop.remove_writer(a.fileno())
        seen.append(loop._real_io)
        loop.add_writer(b.fileno(), lambda: loop.remove_writer(b.fileno()))
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        seen.append(loop._real_io)  # removed by its own callback, from the poll
        del sel.get_map
        a.close()
        b.close()
        return seen

    assert sim.run(main()) == [False, True, True, False, False]


async def same_instant_order() -> list[str]:
    """Callbacks of one instant scheduled from callbacks, every way the loop knows
    (soon, a timer at now, a timer in the past, a timer cancelled, a later timer): the
    order in which they ran, and the loop time each saw."""
    loop = asyncio.get_running_loop()
    ran: list[str] = []
    await asyncio.sleep(1)  # an instant of its own

    def step(name: str, depth: int) -> None:
        ran.append(f"{name}@{loop.time():g}")
        if depth == 0:
            return
        loop.call_soon(step, f"{name}.soon", depth - 1)
        loop.call_at(loop.time(), step, f"{name}.now", depth - 1)
        loop.call_at(loop.time() - 0.5, step, f"{name}.past", depth - 1)
        loop.call_at(loop.time(), step, f"{name}.cancelled", 0).cancel()
        loop.call_at(loop.time() + 0.25, step, f"{name}.later", 0)

    loop.call_at(loop.time(), step, "a", 3)
    loop.call_soon(step, "b", 2)
    await asyncio.sleep(1)
    return ran


def test_the_batches_of_one_instant_run_in_the_order_of_one_batch_per_iteration() -> None:
    """With only its self-pipe in the selector, the loop runs the batches of one instant
    one after the other without polling between them; the order is what one batch per
    iteration gives, which it still does (polling real descriptors each time) when a
    real socket is registered."""
    import socket

    fast = sim.run(same_instant_order())

    async def with_a_socket() -> list[str]:
        a, b = socket.socketpair()
        loop = asyncio.get_running_loop()
        loop.add_reader(a.fileno(), lambda: None)
        try:
            return await same_instant_order()
        finally:
            loop.remove_reader(a.fileno())
            a.close()
            b.close()

    assert sim.run(with_a_socket()) == fast
    assert len(fast) > 60 and not any("cancelled" in r for r in fast)
    assert fast[:3] == ["b@1", "a@1", "b.soon@1"]
    assert fast[-1].endswith("@1.25")


def test_the_loop_polls_the_selector_between_batches_only_for_real_io() -> None:
    """With only its self-pipe in the selector the loop does not poll it while there is
    work; a registered socket is polled between batches, so its data is read after the
    batch it arrived in, not after the whole instant."""
    import socket

    async def polls(real_io: bool) -> tuple[int, list[str]]:
        loop = asyncio.get_running_loop()
        sel = loop._selector  # type: ignore[attr-defined]
        n = [0]
        select = sel.select

        def counting(timeout: float | None = None) -> object:
            n[0] += 1
            return select(timeout)

        order: list[str] = []
        a, b = socket.socketpair()
        if real_io:
            loop.add_reader(a.fileno(), lambda: order.append(f"read {a.recv(10)!r}"))
        await asyncio.sleep(1)
        sel.select = counting

        def chain(k: int) -> None:
            order.append(f"batch {k}")
            if k == 0:
                b.send(b"x")
            if k < 9:
                loop.call_soon(chain, k + 1)

        loop.call_soon(chain, 0)
        await asyncio.sleep(1)
        del sel.select
        if real_io:
            loop.remove_reader(a.fileno())
        a.close()
        b.close()
        return n[0], order

    n_fast, order_fast = sim.run(polls(False))
    n_io, order_io = sim.run(polls(True))
    assert n_fast == 0, n_fast
    assert n_io >= 10, n_io
    assert order_fast == [f"batch {k}" for k in range(10)]
    assert order_io[:3] == ["batch 0", "batch 1", "read b'x'"]


def test_frames_cross_a_switch_without_asking_for_the_running_loop(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """asyncio.get_running_loop() costs a system call (getpid): a port's sending, the
    link's timers and the switch's forwarding use the loop the switch is bound to."""
    calls = [0]
    real = asyncio.get_running_loop

    def counting() -> asyncio.AbstractEventLoop:
        calls[0] += 1
        return real()

    async def main() -> tuple[int, int, int]:
        sw = VnetSwitch(seed=1)
        link = LinkParams(latency=0.001, loss=0.1)
        a, b = sw.add_interface("a", link=link), sw.add_interface("b", link=link)
        got: list[bytes] = []
        b.set_receiver(lambda f: got.append(bytes(f)))
        a.send(frame(a, b, 0))  # binds the switch to this loop
        await asyncio.sleep(0.01)
        monkeypatch.setattr(asyncio, "get_running_loop", counting)
        loop = real()
        for i in range(1, 200):
            loop.call_at(loop.time() + i * 0.002, a.send, frame(a, b, i))
        await asyncio.sleep(1)
        monkeypatch.setattr(asyncio, "get_running_loop", real)
        return calls[0], len(got), sw._fabric._loop is loop

    n, received, bound = sim.run(main())
    assert bound and 150 < received < 200
    assert n <= 2, n  # asyncio.sleep's own, not one a frame


def test_a_switch_used_on_a_new_loop_binds_to_it() -> None:
    """A switch made outside any loop serves one simulation and then another: the second
    loop's first frame binds it anew, so a frame still on a link when the first run
    ended does not arrive in the second."""
    sw = VnetSwitch(seed=2)
    a, b = sw.add_interface("a"), sw.add_interface("b", link=LinkParams(latency=0.5))

    async def main(wait: float) -> tuple[int, bool]:
        got: list[bytes] = []
        b.set_receiver(lambda f: got.append(bytes(f)))
        a.send(frame(a, b, 1))
        await asyncio.sleep(wait)
        return len(got), sw._fabric._loop is asyncio.get_running_loop()

    assert sim.run(main(0.1)) == (0, True)  # the run ends with the frame on b's link
    assert sim.run(main(1.0)) == (1, True)  # its own frame only


class _HeapOnlyLoop(sim.SimLoop):
    """The reference: asyncio's own handles, every timer in a heap of
    ``(deadline, number, timer)`` of its own, one batch per iteration (as asyncio runs
    them), the clock jumping to the earliest timer when nothing is ready."""

    def __init__(self) -> None:
        super().__init__()
        self.heap: list[tuple[float, int, asyncio.TimerHandle]] = []
        self.numbers = itertools.count()

    def call_at(
        self,
        when: float,
        callback: Callable[..., object],
        *args: object,
        context: contextvars.Context | None = None,
    ) -> asyncio.TimerHandle:
        timer = asyncio.TimerHandle(when, callback, args, self, context)
        heapq.heappush(self.heap, (when, next(self.numbers), timer))
        return timer

    def call_later(
        self,
        delay: float,
        callback: Callable[..., object],
        *args: object,
        context: contextvars.Context | None = None,
    ) -> asyncio.TimerHandle:
        return self.call_at(self.time() + delay, callback, *args, context=context)

    def _run_once(self) -> None:
        ready, heap = self._ready, self.heap
        if not ready and heap and heap[0][0] > self.time():
            self.advance(heap[0][0] - self.time())
        now = self.time()
        while heap and heap[0][0] <= now:
            ready.append(heapq.heappop(heap)[2])
        for _ in range(len(ready)):
            handle = ready.popleft()
            if not handle.cancelled():
                handle._run()


async def random_timers(seed: int) -> list[tuple[int, float]]:
    """Callbacks that schedule more: soon, at the present instant (call_at(now),
    call_later(0)), in the past and the future, some cancelled, the clock advanced in
    between; which ran when."""
    loop = asyncio.get_running_loop()
    rng = random.Random(seed)
    ran: list[tuple[int, float]] = []
    count = [0]

    def cb(k: int) -> None:
        ran.append((k, loop.time()))
        for _ in range(rng.choice((0, 1, 2, 2, 3))):
            if count[0] >= 3000:
                return
            count[0] += 1
            n = count[0]
            how = rng.random()
            if how < 0.2:
                loop.call_soon(cb, n)
            elif how < 0.5:
                h = loop.call_at(loop.time(), cb, n)
                if rng.random() < 0.1:
                    h.cancel()
            elif how < 0.6:
                loop.call_later(0, cb, n)
            elif how < 0.7:
                loop.call_at(loop.time() - rng.choice((0.001, 0.5)), cb, n)
            elif how < 0.75:
                assert isinstance(loop, sim.SimLoop)
                loop.advance(rng.choice((0.0, 0.001, 0.01)))
            else:
                loop.call_later(rng.choice((0.001, 0.002, 0.01)), cb, n)

    for k in range(-20, 0):
        loop.call_soon(cb, k)
    await asyncio.sleep(100)
    return ran


def test_timers_due_at_once_run_where_the_heap_would_put_them() -> None:
    """Timers for the present instant (``Scheduler.due_now``), a bucket per deadline, a
    heap of deadlines: random schedules run in the order of a loop that puts every timer
    in one heap ordered by (deadline, scheduling order)."""
    for seed in range(4):
        ours = sim.run(random_timers(seed))
        reference = run_on(_HeapOnlyLoop(), random_timers(seed))
        assert ours == reference and len(ours) > 1500, seed


def _receiver_ends_profile(got: list[bytes]) -> Callable[[memoryview], None]:
    def receiver(f: memoryview) -> None:
        sys.setprofile(None)
        got.append(bytes(f))

    return receiver


def test_a_frame_crosses_a_plain_link_in_eleven_python_calls() -> None:
    """From a port's ``send_frames`` to the receiver: the port, the uplink's draws and
    the switch at once (a link without latency and nothing in flight: no timer), the
    downlink's crossing and its timer, the drain (without a call to ``resume`` for the
    frames due), the delivery. No ``typing.cast`` per handle, no
    ``_running_loop`` call when the switch's loop is the running one, no call for
    either link's draws (``_Direction.lost`` written out where they are made)."""
    calls: list[str] = []

    def seen(f: types.FrameType, event: str, arg: object) -> None:
        if event == "call":
            calls.append(f.f_code.co_qualname)

    async def main() -> int:
        sw = VnetSwitch(seed=1)
        link = LinkParams(loss=1e-9)  # plain, not ideal: the lossy links' path, no loss
        a, b = sw.add_interface("a", link=link), sw.add_interface("b", link=link)
        got: list[bytes] = []
        a.set_receiver(lambda f: None)
        b.set_receiver(_receiver_ends_profile(got))
        b.send(frame(b, a, 0))  # the switch learns b and binds to this loop
        await asyncio.sleep(0.001)
        # A first frame to b: its downlink's drain timer fires once and is kept, as it is
        # for every frame after the first.
        a.send(frame(a, b, 0))
        await asyncio.sleep(0.001)
        got.clear()
        loop = asyncio.get_running_loop()
        # Counted from the send to the receiver (which stops the count): one callback
        # and the downlink's timer after it, nothing else scheduled meanwhile.
        loop.call_soon(sys.setprofile, seen)
        loop.call_soon(a.send_frames, [frame(a, b, 1)])
        await asyncio.sleep(0.001)
        return len(got)

    assert sim.run(main()) == 1
    assert calls == [
        "VnetIf.send_frames",
        "VnetIf._send",
        "BaseEventLoop.is_running",
        "_Fabric._forward",
        "SimLoop.time",
        "_Direction.carry",
        "Scheduler.rearm",  # the downlink's timer that fired last, scheduled again
        "_Direction.drain",
        "SimLoop.time",
        "VnetIf._deliver",
        "_receiver_ends_profile.<locals>.receiver",
    ]
