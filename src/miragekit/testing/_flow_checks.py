"""A conformance suite for FLOW: run it against any pair of connected flows.

Why: every FLOW (memory pair, TCP over the kernel, our own TCP) must behave the same for
the channels and applications above it. The checks use only ``v1.Flow`` (read, write,
writev, close, and ``abort`` where a flow offers it) and assume nothing about how writes
are cut into reads, so they run unchanged over real transports. Each check gets a fresh
pair from the factory and a time limit; what must happen promptly (a waiter woken by
``close``) has its own short limit, so a broken flow fails at once, naming the check.

The rules checked beyond data transfer: ``close`` wakes every waiter on the flow (a
pending read gives ``EOF``, a write blocked on back-pressure gives ``EOF``); after
``close`` local reads and writes give ``EOF``; ``abort()`` resets the connection: the
peer's reads give ``Error`` (once data queued before is read) and so do its writes.
"""

from __future__ import annotations

import asyncio
import inspect
import random
from collections.abc import Awaitable, Callable, Collection
from typing import Any

from ..result import EOF, Error, Ok
from ..v1 import Flow
from ._conformance import ConformanceError, expect, fail, on_pair, run_on_fresh, within

AnyFlow = Flow[Any]
FlowPair = tuple[AnyFlow, AnyFlow]
FlowPairFactory = Callable[[], FlowPair | Awaitable[FlowPair]]
"""Returns (or produces, if async) two freshly connected flows."""

_Check = Callable[[AnyFlow, AnyFlow], Awaitable[None]]


FlowCheckFailed = ConformanceError
"""The FLOW suite's failure: the shared :class:`ConformanceError` (kept under this name)."""

_expect = expect

#: How long a waiter may take to wake after ``close``/``abort``: a broken flow fails at once.
PROMPT = 2.0


async def _write(flow: AnyFlow, data: bytes | bytearray | memoryview) -> None:
    r = await flow.write(data)
    _expect(isinstance(r, Ok), f"write of {len(data)} bytes gave {r!r}, expected Ok")


async def _read_exactly(flow: AnyFlow, n: int) -> bytes:
    got = bytearray()
    while len(got) < n:
        r = await flow.read()
        if isinstance(r, Ok):
            _expect(len(r.value) > 0, "read gave Ok with no data")
            got += r.value
        else:
            fail(f"read gave {r!r} after {len(got)} of {n} bytes")
    _expect(len(got) == n, f"read {len(got)} bytes, more than the {n} written")
    return bytes(got)


async def _read_to_eof(flow: AnyFlow) -> bytes:
    got = bytearray()
    while True:
        r = await flow.read()
        if r is EOF:
            return bytes(got)
        if isinstance(r, Ok):
            _expect(len(r.value) > 0, "read gave Ok with no data")
            got += r.value
        else:
            fail(f"read gave {r!r} after {len(got)} bytes, expected EOF")


def _payload(n: int, seed: int) -> bytes:
    return random.Random(seed).randbytes(n)


# --- the checks ------------------------------------------------------------------------


async def _both_ways(a: AnyFlow, b: AnyFlow) -> None:
    await _write(a, b"hello")
    _expect(await _read_exactly(b, 5) == b"hello", "a -> b data differs")
    await _write(b, b"world!")
    _expect(await _read_exactly(a, 6) == b"world!", "b -> a data differs")


async def _bytes_like_inputs(a: AnyFlow, b: AnyFlow) -> None:
    await _write(a, bytearray(b"ab"))
    await _write(a, memoryview(b"xcdx")[1:3])
    r = await a.writev([bytearray(b"ef"), memoryview(b"gh"), b"ij"])
    _expect(isinstance(r, Ok), f"writev gave {r!r}")
    _expect(await _read_exactly(b, 10) == b"abcdefghij", "bytes-like inputs corrupted")


async def _strided_buffers(a: AnyFlow, b: AnyFlow) -> None:
    # A memoryview with a step is a valid buffer: its bytes are sent (copied), not refused.
    await _write(a, memoryview(b"aXbXcX")[::2])
    r = await a.writev([memoryview(bytearray(b"dYeY"))[::2], b"f", memoryview(b"gZZh")[::3]])
    _expect(isinstance(r, Ok), f"writev of strided memoryviews gave {r!r}")
    got = await _read_exactly(b, 8)
    _expect(got == b"abcdefgh", f"strided buffers arrived as {got!r}, expected b'abcdefgh'")


async def _partial_reads(a: AnyFlow, b: AnyFlow) -> None:
    # Several writes of different sizes: reads may split or join them; only the byte
    # sequence is the contract.
    parts = [_payload(n, n) for n in (1, 7, 1000, 3, 70_000, 2)]
    total = sum(len(p) for p in parts)

    async def writer() -> None:
        for p in parts:
            await _write(a, p)

    got, _ = await asyncio.gather(_read_exactly(b, total), writer())
    _expect(got == b"".join(parts), "data split across reads came back different")


