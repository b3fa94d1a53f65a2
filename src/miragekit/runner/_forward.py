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

``udp:`` rules carry datagrams: each host client (address and port) gets its own source
port on the far side, so the application's replies find their way back to it.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import os
import socket
import struct
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from ._options import Forward

Streams = tuple[asyncio.StreamReader, asyncio.StreamWriter]
Connect = Callable[[int], Awaitable[Streams]]

SendDatagram = Callable[[bytes], Awaitable[None]]
OpenUdp = Callable[
    [int, Callable[[bytes], None]], Awaitable[tuple[SendDatagram, Callable[[], None]]]
]
"""``open(port, on_reply)``: a far-side sender to the app's UDP ``port`` whose replies
come to ``on_reply``, and how to close it; one per host client."""

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
    datagrams_to_app: int = 0  # UDP datagrams carried to the application
    datagrams_from_app: int = 0  # and back


class _UdpRule(asyncio.DatagramProtocol):
    """One ``udp:`` rule: host clients' datagrams to the app's port, replies back."""

    def __init__(self, port: int, open_udp: OpenUdp, counters: ForwardCounters) -> None:
        self.port = port
        self._open = open_udp
        self._counters = counters
        self._transport: Any = None  # the host's datagram transport
        self._far: dict[Any, asyncio.Future[tuple[SendDatagram, Callable[[], None]]]] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport

    def datagram_received(self, data: bytes, addr: Any) -> None:
        task = asyncio.ensure_future(self._carry(data, addr))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _carry(self, data: bytes, addr: Any) -> None:
        far = self._far.get(addr)
        if far is None:
            far = self._far[addr] = asyncio.ensure_future(self._open(self.port, self._reply(addr)))
        try:
            send, _ = await far
            await send(data)
        except OSError:
            return
        self._counters.datagrams_to_app += 1
        self._counters.to_app += len(data)

    def _reply(self, addr: Any) -> Callable[[bytes], None]:
        def back(data: bytes) -> None:
            if self._transport is not None and not self._transport.is_closing():
                self._transport.sendto(data, addr)
                self._counters.datagrams_from_app += 1
                self._counters.from_app += len(data)

        return back

    def close(self) -> None:
        for t in self._tasks:
            t.cancel()
        for far in self._far.values():
            if far.done() and not far.cancelled() and far.exception() is None:
                far.result()[1]()
            else:
                far.cancel()
        self._far.clear()
        if self._transport is not None:
            self._transport.close()


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


def _reset(w: asyncio.StreamWriter) -> None:
    """Abort a host socket with RST (SO_LINGER 0): the client sees a reset, not an EOF."""
    sock = w.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    _abort(w)


