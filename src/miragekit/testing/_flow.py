"""An in-memory FLOW pair: two connected ends with bounded queues and fault knobs.

Why: channels, protocols and applications need a peer to talk to in tests without
sockets. Each direction is a bounded byte queue, so writers feel back-pressure exactly
where a real transport would make them wait, and the knobs (random write pieces from a
seed, a read delay) shake out code that assumes one write arrives as one read.

Semantics (``docs``/V1 mapping, FLOW):

* ``read`` returns ``Ok(view)`` with the next queued piece (never empty), waits while the
  queue is empty, and gives ``EOF`` once the peer closed and the queue is drained.
* ``write``/``writev`` complete when the bytes are queued; a write of at most
  ``capacity`` bytes is queued whole, a larger one in ``capacity``-sized pieces.
* ``close`` leaves what is queued for the peer and then signals the end; afterwards the
  local ``read`` and ``write`` give ``EOF``, and so do the peer's writes (nobody reads
  them any more). A write blocked on back-pressure when ``close`` runs gives ``EOF``.
* ``abort()`` resets the connection: what either side queued is dropped, the local end
  behaves as closed (``EOF``), the peer's reads and writes give ``Error(Unknown(...))``.
* As a stand-in for a TCP flow (``v1.TCPFlow``): ``get_dest`` gives the other end's
  address (``ends`` of :func:`flow_pair`), ``write_nodelay``/``writev_nodelay`` are writes.
* ``fail(error)`` models a reset: the local end returns ``Error(error)`` from then on;
  the peer reads what was queued before, then ``Error(error)``, and its writes fail.
"""

from __future__ import annotations

import asyncio
import random
from collections import deque
from ipaddress import IPv4Address
from typing import Final

from ..buffers import flat
from ..result import EOF, Eof, Error, Ok, Unknown
from ..v1 import Buffer, Buffers, Flow, TCPFlow

DEFAULT_CAPACITY: Final = 256 * 1024


class _Pipe:
    """One direction: a queue of immutable pieces and who is waiting on it."""

    __slots__ = ("capacity", "chunks", "closed", "error", "gone", "queued", "readers", "writers")

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.chunks: deque[bytes] = deque()
        self.queued = 0
        self.closed = False  # the writing end closed: EOF after the queue drains
        self.gone = False  # the reading end closed: writes are refused
        self.error: Unknown | None = None  # a reset, seen after the queued data
        self.readers: list[asyncio.Future[None]] = []
        self.writers: list[asyncio.Future[None]] = []


def _wake(waiters: list[asyncio.Future[None]]) -> None:
    for fut in waiters:
        if not fut.done():
            fut.set_result(None)
    waiters.clear()


async def _wait(waiters: list[asyncio.Future[None]]) -> None:
    fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    waiters.append(fut)
    try:
        await fut
    finally:
        if fut in waiters:
            waiters.remove(fut)


