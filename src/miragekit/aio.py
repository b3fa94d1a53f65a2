"""asyncio streams over any STACKV4, so existing asyncio code runs on miragekit's stacks.

``open_connection(stack, host, port)`` and ``start_server(cb, stack, port)`` mirror
``asyncio.open_connection`` and ``asyncio.start_server``: they give real
``asyncio.StreamReader``/``StreamWriter`` objects, whose transport is a TCP flow of the
stack. Porting asyncio code is a one-line change::

    reader, writer = await asyncio.open_connection(host, port)            # before
    reader, writer = await miragekit.aio.open_connection(stack, host, port)  # after

Differences from asyncio, all following the FLOW semantics of the seed:

* ``writer.write_eof()`` (half-close) is offered only where the flow supports it
  (a ``shutdown_write`` method); ``can_write_eof()`` says which.
* A server's connection is closed (pending data flushed, then FIN) when the handler
  returns, as a Mirage listener's flow is.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Awaitable, Callable
from ipaddress import IPv4Address, ip_address
from types import TracebackType
from typing import Any

from . import v1
from .netloop import flow_error
from .result import Error, Ok, Refused, Timeout

_HIGH = 256 * 1024
_LOW = 64 * 1024


class FlowTransport(asyncio.Transport):
    """An asyncio transport whose bytes travel over a v1 TCP flow."""

    def __init__(
        self,
        flow: v1.TCPFlow[Any],
        protocol: asyncio.Protocol,
        loop: asyncio.AbstractEventLoop,
    ) -> None:
        super().__init__()
        self._flow = flow
        self._protocol = protocol
        self._loop = loop
        self._out: deque[bytes] = deque()
        self._out_size = 0
        self._paused_writing = False
        self._want_eof = False
        self._eof_written = False  # stays True once write_eof was called, as in asyncio
        self._closing = False
        self._lost = False
        self._reading = asyncio.Event()
        self._reading.set()
        self._more = asyncio.Event()
        self.closed = loop.create_future()
        self._tasks = [loop.create_task(self._read_loop()), loop.create_task(self._write_loop())]
        protocol.connection_made(self)

    # -- reading --------------------------------------------------------------------

    async def _read_loop(self) -> None:
        flow = self._flow
        while True:
            await self._reading.wait()
            match await flow.read():
                case Ok(data):
                    self._protocol.data_received(bytes(data))
                case Error(err):
                    self._lose(flow_error(err))  # as a socket says it, not a repr
                    return
                case _:  # EOF
                    self._protocol.eof_received()
                    return

    def pause_reading(self) -> None:
        self._reading.clear()

    def resume_reading(self) -> None:
        self._reading.set()

    def is_reading(self) -> bool:
        return self._reading.is_set()

    # -- writing --------------------------------------------------------------------

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if self._closing or self._eof_written:
            raise RuntimeError("write after close or write_eof")
        if not data:
            return
        self._out.append(bytes(data))
        self._out_size += len(data)
        self._more.set()
        if not self._paused_writing and self._out_size > _HIGH:
            self._paused_writing = True
            self._protocol.pause_writing()

    def writelines(self, list_of_data: Any) -> None:
        for data in list_of_data:
            self.write(data)

    def can_write_eof(self) -> bool:
        return hasattr(self._flow, "shutdown_write")

    def write_eof(self) -> None:
        if not self.can_write_eof():
            raise NotImplementedError("this flow has no half-close; use close()")
        self._want_eof = True
        self._eof_written = True
        self._more.set()

    def get_write_buffer_size(self) -> int:
        return self._out_size

    def get_write_buffer_limits(self) -> tuple[int, int]:
        return (_LOW, _HIGH)

    async def _write_loop(self) -> None:
        flow = self._flow
        while True:
            await self._more.wait()
            self._more.clear()
            while self._out:
                batch = list(self._out)
                self._out.clear()
                r = await flow.writev(batch)
                self._out_size -= sum(map(len, batch))
                if r != Ok(None):
                    err = r.error if isinstance(r, Error) else "connection closed"
                    self._lose(BrokenPipeError(str(err)))
                    return
                if self._paused_writing and self._out_size <= _LOW:
                    self._paused_writing = False
                    self._protocol.resume_writing()
            if self._want_eof and not self._out:
                shutdown: Callable[[], Awaitable[None]] = getattr(flow, "shutdown_write")  # noqa: B009
                await shutdown()
                self._want_eof = False
            if self._closing and not self._out:
                await flow.close()
                self._lose(None)
                return

    # -- closing --------------------------------------------------------------------

    def is_closing(self) -> bool:
        return self._closing or self._lost

    def close(self) -> None:
        if not self._closing:
            self._closing = True
            self._more.set()

    def abort(self) -> None:
        """Drop what is queued and reset the connection (RST) where the flow can."""
        self._closing = True
        for t in self._tasks:
            t.cancel()
        reset: Callable[[], None] | None = getattr(self._flow, "abort", None)
        if reset is not None:
            reset()
        else:  # a flow without reset: the best it has is a close
            self._loop.create_task(self._flow.close())
        self._lose(None)

    def _lose(self, exc: Exception | None) -> None:
        if self._lost:
            return
        self._lost = True
        self._closing = True
        current = asyncio.current_task()
        for t in self._tasks:
            if t is not current:
                t.cancel()
        self._protocol.connection_lost(exc)
        if not self.closed.done():
            self.closed.set_result(None)

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        if name == "peername":
            ip, port = self._flow.get_dest()
            return (str(ip), port)
        if name == "flow":
            return self._flow
        return default


def _streams(
    flow: v1.TCPFlow[Any], limit: int
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter, FlowTransport]:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=limit, loop=loop)
    protocol = asyncio.StreamReaderProtocol(reader, loop=loop)
    transport = FlowTransport(flow, protocol, loop)
    writer = asyncio.StreamWriter(transport, protocol, reader, loop)
    return reader, writer, transport


async def open_connection(
    stack: v1.StackV4, host: str | IPv4Address, port: int, *, limit: int = 2**16
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """Connect to ``host:port`` through ``stack``; raises as ``asyncio.open_connection`` does.

    ``ConnectionRefusedError`` on RST, ``TimeoutError`` when the SYNs go unanswered,
    ``OSError`` otherwise. ``host`` is an IPv4 address (there is no resolver here).
    """
    addr = host if isinstance(host, IPv4Address) else ip_address(host)
    if not isinstance(addr, IPv4Address):
        raise ValueError(f"host must be an IPv4 address, got {host!r}")
    match await stack.tcpv4().create_connection((addr, port)):
        case Ok(flow):
            reader, writer, _ = _streams(flow, limit)
            return reader, writer
        case Error(Refused()):
            raise ConnectionRefusedError(f"{addr}:{port}: connection refused")
        case Error(Timeout()):
            raise TimeoutError(f"{addr}:{port}: connection timed out")
        case Error(err):
            raise OSError(f"{addr}:{port}: {err}")
    raise AssertionError("unreachable")  # pragma: no cover


Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


class Server:
    """What :func:`start_server` returns: enough of ``asyncio.Server`` for common code."""

    def __init__(self, stack: v1.StackV4, port: int) -> None:
        self._stack = stack
        self.port = port
        self._closed = asyncio.Event()
        self._serving = True

    def is_serving(self) -> bool:
        return self._serving

    def close(self) -> None:
        """Stop accepting: later connections to the port are closed at once."""
        self._serving = False
        self._closed.set()

    async def wait_closed(self) -> None:
        await self._closed.wait()

    async def serve_forever(self) -> None:
        await self._closed.wait()

    async def __aenter__(self) -> Server:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


async def start_server(
    client_connected_cb: Handler, stack: v1.StackV4, port: int, *, limit: int = 2**16
) -> Server:
    """Serve ``client_connected_cb(reader, writer)`` on TCP ``port`` of ``stack``."""
    server = Server(stack, port)

    async def on_flow(flow: v1.TCPFlow[Any]) -> None:
        if not server.is_serving():
            await flow.close()
            return
        reader, writer, transport = _streams(flow, limit)
        try:
            await client_connected_cb(reader, writer)
        except asyncio.CancelledError:
            # The stack is stopping: cut the connection instead of waiting for a flush
            # (the transport's own tasks may be cancelled too, and then nothing would end
            # ``closed``).
            transport.abort()
            raise
        finally:
            if not transport.is_closing():
                transport.close()
            with contextlib.suppress(Exception):
                await transport.closed

    stack.listen_tcpv4(port=port, callback=on_flow)
    return server


__all__ = ["FlowTransport", "Server", "open_connection", "start_server"]


# An event loop on which unmodified asyncio code goes through a stack (miragekit.netloop).
from .netloop import bind as bind  # noqa: E402
from .netloop import run as run  # noqa: E402

__all__ += ["bind", "run"]