class Forwarder:
    """Listens on 127.0.0.1 for each rule and carries connections through ``connect``."""

    def __init__(
        self,
        rules: tuple[Forward, ...],
        connect: Connect,
        *,
        open_udp: OpenUdp | None = None,
        host: str = "127.0.0.1",
        describe: str = "",
    ) -> None:
        self.rules = rules
        self._connect = connect
        self._open_udp = open_udp
        self._udp: list[_UdpRule] = []
        self._bound: list[int] = []
        self._host = host
        self.describe = describe
        self.counters = ForwardCounters()
        self._servers: list[asyncio.Server] = []
        self._conns: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        """Bind every host port (``OSError`` if one is taken; none stays bound then)."""
        loop = asyncio.get_running_loop()
        try:
            for rule in self.rules:
                if rule.proto == "udp":
                    if self._open_udp is None:
                        raise OSError(f"--forward {rule}: UDP is not forwarded {self.describe}")
                    udp = _UdpRule(rule.port, self._open_udp, self.counters)
                    transport, _ = await loop.create_datagram_endpoint(
                        lambda udp=udp: udp,  # type: ignore[misc]
                        local_addr=(self._host, rule.host_port),
                    )
                    self._udp.append(udp)
                    self._bound.append(int(transport.get_extra_info("sockname")[1]))
                    continue
                server = await asyncio.start_server(
                    self._handler(rule.port), self._host, rule.host_port
                )
                self._servers.append(server)
                self._bound.append(int(server.sockets[0].getsockname()[1]))
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
        """The host ports actually bound, in the order of the rules (useful with HOSTPORT 0)."""
        return list(self._bound)

    async def _carry(self, hr: asyncio.StreamReader, hw: asyncio.StreamWriter, port: int) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._conns.add(task)
        c = self.counters
        c.accepted += 1
        try:
            try:
                ar, aw = await self._connect(port)
            except (OSError, TimeoutError) as e:
                c.failed += 1
                self._log_failure(port, e)
                _reset(hw)
                return
            c.active += 1
            try:
                await self._both(hr, hw, ar, aw)
            finally:
                c.active -= 1
        except asyncio.CancelledError:
            # Stopped by the runner: the connection is cut, counted and not re-raised (the
            # task is the server's per-connection task; nothing waits on it but close()).
            c.aborted += 1
            _reset(hw)
        finally:
            self._conns.discard(task)

    def _log_failure(self, port: int, e: BaseException) -> None:
        """One line per failed connection: the client gets a reset, the user the reason."""
        if isinstance(e, TimeoutError):
            why = "no answer (timed out)"
        elif isinstance(e, OSError) and e.errno:
            why = os.strerror(e.errno)  # asyncio's own text names the call, not the cause
        else:
            why = (e.strerror if isinstance(e, OSError) else None) or str(e) or type(e).__name__
        print(
            f"miragekit: --forward to port {port} {self.describe}: {why}; "
            "the client's connection was reset",
            file=sys.stderr,
            flush=True,
        )

    def stop_accepting(self) -> None:
        """Close the host listeners; connections being carried go on."""
        for s in self._servers:
            s.close()

    def live_connections(self) -> int:
        return len(self._conns)

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
            _reset(hw)
            _reset(aw)
            return
        except asyncio.CancelledError:
            for t in pipes:
                t.cancel()
            _reset(hw)
            _reset(aw)
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
        for u in self._udp:
            u.close()
        self._udp.clear()
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
    from ..result import Error, message
    from ..stack import DirectStackV4, Static

    netif = switch.add_interface("host")
    r = await DirectStackV4.connect(v1.StackConfig("host", None, netif, Static(host_ip)))
    if isinstance(r, Error):
        raise OSError(f"the host's stack on the virtual switch: {message(r.error)}")
    stack = r.value

    async def connect(port: int) -> Streams:
        return await aio.open_connection(stack, app_ip, port)

    source_ports = iter(range(49152, 65536))

    async def open_udp(
        port: int, on_reply: Callable[[bytes], None]
    ) -> tuple[SendDatagram, Callable[[], None]]:
        sport = next(source_ports)

        async def reply(src: Any, dst: Any, src_port: int, buf: memoryview) -> None:
            if src == app_ip and src_port == port:
                on_reply(bytes(buf))

        stack.listen_udpv4(port=sport, callback=reply)

        async def send(data: bytes) -> None:
            await stack.udpv4().write(data, dest_ip=app_ip, dest_port=port, source_port=sport)

        return send, lambda: None  # the host's stack goes with the forwarder

    fwd = Forwarder(
        rules,
        connect,
        open_udp=open_udp,
        describe=f"through the host's stack {host_ip.ip} on the switch",
    )
    return fwd, stack


def kernel_forwarder(rules: tuple[Forward, ...], app_ip: Any, tap: str) -> Forwarder:
    """A forwarder whose far side is the host kernel, routing to ``app_ip`` over the TAP."""

    async def connect(port: int) -> Streams:
        return await asyncio.wait_for(asyncio.open_connection(str(app_ip), port), 10)

    async def open_udp(
        port: int, on_reply: Callable[[bytes], None]
    ) -> tuple[SendDatagram, Callable[[], None]]:
        class Replies(asyncio.DatagramProtocol):
            def datagram_received(self, data: bytes, addr: Any) -> None:
                on_reply(data)

        transport, _ = await asyncio.get_running_loop().create_datagram_endpoint(
            Replies, remote_addr=(str(app_ip), port)
        )

        async def send(data: bytes) -> None:
            transport.sendto(data)

        return send, transport.close

    return Forwarder(
        rules, connect, open_udp=open_udp, describe=f"through the host kernel and {tap}"
    )
