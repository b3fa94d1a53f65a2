"""An asyncio transport over a TCP flow of a stack, behaving as asyncio's socket
transport does.

Programs written for asyncio expect asyncio's rules: after the connection is lost
``write`` drops the data and ``drain`` raises the loss's ``ConnectionError``; errors carry
errno and text; ``BufferedProtocol`` (asyncio's TLS) and ``set_protocol`` (``start_tls``)
work. ``miragekit.aio.FlowTransport`` is this transport with the seed's FLOW rule on top
(a write after close raises).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Callable
from functools import partial
from typing import Any

from ..result import Error, Ok
from ._errors import flow_error
from ._transport_io import TransportIO, feed_buffered

_HIGH = 64 * 1024
_LOW = 16 * 1024


class StackTransport(asyncio.Transport):
    """One TCP connection of a stack as an asyncio transport."""

    _start_tls_compatible = True  # BaseEventLoop.start_tls may take it over

    # No __dict__ (asyncio's transports have __slots__): an echo reads the transport's
    # attributes on both ends, and a dict's values are one more object to reach, cold
    # at 10,000 connections. ``write`` and ``is_closing`` are slots, not methods: each
    # holds its TransportIO's (set in __init__), so asyncio's streams reach the
    # compiled method without a Python frame; a subclass's own ``write`` or
    # ``is_closing`` method comes first, and its ``super().write`` is the TransportIO's.
    __slots__ = (
        "_done",
        "_flow",
        "_high",
        "_io",
        "_loop",
        "_low",
        "_more",
        "_out",
        "_paused",
        "_reader",
        "_reading",
        "_writer",
        "is_closing",
        "write",
    )
    write: Callable[[bytes | bytearray | memoryview], None]  # type: ignore[assignment]
    """``asyncio.WriteTransport.write``: the TransportIO's."""
    is_closing: Callable[[], bool]
    """``asyncio.BaseTransport.is_closing``: the TransportIO's."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        flow: Any,
        protocol: asyncio.BaseProtocol,
        extra: dict[str, Any],
        waiter: asyncio.Future[None] | None = None,
    ) -> None:
        super().__init__(extra)
        self._loop = loop
        self._flow = flow
        # The state that reads and writes use, and their hot paths (compiled, they run
        # without a Python frame: write and is_closing are bound below, deliver is the
        # flow's callback).
        io = self._io = TransportIO(self, protocol, isinstance(protocol, asyncio.BufferedProtocol))
        # Through the slots' descriptors: a subclass's own methods stay in front.
        _SET_WRITE(self, io.write)
        _SET_IS_CLOSING(self, io.is_closing)
        # Made on first use, as the two events below: most connections write straight
        # into their flow and read through read_now, and at 10,000 connections each
        # deque (an event holds one) is 760 bytes that nothing uses.
        self._out: deque[bytes] | None = None
        self._high = _HIGH
        self._low = _LOW
        self._paused = False  # protocol.pause_writing() called
        self._reading: asyncio.Event | None = None  # io.reading_on for the reader task
        self._more: asyncio.Event | None = None  # the writer task's wake-up
        # done's future, made when first asked for (a server's connections wait on it,
        # a client's seldom: 160 bytes each), or _ENDED once connection_lost was heard.
        self._done: asyncio.Future[None] | object | None = None
        io.send_now = getattr(flow, "send_now", None)
        conn = getattr(flow, "connection", None)
        if conn is not None:
            conn.set_nodelay(True)  # as asyncio sets TCP_NODELAY on every TCP socket
        # A flow's data as it is (a bytearray, not an Ok of a view) when it can.
        read_now = getattr(flow, "read_now_raw", None) or getattr(flow, "read_now", None)
        io.read_now = read_now
        self._reader: asyncio.Task[None] | None = None
        # The writer task starts only when a write has to wait (most go straight into the
        # connection's send buffer) or at close.
        self._writer: asyncio.Task[None] | None = None
        # connection_made first, then reading, in the order asyncio's own transports keep:
        # data already waiting in the flow must not reach the protocol before it.
        loop.call_soon(protocol.connection_made, self)
        if read_now is not None:
            # No reader task: the flow says when it has something, deliver takes it.
            flow.on_readable(io.deliver)
            loop.call_soon(self._start_delivery)
        else:
            self._reader = loop.create_task(self._read_loop())
        if waiter is not None:
            loop.call_soon(_set_none, waiter)

    @property
    def done(self) -> asyncio.Future[None]:
        """Resolved once the protocol heard ``connection_lost``."""
        fut = self._done
        if fut is None or fut is _ENDED:
            made: asyncio.Future[None] = self._loop.create_future()
            if fut is _ENDED:
                made.set_result(None)
            self._done = made
            return made
        return fut  # type: ignore[return-value]

    def __repr__(self) -> str:
        state = "closing" if self._io.closing else "open"
        return f"<StackTransport {self.get_extra_info('peername')} {state}>"

    # -- the state the reads and writes share (in self._io) ---------------------------

    @property
    def _protocol(self) -> asyncio.BaseProtocol:
        protocol: asyncio.BaseProtocol = self._io.protocol
        return protocol

    # -- reading ----------------------------------------------------------------------

    async def _read_loop(self) -> None:
        flow = self._flow
        reading = self._reading = asyncio.Event()
        if self._io.reading_on:
            reading.set()
        while True:
            await reading.wait()
            r = await flow.read()
            if self._io.lost or not self._received(r):
                return

    def _start_delivery(self) -> None:
        """After ``connection_made``: what arrived meanwhile, then as it comes."""
        io = self._io
        io.delivering = False
        io.deliver_soon = True  # the flow's callbacks so far, all in one: drain
        io.deliver()

    def _received(self, r: Any) -> bool:
        """Give the protocol one read's outcome; False once reading is over."""
        if isinstance(r, Ok):
            return self._data(r.value)
        if isinstance(r, Error):
            self._fatal(flow_error(r.error), "Fatal read error on socket transport")
            return False
        try:  # EOF
            keep_open = self._protocol.eof_received()  # type: ignore[attr-defined]
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:
            self._fatal(exc, "Fatal error: protocol.eof_received() call failed.")
            return False
        self._stop_reading()
        if not keep_open:
            self.close()
        return False

    def _data(self, data: bytearray | memoryview) -> bool:
        """Give the protocol data read; False once reading is over (it raised)."""
        try:
            proto = self._protocol
            if self._io.buffered:
                feed_buffered(proto, data)
            else:
                proto.data_received(bytes(data))  # type: ignore[attr-defined]
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:
            self._fatal(exc, "Fatal error: protocol.data_received() call failed.")
            return False
        return True

    def _stop_reading(self) -> None:
        io = self._io
        io.read_over = True
        if io.read_now is not None:
            self._flow.on_readable(None)

    def pause_reading(self) -> None:
        self._io.reading_on = False
        if self._reading is not None:
            self._reading.clear()

    def resume_reading(self) -> None:
        io = self._io
        if not io.closing and not io.reading_on:
            io.reading_on = True
            if self._reading is not None:
                self._reading.set()
            if io.read_now is not None:
                io.deliver_soon = True  # the callbacks missed while paused: drain
                self._loop.call_soon(io.deliver)  # not inside the protocol's call

    def is_reading(self) -> bool:
        io = self._io
        return io.reading_on and not io.closing

    # -- writing ----------------------------------------------------------------------

    def _queue(self, data: bytes | bytearray | memoryview) -> None:
        """Queue what ``write`` could not hand the connection, for the writer task."""
        out = self._out
        if out is None:
            out = self._out = deque()
        out.append(bytes(data))
        self._io.out_size += len(data)
        self._kick()
        self._maybe_pause()

    def writelines(self, list_of_data: Any) -> None:
        for data in list_of_data:
            self.write(data)

    def _maybe_pause(self) -> None:
        if not self._paused and self._io.out_size > self._high:
            self._paused = True
            self._flow_control("pause_writing")

    def _maybe_resume(self) -> None:
        if self._paused and self._io.out_size <= self._low:
            self._paused = False
            self._flow_control("resume_writing")

    def _flow_control(self, name: str) -> None:
        """``protocol.pause_writing()``/``resume_writing()``; what they raise goes to the
        loop's exception handler, as in asyncio."""
        try:
            getattr(self._protocol, name)()
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:
            self._loop.call_exception_handler(
                {"message": f"protocol.{name}() failed", "exception": exc}
            )

    def can_write_eof(self) -> bool:
        return hasattr(self._flow, "shutdown_write")

    def write_eof(self) -> None:
        io = self._io
        if io.closing or io.eof:
            return
        if not self.can_write_eof():
            raise NotImplementedError("write_eof() on a flow without half-close")
        io.eof = True
        self._kick()

    def get_write_buffer_size(self) -> int:
        return self._io.out_size

    def get_write_buffer_limits(self) -> tuple[int, int]:
        return (self._low, self._high)

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        if high is None:
            high = 4 * low if low is not None else _HIGH
        if low is None:
            low = high // 4
        if not high >= low >= 0:
            raise ValueError(f"high ({high!r}) must be >= low ({low!r}) must be >= 0")
        self._high, self._low = high, low
        self._maybe_pause()

    async def _write_loop(self) -> None:
        flow = self._flow
        io = self._io
        more = self._more
        assert more is not None  # _kick made it before starting this task
        while True:
            await more.wait()
            more.clear()
            while out := self._out:
                batch = list(out)
                out.clear()
                r = await flow.writev(batch)
                io.out_size -= sum(map(len, batch))
                if isinstance(r, Error):
                    self._fatal(flow_error(r.error), "Fatal write error on socket transport")
                    return
                if not isinstance(r, Ok):
                    return  # EOF: closed under us (abort)
                self._maybe_resume()
            if io.eof and not io.closing:
                await flow.shutdown_write()
            if io.closing:
                await flow.close()
                self._connection_lost(None)
                return

    # -- closing ----------------------------------------------------------------------

    def close(self) -> None:
        """Stop reading; send what is queued, then FIN; then ``connection_lost(None)``."""
        io = self._io
        if io.closing:
            return
        io.closing = True
        io.reading_on = False
        if self._reading is not None:
            self._reading.clear()
        self._kick()

    def abort(self) -> None:
        """Drop what is queued and reset the connection (RST)."""
        self._force_close(None)

    def _fatal(self, exc: BaseException, message: str) -> None:
        if not isinstance(exc, OSError):
            self._loop.call_exception_handler(
                {
                    "message": message,
                    "exception": exc,
                    "transport": self,
                    "protocol": self._protocol,
                }
            )
        self._force_close(exc)

    def _force_close(self, exc: BaseException | None) -> None:
        io = self._io
        if io.lost:
            return
        io.closing = True
        if self._out is not None:
            self._out.clear()
        io.out_size = 0
        self._cancel_tasks()
        flow = self._flow
        abort = getattr(flow, "abort", None)
        conn = getattr(flow, "connection", None)
        if callable(abort):
            result = abort()
            if asyncio.iscoroutine(result):
                self._loop.create_task(result)
        elif exc is None and conn is not None:
            # No abort() on this flow: reset through the connection, then let the flow
            # hand the RST to its driver.
            conn.abort()
            self._loop.create_task(flow.close())
        else:
            self._loop.create_task(flow.close())
        self._connection_lost(exc)

    def _connection_lost(self, exc: BaseException | None) -> None:
        io = self._io
        if io.lost:
            return
        io.lost = True
        io.closing = True
        self._cancel_tasks()
        self._loop.call_soon(self._call_connection_lost, exc)

    def _kick(self) -> None:
        """Wake the writer task, starting it if needed."""
        more = self._more
        if more is None:
            more = self._more = asyncio.Event()
        more.set()
        if self._writer is None and not self._io.lost and self._loop.is_running():
            # (not running: a coroutine abandoned with its loop closing its transport)
            self._writer = self._loop.create_task(self._write_loop())

    def _cancel_tasks(self) -> None:
        self._stop_reading()
        current = asyncio.current_task()
        for t in (self._reader, self._writer):
            if t is not None and t is not current:
                t.cancel()

    def _call_connection_lost(self, exc: BaseException | None) -> None:
        try:
            self._protocol.connection_lost(exc)  # type: ignore[arg-type]
        finally:
            fut = self._done
            if fut is None:
                self._done = _ENDED
            elif isinstance(fut, asyncio.Future) and not fut.done():
                fut.set_result(None)

    # -- protocol and extras ----------------------------------------------------------

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        io = self._io
        io.protocol = protocol
        io.buffered = isinstance(protocol, asyncio.BufferedProtocol)

    def get_protocol(self) -> asyncio.BaseProtocol:
        return self._protocol


_ENDED = object()  # StackTransport._done: connection_lost heard, no future asked for


def _set_none(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)


# The slots' setters (see __init__).
_SET_WRITE: Callable[[StackTransport, Any], None] = StackTransport.__dict__["write"].__set__
_SET_IS_CLOSING: Callable[[StackTransport, Any], None] = StackTransport.__dict__[
    "is_closing"
].__set__


async def wait_done(transport: StackTransport) -> None:
    """Until the protocol heard ``connection_lost``; cancelled, return (``done`` stays
    as it is). As ``asyncio.shield(transport.done)`` with the cancellation suppressed,
    without its second future's callback and two closures (about 430 bytes for every
    accepted connection's life); the task is woken at the same turn."""
    done = transport.done
    if done.done():
        return
    waiter: asyncio.Future[None] = transport._loop.create_future()
    done.add_done_callback(partial(_pass_on, waiter))
    with contextlib.suppress(asyncio.CancelledError):
        await waiter


def _pass_on(waiter: asyncio.Future[None], done: asyncio.Future[None]) -> None:
    if not waiter.done():
        if done.cancelled():
            waiter.cancel()
        else:
            waiter.set_result(None)