class MemoryFlow:
    """One end of a :func:`flow_pair`; a ``v1.Flow`` whose error type is ``Unknown``."""

    __slots__ = (
        "_closed",
        "_delay",
        "_dest",
        "_error",
        "_lock",
        "_max_chunk",
        "_rng",
        "_rx",
        "_tx",
    )

    def __init__(
        self,
        rx: _Pipe,
        tx: _Pipe,
        *,
        max_chunk: int | None = None,
        seed: int = 0,
        delay: float | None = None,
        dest: tuple[IPv4Address, int] = (IPv4Address("192.0.2.2"), 80),
    ) -> None:
        self._rx = rx
        self._dest = dest
        self._tx = tx
        self._closed = False
        self._error: Unknown | None = None
        self._max_chunk = max_chunk
        self._rng = random.Random(seed)
        self._delay = delay
        self._lock = asyncio.Lock()

    def get_dest(self) -> tuple[IPv4Address, int]:
        """The other end's address and port (see ``ends`` in :func:`flow_pair`)."""
        return self._dest

    async def write_nodelay(self, buf: Buffer) -> None:
        await self.write(buf)

    async def writev_nodelay(self, bufs: Buffers) -> None:
        await self.writev(bufs)

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` has run on this end."""
        return self._closed

    @property
    def queued(self) -> int:
        """Bytes this end has written that the peer has not read yet."""
        return self._tx.queued

    async def read(self) -> Ok[memoryview] | Eof | Error[Unknown]:
        if self._delay is not None:
            await asyncio.sleep(self._delay)
        rx = self._rx
        while True:
            if self._error is not None:
                return Error(self._error)
            if self._closed:
                return EOF
            if rx.chunks:
                piece = rx.chunks.popleft()
                rx.queued -= len(piece)
                if rx.writers:
                    _wake(rx.writers)
                return Ok(memoryview(piece))
            if rx.error is not None:
                return Error(rx.error)
            if rx.closed:
                return EOF
            await _wait(rx.readers)

    async def write(self, buf: Buffer) -> Ok[None] | Eof | Error[Unknown]:
        # bytes() of a bytes object is the object itself; anything else is copied, so
        # the caller may reuse its buffer even though the seed does not promise that.
        data = bytes(buf) if type(buf) is not bytes else buf
        async with self._lock:
            return await self._put(data)

    async def writev(self, bufs: Buffers) -> Ok[None] | Eof | Error[Unknown]:
        data = b"".join(map(flat, bufs))
        async with self._lock:
            return await self._put(data)

    async def _put(self, data: bytes) -> Ok[None] | Eof | Error[Unknown]:
        tx = self._tx
        n = len(data)
        off = 0
        while True:
            if self._error is not None:
                return Error(self._error)
            if self._closed or tx.gone:
                return EOF
            if tx.error is not None:
                return Error(tx.error)
            if off >= n:
                return Ok(None)
            want = min(n - off, tx.capacity)
            if tx.capacity - tx.queued < want:
                await _wait(tx.writers)
                continue
            piece = data if want == n else data[off : off + want]
            self._push(piece)
            off += want

    def _push(self, piece: bytes) -> None:
        tx = self._tx
        tx.queued += len(piece)
        if self._max_chunk is None:
            tx.chunks.append(piece)
        else:
            rng, top, n, i = self._rng, self._max_chunk, len(piece), 0
            while i < n:
                step = rng.randint(1, top)
                tx.chunks.append(piece[i : i + step])
                i += step
        if tx.readers:
            _wake(tx.readers)

    async def close(self) -> None:
        """Signal the end to the peer; what is already queued stays readable for it."""
        if self._closed:
            return
        self._closed = True
        self._tx.closed = True
        self._rx.gone = True
        self._rx.chunks.clear()
        self._rx.queued = 0
        for pipe in (self._tx, self._rx):
            _wake(pipe.readers)
            _wake(pipe.writers)

    def abort(self) -> None:
        """Reset the connection (see the module docstring); waiters on both ends wake."""
        reset = Unknown("connection reset by peer")
        self._closed = True
        for pipe in (self._tx, self._rx):
            pipe.error = reset
            pipe.chunks.clear()
            pipe.queued = 0
            _wake(pipe.readers)
            _wake(pipe.writers)

    def fail(self, error: Unknown) -> None:
        """Reset the connection with ``error`` (a test knob; see the module docstring)."""
        self._error = error
        self._tx.error = error
        self._rx.error = error
        for pipe in (self._tx, self._rx):
            _wake(pipe.readers)
            _wake(pipe.writers)


_check: type[Flow[Unknown]] = MemoryFlow
_check_tcp: type[TCPFlow[IPv4Address]] = MemoryFlow

#: The default addresses of a pair's two ends (TEST-NET-1: a client and a web server).
ENDS: Final = ((IPv4Address("192.0.2.1"), 49152), (IPv4Address("192.0.2.2"), 80))


def flow_pair(
    *,
    capacity: int = DEFAULT_CAPACITY,
    max_chunk: int | None = None,
    seed: int = 0,
    delay: float | None = None,
    ends: tuple[tuple[IPv4Address, int], tuple[IPv4Address, int]] = ENDS,
) -> tuple[MemoryFlow, MemoryFlow]:
    """Two connected in-memory flows.

    They also stand in for TCP flows: ``ends`` are the addresses of the first and second
    end, so ``a.get_dest()`` is ``ends[1]`` and ``b.get_dest()`` is ``ends[0]``.

    ``capacity`` bounds the bytes queued in each direction (writers wait beyond it).
    ``max_chunk`` delivers every write as random pieces of 1..``max_chunk`` bytes drawn
    from ``seed``; ``delay`` makes every read first sleep that long (0 just yields).
    """
    if capacity < 1:
        raise ValueError(f"capacity must be >= 1, got {capacity}")
    if max_chunk is not None and max_chunk < 1:
        raise ValueError(f"max_chunk must be >= 1 or None, got {max_chunk}")
    if delay is not None and delay < 0:
        raise ValueError(f"delay must be >= 0 or None, got {delay}")
    ab, ba = _Pipe(capacity), _Pipe(capacity)
    a = MemoryFlow(ba, ab, max_chunk=max_chunk, seed=seed, delay=delay, dest=ends[1])
    b = MemoryFlow(ab, ba, max_chunk=max_chunk, seed=seed + 1, delay=delay, dest=ends[0])
    return a, b
