"""What ``create_server`` returns on a stack: an ``asyncio.Server`` look-alike.

Why its own class: ``asyncio.Server`` is built around listening sockets. Here a server is
a port of the stack's TCP with a callback; ``close`` unbinds the port (new connections are
then refused with a RST, as a closed socket's are) and leaves accepted ones open, as
asyncio does.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import socket
from collections.abc import Callable
from typing import Any

from ._sock import StackSocket
from ._transport import StackTransport, wait_done

_log = logging.getLogger("miragekit.netloop._loop")  # where this was logged before

Accept = Callable[[Any, Any], tuple[asyncio.Future[None], StackTransport]]
"""``accept(flow, tcp)``: one connection's protocol and transport, made: the transport's
waiter (resolved once the protocol has the connection) and the transport."""


def layers(stack: Any, proto: str) -> list[Any]:
    """The stack's ``"tcp"`` or ``"udp"`` layers a listener binds on: IPv4, and IPv6 when
    the stack has it."""
    out = [getattr(stack, f"{proto}v4")()]
    if getattr(stack, "has_ipv6", False):
        out.append(getattr(stack, f"{proto}v6")())
    return out


def port_in_use(stack: Any, port: int) -> bool:
    return any(getattr(t, "listening", lambda p: False)(port) for t in layers(stack, "tcp"))


class StackServer(asyncio.AbstractServer):
    """A listening port of a stack, served with a protocol factory."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        stack: Any,
        port: int,
        accept: Accept,
    ) -> None:
        self._loop = loop
        self._stack = stack
        self.port = port
        self._accept = accept
        self._ctx = contextvars.copy_context()
        self._serving = False
        self._closed = False
        self._active = 0
        self._waiters: list[asyncio.Future[None]] = []
        self._serving_forever: asyncio.Future[None] | None = None
        fams: list[tuple[int, tuple[Any, ...]]] = [(socket.AF_INET, ("0.0.0.0", port))]
        if getattr(stack, "has_ipv6", False):
            fams.append((socket.AF_INET6, ("::", port, 0, 0)))
        self._sockets = tuple(StackSocket(f, socket.SOCK_STREAM, a) for f, a in fams)

    def __repr__(self) -> str:
        return f"<StackServer port={self.port} serving={self._serving}>"

    # -- asyncio.AbstractServer -------------------------------------------------------

    def get_loop(self) -> asyncio.AbstractEventLoop:
        return self._loop

    def is_serving(self) -> bool:
        return self._serving

    @property
    def sockets(self) -> tuple[StackSocket, ...]:
        return () if self._closed else self._sockets

    async def start_serving(self) -> None:
        if self._serving or self._closed:
            return
        self._serving = True
        self._stack.listen_tcpv4(port=self.port, callback=self._on_flow)

    def close(self) -> None:
        """Unbind the port; connections already accepted go on."""
        if self._closed:
            return
        self._closed = True
        if self._serving:
            for tcp in layers(self._stack, "tcp"):
                tcp.unlisten(self.port)
        self._serving = False
        if self._serving_forever is not None and not self._serving_forever.done():
            self._serving_forever.cancel()
        self._wakeup()

    async def wait_closed(self) -> None:
        """Return once closed and every accepted connection has ended."""
        if not self._closed or self._active == 0:
            return
        waiter = self._loop.create_future()
        self._waiters.append(waiter)
        await waiter

    async def serve_forever(self) -> None:
        if self._serving_forever is not None:
            raise RuntimeError(f"server {self!r} is already being awaited on serve_forever()")
        if self._closed:
            raise RuntimeError(f"server {self!r} is closed")
        await self.start_serving()
        self._serving_forever = self._loop.create_future()
        try:
            await self._serving_forever
        except asyncio.CancelledError:
            try:
                self.close()
                await self.wait_closed()
            finally:
                raise
        finally:
            self._serving_forever = None

    async def __aenter__(self) -> StackServer:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self.close()
        await self.wait_closed()

    # -- connections ------------------------------------------------------------------

    def _wakeup(self) -> None:
        if self._closed and self._active == 0:
            waiters, self._waiters = self._waiters, []
            for w in waiters:
                if not w.done():
                    w.set_result(None)

    async def _on_flow(self, flow: Any) -> None:
        """The stack's listener callback: serve ``flow`` until it is over.

        The protocol and its transport are made in the server's context (the stack
        binding, and any other variable the program set: the connection's callbacks and
        tasks inherit it), not the stack driver's; the waits are this task's. (A task
        of their own in that context would hold about 650 bytes more for every
        connection's life.) The two ``sleep(0)`` are the turns such a task took to start
        and to wake this one at its end: every seeded run stays as it was."""
        tcp = self._stack.tcpv4()
        dest = flow.get_dest()[0]
        if getattr(dest, "version", 4) == 6:
            tcp = self._stack.tcpv6()
        self._active += 1
        try:
            await asyncio.sleep(0)
            waiter, raw = self._ctx.copy().run(self._accept, flow, tcp)
            try:
                await waiter
            except (ConnectionError, OSError) as e:
                raw.close()
                _log.debug("a connection failed before it was served: %s", e)
            except BaseException:
                raw.close()
                raise
            else:
                await wait_done(raw)
        finally:
            try:
                await asyncio.sleep(0)
            finally:
                self._active -= 1
                self._wakeup()
