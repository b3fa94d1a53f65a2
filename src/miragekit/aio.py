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
from collections.abc import Awaitable, Callable
from ipaddress import IPv4Address, ip_address
from types import TracebackType
from typing import Any

from . import v1
from .netloop import StackTransport
from .result import Error, Ok, Refused, Timeout

_HIGH = 256 * 1024
_LOW = 64 * 1024


class FlowTransport(StackTransport):
    """An asyncio transport whose bytes travel over a v1 TCP flow: the stack loop's
    :class:`~miragekit.netloop.StackTransport`, with the seed's FLOW rule that a write
    after ``close()`` or ``write_eof()`` is an error (``RuntimeError``), and the flow
    itself as ``get_extra_info("flow")``."""

    __slots__ = ()  # as its base: no __dict__ to reach on every access

    def __init__(
        self,
        flow: v1.TCPFlow[Any],
        protocol: asyncio.Protocol,
        loop: asyncio.AbstractEventLoop,
    ) -> None:
        ip, port = flow.get_dest()
        super().__init__(loop, flow, protocol, {"peername": (str(ip), port), "flow": flow})
        self.set_write_buffer_limits(_HIGH, _LOW)

    @property
    def closed(self) -> asyncio.Future[None]:
        """Resolved once the protocol heard ``connection_lost``."""
        return self.done

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if self.is_closing() or self._io.eof:
            raise RuntimeError("write after close or write_eof")
        super().write(data)


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
        gone = False
        try:
            await client_connected_cb(reader, writer)
        except asyncio.CancelledError:
            # The stack is stopping: cut the connection instead of waiting for a flush
            # (the transport's own tasks may be cancelled too, and then nothing would end
            # ``closed``).
            transport.abort()
            gone = True  # cut: nothing to wait for
            raise
        except GeneratorExit:
            gone = True  # abandoned with its loop, which is closed: nothing can wait
            raise
        finally:
            if not transport.is_closing():
                transport.close()
            if not gone:
                with contextlib.suppress(Exception):
                    await transport.closed

    stack.listen_tcpv4(port=port, callback=on_flow)
    return server


__all__ = ["FlowTransport", "Server", "open_connection", "start_server"]


# An event loop on which unmodified asyncio code goes through a stack (miragekit.netloop).
from .netloop import bind as bind  # noqa: E402
from .netloop import run as run  # noqa: E402

__all__ += ["bind", "run"]