async def _writev_ordering(a: AnyFlow, b: AnyFlow) -> None:
    r = await a.writev([b"a", b"", bytearray(b"bc"), memoryview(b"xdefx")[1:4]])
    _expect(isinstance(r, Ok), f"writev gave {r!r}")
    r = await a.writev([])
    _expect(isinstance(r, Ok), f"writev of no buffers gave {r!r}")
    await _write(a, b"g")
    r = await a.writev([b"h", b"ij"])
    _expect(isinstance(r, Ok), f"writev gave {r!r}")
    _expect(await _read_exactly(b, 10) == b"abcdefghij", "writev lost the buffer order")


async def _large_transfer(a: AnyFlow, b: AnyFlow) -> None:
    # Several MB each way at the same time, in random write sizes plus one write far
    # larger than any sane queue: only back-pressure keeps this bounded and deadlock-free.
    size = 4 * 1024 * 1024

    async def send(flow: AnyFlow, data: bytes, seed: int) -> None:
        rng = random.Random(seed)
        off, big_at = 0, len(data) // 3
        while off < len(data):
            n = rng.randint(1, 256 * 1024)
            if off < big_at:
                n = min(n, big_at - off)
            elif off == big_at:
                n = 2 * 1024 * 1024
            await _write(flow, memoryview(data)[off : off + n])
            off += n

    ab, ba = _payload(size, 1), _payload(size + 12_345, 2)
    got_b, got_a, _, _ = await asyncio.gather(
        _read_exactly(b, len(ab)),
        _read_exactly(a, len(ba)),
        send(a, ab, 3),
        send(b, ba, 4),
    )
    _expect(got_b == ab, "large a -> b transfer corrupted")
    _expect(got_a == ba, "large b -> a transfer corrupted")


async def _close_eof_after_data(a: AnyFlow, b: AnyFlow) -> None:
    data = _payload(300_000, 5)

    async def send() -> None:
        await _write(a, data)
        await a.close()

    got, _ = await asyncio.gather(_read_to_eof(b), send())
    _expect(got == data, f"peer saw {len(got)} bytes before EOF, expected {len(data)}")
    r = await b.read()
    _expect(r is EOF, f"read after EOF gave {r!r}, expected EOF again")


async def _read_after_local_close(a: AnyFlow, b: AnyFlow) -> None:
    await _write(b, b"unread")
    await a.close()
    for _ in range(2):
        r = await a.read()
        _expect(r is EOF, f"read after local close gave {r!r}, expected EOF")


async def _write_after_close(a: AnyFlow, b: AnyFlow) -> None:
    await a.close()
    await a.close()  # closing twice is harmless
    r1 = await a.write(b"late")
    _expect(r1 is EOF, f"write after close gave {r1!r}, expected EOF")
    r2 = await a.writev([b"late", b"r"])
    _expect(r2 is EOF, f"writev after close gave {r2!r}, expected EOF")
    r3 = await b.read()
    _expect(r3 is EOF, f"peer read after close gave {r3!r}, expected EOF and no data")


async def _close_wakes_peer_reader(a: AnyFlow, b: AnyFlow) -> None:
    pending = asyncio.ensure_future(b.read())
    await asyncio.sleep(0.01)
    if pending.done():
        fail(f"read with nothing sent returned {pending.result()!r}")
    await a.close()
    r = await within(PROMPT, "a read blocked when the peer closed", pending)
    _expect(r is EOF, f"blocked read gave {r!r} when the peer closed, expected EOF")


async def _concurrent_read_write(a: AnyFlow, b: AnyFlow) -> None:
    # A read waiting on one end must not stop that end from writing.
    pending = asyncio.ensure_future(_read_exactly(a, 4))
    await asyncio.sleep(0)
    await _write(a, b"ping")
    _expect(await _read_exactly(b, 4) == b"ping", "write while a read waited got lost")
    await _write(b, b"pong")
    _expect(await asyncio.wait_for(pending, 5) == b"pong", "the waiting read saw wrong data")


async def _empty_writes(a: AnyFlow, b: AnyFlow) -> None:
    r = await a.write(b"")
    _expect(isinstance(r, Ok), f"empty write gave {r!r}")
    r = await a.writev([b"", bytearray()])
    _expect(isinstance(r, Ok), f"writev of empty buffers gave {r!r}")
    await _write(a, b"x")
    await a.write(memoryview(b""))
    await a.close()
    got = await _read_to_eof(b)  # also checks that no read gives Ok(empty)
    _expect(got == b"x", f"peer saw {got!r}, expected b'x'")


async def _peer_close_then_local(a: AnyFlow, b: AnyFlow) -> None:
    await _write(b, b"bye")
    await b.close()
    _expect(await _read_to_eof(a) == b"bye", "data sent before close was lost")
    await a.close()
    r = await a.read()
    _expect(r is EOF, f"read after both closed gave {r!r}")


