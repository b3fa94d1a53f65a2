"""``--forward HOSTPORT:PORT``: real clients on the host reach a direct-stack application.

The host accepts TCP on ``127.0.0.1:HOSTPORT`` with its own sockets and carries each
connection to the application's ``PORT`` through miragekit's TCP/IP:

* on the virtual switch, a second :class:`~miragekit.stack.DirectStackV4` plugged into the
  same switch (the network's first free address, e.g. 10.0.0.1) plays the host's side and
  opens a TCP connection to the application's stack;
* on a TAP device, the host kernel connects to the application's address through the
  device, so the TAP interface needs an address in the same network on the host side
  (``ip addr add 10.0.0.1/24 dev tap0 && ip link set tap0 up``).

Bytes are copied both ways with back-pressure (a side is read only as fast as the other
takes it), a FIN is passed on as a half-close, and a reset or error on one side aborts
the other. Connections and bytes are counted in :class:`ForwardCounters`.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import socket
import struct
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from ._options import Forward

Streams = tuple[asyncio.StreamReader, asyncio.StreamWriter]
Connect = Callable[[int], Awaitable[Streams]]

_CHUNK = 64 * 1024


@dataclass
class ForwardCounters:
    accepted: int = 0  # connections from host clients
    active: int = 0  # being carried now
    completed: int = 0  # ended with both sides closed in order
    failed: int = 0  # the application's side could not be reached
    aborted: int = 0  # ended by a reset or error on either side
    to_app: int = 0  # bytes carried from host clients to the application
    from_app: int = 0  # bytes carried back


async def _pipe(
    src: asyncio.StreamReader, dst: asyncio.StreamWriter, count: Callable[[int], None]
) -> None:
    """Copy until EOF, then half-close ``dst`` (or close it where it cannot half-close)."""
    while data := await src.read(_CHUNK):
        dst.write(data)
        count(len(data))
        await dst.drain()
    if dst.can_write_eof():
        dst.write_eof()
    else:
        dst.close()


def _abort(w: asyncio.StreamWriter) -> None:
    """Reset the connection: a host socket closed with a zero linger sends RST (a plain
    ``abort`` would send FIN, turning a reset into a clean end); a flow resets itself."""
    sock = w.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    with contextlib.suppress(Exception):
        w.transport.abort()


class Forwarder:
    """Listens on 127.0.0.1 for each rule and carries connections through ``connect``."""

    def __init__(
        self,
        rules: tuple[Forward, ...],
        connect: Connect,
        *,
        host: str = "127.0.0.1",
        describe: str = "",
    ) -> None:
        self.rules = rules
        self._connect = connect
        self._host = host
        self.describe = describe
        self.counters = ForwardCounters()
        self._servers: list[asyncio.Server] = []
        self._conns: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        """Bind every host port (``OSError`` if one is taken; none stays bound then)."""
        try:
            for rule in self.rules:
                server = await asyncio.start_server(
                    self._handler(rule.port), self._host, rule.host_port
                )
                self._servers.append(server)
        except OSError:
            await self.close()
            raise

    def _handler(
        self, port: int
    ) -> Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]:
        async def handle(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
            await self._carry(r, w, port)

        return handle

    def ports(self) -> list[int]:
        """The host ports actually bound (useful with HOSTPORT 0 in tests)."""
        out = []
        for s in self._servers:
            for sock in s.sockets:
                out.append(int(sock.getsockname()[1]))
        return out

    async def _carry(self, hr: asyncio.StreamReader, hw: asyncio.StreamWriter, port: int) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._conns.add(task)
        c = self.counters
        c.accepted += 1
        try:
            try:
                ar, aw = await self._connect(port)
            except (OSError, TimeoutError):
                c.failed += 1
                _abort(hw)
                return
            c.active += 1
            try:
                await self._both(hr, hw, ar, aw)
            finally:
                c.active -= 1
        finally:
            self._conns.discard(task)

    async def _both(
        self,
        hr: asyncio.StreamReader,
        hw: asyncio.StreamWriter,
        ar: asyncio.StreamReader,
        aw: asyncio.StreamWriter,
    ) -> None:
        c = self.counters

        def up(n: int) -> None:
            c.to_app += n

        def down(n: int) -> None:
            c.from_app += n

        pipes = [
            asyncio.ensure_future(_pipe(hr, aw, up)),
            asyncio.ensure_future(_pipe(ar, hw, down)),
        ]
        try:
            pending: set[asyncio.Future[None]] = set(pipes)
            while pending:
                done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_EXCEPTION)
                if any(not t.cancelled() and t.exception() is not None for t in done):
                    raise ConnectionError("one side failed")
        except (ConnectionError, OSError, RuntimeError):
            c.aborted += 1
            for t in pipes:
                t.cancel()
            _abort(hw)
            _abort(aw)
            return
        except asyncio.CancelledError:
            for t in pipes:
                t.cancel()
            _abort(hw)
            _abort(aw)
            raise
        c.completed += 1
        for w in (aw, hw):
            w.close()
            with contextlib.suppress(Exception):
                await w.wait_closed()

    async def close(self) -> None:
        """Stop listening and abort the connections still being carried."""
        for s in self._servers:
            s.close()
        for t in list(self._conns):
            t.cancel()
        for t in list(self._conns):
            with contextlib.suppress(BaseException):
                await t
        self._servers.clear()


async def vnet_forwarder(
    rules: tuple[Forward, ...], switch: Any, host_ip: ipaddress.IPv4Interface, app_ip: Any
) -> tuple[Forwarder, Any]:
    """A forwarder whose far side is a second stack at ``host_ip`` on ``switch``."""
    from .. import aio, v1
    from ..result import Error
    from ..stack import DirectStackV4, Static

    netif = switch.add_interface("host")
    r = await DirectStackV4.connect(v1.StackConfig("host", None, netif, Static(host_ip)))
    if isinstance(r, Error):
        raise OSError(f"the host's stack on the virtual switch: {r.error}")
    stack = r.value

    async def connect(port: int) -> Streams:
        return await aio.open_connection(stack, app_ip, port)

    fwd = Forwarder(rules, connect, describe=f"through the host's stack {host_ip.ip} on the switch")
    return fwd, stack


def kernel_forwarder(rules: tuple[Forward, ...], app_ip: Any, tap: str) -> Forwarder:
    """A forwarder whose far side is the host kernel, routing to ``app_ip`` over the TAP."""

    async def connect(port: int) -> Streams:
        return await asyncio.wait_for(asyncio.open_connection(str(app_ip), port), 10)

    return Forwarder(rules, connect, describe=f"through the host kernel and {tap}")