async def _close_wakes_local_reader(a: AnyFlow, b: AnyFlow) -> None:
    pending = asyncio.ensure_future(a.read())
    await asyncio.sleep(0.01)
    if pending.done():
        fail(f"read with nothing sent returned {pending.result()!r}")
    await within(PROMPT, "close() with a read pending on the same flow", a.close())
    r = await within(PROMPT, "a read pending on the flow when close() ran", pending)
    expect(r is EOF, f"a read pending when its flow closed gave {r!r}, expected EOF")


async def _close_wakes_blocked_writer(a: AnyFlow, b: AnyFlow) -> None:
    # Fill the flow until a write waits on back-pressure (nobody reads b), then close.
    chunk = bytes(1 << 20)
    pending: asyncio.Future[Any] | None = None
    for _ in range(256):
        fut = asyncio.ensure_future(a.write(chunk))
        done, _ = await asyncio.wait([fut], timeout=0.2)
        if not done:
            pending = fut
            break
        r = fut.result()
        expect(isinstance(r, Ok), f"write of 1 MiB with the peer not reading gave {r!r}")
    if pending is None:
        return  # 256 MiB went without back-pressure: no writer to wake
    await within(PROMPT, "close() with a write blocked on the same flow", a.close())
    w = await within(PROMPT, "a write blocked on back-pressure when close() ran", pending)
    expect(w is EOF, f"a write blocked when its flow closed gave {w!r}, expected EOF")


async def _abort_resets_peer(a: AnyFlow, b: AnyFlow) -> None:
    abort = getattr(a, "abort", None)
    if abort is None:
        return  # the flow offers no reset (abort is an extension of FLOW)
    await _write(a, b"before the reset")
    pending = asyncio.ensure_future(a.read())
    await asyncio.sleep(0.01)
    r = abort()
    if inspect.isawaitable(r):
        await within(PROMPT, "abort()", r)
    got = await within(PROMPT, "a read pending on the flow when abort() ran", pending)
    expect(not isinstance(got, Ok), f"a read pending when its flow aborted gave {got!r}")
    rb: object = None
    for _ in range(64):
        rb = await within(PROMPT, "the peer's read after a reset", b.read())
        if not isinstance(rb, Ok):
            break
    expect(isinstance(rb, Error), f"the peer's read after a reset gave {rb!r}, expected Error")
    wb = await within(PROMPT, "a write after the peer reset", b.write(b"late"))
    expect(isinstance(wb, Error), f"a write after the peer reset gave {wb!r}, expected Error")
    wb = await within(PROMPT, "a writev after the peer reset", b.writev([b"la", b"te"]))
    expect(isinstance(wb, Error), f"a writev after the peer reset gave {wb!r}, expected Error")


async def _write_after_peer_reset(a: AnyFlow, b: AnyFlow) -> None:
    """Writes (with no read in between) succeed until the reset arrives, then give Error:
    never EOF, which would mean an orderly close."""
    abort = getattr(a, "abort", None)
    if abort is None:
        return
    r = abort()
    if inspect.isawaitable(r):
        await within(PROMPT, "abort()", r)
    loop = asyncio.get_running_loop()
    until = loop.time() + PROMPT
    while True:
        w = await within(PROMPT, "a write after the peer reset", b.write(b"after reset"))
        if isinstance(w, Error):
            return
        expect(w is not EOF, "a write after the peer reset gave EOF, expected Error")
        if loop.time() > until:
            fail(f"writes still gave Ok {PROMPT:g} s after the peer reset")
        await asyncio.sleep(0.05)


_CHECKS: dict[str, _Check] = {
    "both_ways": _both_ways,
    "bytes_like_inputs": _bytes_like_inputs,
    "strided_buffers": _strided_buffers,
    "partial_reads": _partial_reads,
    "writev_ordering": _writev_ordering,
    "large_transfer": _large_transfer,
    "close_eof_after_data": _close_eof_after_data,
    "read_after_local_close": _read_after_local_close,
    "write_after_close": _write_after_close,
    "close_wakes_peer_reader": _close_wakes_peer_reader,
    "concurrent_read_write": _concurrent_read_write,
    "empty_writes": _empty_writes,
    "peer_close_then_local": _peer_close_then_local,
    "close_wakes_local_reader": _close_wakes_local_reader,
    "close_wakes_blocked_writer": _close_wakes_blocked_writer,
    "abort_resets_peer": _abort_resets_peer,
    "write_after_peer_reset": _write_after_peer_reset,
}

FLOW_CHECKS: tuple[str, ...] = tuple(_CHECKS)
"""The names of the checks :func:`check_flow` runs, in order."""


async def check_flow(
    make_pair: FlowPairFactory,
    *,
    only: Collection[str] | None = None,
    timeout: float = 60.0,
) -> None:
    """Run the FLOW checks (all, or those named in ``only``) on fresh pairs.

    Raises :class:`ConformanceError` naming the first check that fails. Both flows of
    every pair are closed afterwards.
    """

    async def close_both(pair: FlowPair) -> None:
        await pair[0].close()
        await pair[1].close()

    checks = {name: on_pair(c) for name, c in _CHECKS.items()}
    await run_on_fresh(make_pair, checks, close_both, only, timeout)
