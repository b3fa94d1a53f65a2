"""STACKV4 over the host kernel's sockets.

The same application runs on this stack or on miragekit's own (``DirectStackV4``), so the
FLOW semantics are the direct stack's, fixed in docs/design.md:

* ``create_connection`` gives ``Error(Refused())`` when the peer resets the SYN,
  ``Error(Timeout())`` when nobody answers within ``connect_timeout``, ``Error(Unknown)``
  for anything else (no route, ...).
* ``read`` gives ``Ok(data)``, ``EOF`` after the peer's FIN, ``Error(Unknown)`` after a
  reset. ``write`` completes when the data is queued, waiting while the send buffer is
  above its high-water mark (back-pressure); after a local ``close`` it gives ``EOF``.
* ``close`` sends what is queued, then FIN; afterwards ``read`` gives ``EOF``.
* A listener's flow is closed when its callback returns.
* UDP listener callbacks run one at a time per port, in arrival order; datagrams that
  arrive while the per-port queue is full are dropped and counted.

The frame-level parts of IPV4 (``allocate_frame``, ``write``, ``input`` ...) have no
meaning over sockets and raise ``NotImplementedError``, as in Mirage's socket stack.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import socket
import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv4Network
from typing import Any, Final, Literal, Self

from .. import v1
from ..buffers import flat
from ..result import EOF, Eof, Error, Ok, Refused, StackError, TCPError, Timeout, UDPError, Unknown

_IP_PKTINFO = getattr(socket, "IP_PKTINFO", 8)
_PKTINFO = struct.Struct("=i4s4s")  # ipi_ifindex, ipi_spec_dst, ipi_addr


@dataclass(frozen=True, slots=True)
class SocketConfig:
    """What a socket stack is connected with: the addresses its listeners bind to."""

    name: str = "socket"
    ips: tuple[IPv4Address, ...] = (IPv4Address("0.0.0.0"),)
    connect_timeout: float = 20.0
    udp_queue: int = 1024
    backlog: int = 1024

    def __post_init__(self) -> None:
        if not self.ips:
            raise ValueError("SocketConfig.ips: need at least one address")
        if self.connect_timeout <= 0:
            raise ValueError(
                f"SocketConfig.connect_timeout must be > 0, got {self.connect_timeout}"
            )
        if self.udp_queue <= 0 or self.backlog <= 0:
            raise ValueError("SocketConfig.udp_queue and backlog must be > 0")


def _check_port(name: str, port: int) -> None:
    if not 0 < port < 65536:
        raise ValueError(f"{name} must be in 1..65535, got {port}")


# --- TCP -------------------------------------------------------------------------------


_RESET: Final = Unknown("connection reset by peer")


_READ_LIMIT: Final = 1 << 20  # unread bytes past which the socket is not read


def _wake(waiter: asyncio.Future[None] | None) -> None:
    """Let the task waiting on ``waiter`` (if any) run."""
    if waiter is not None and not waiter.done():
        waiter.set_result(None)


class SocketFlow(asyncio.Protocol):
    """One TCP connection over a host socket: an asyncio protocol, so a read waits for
    ``data_received`` and a write goes to the transport (one ``send`` when the socket
    takes it all), without the stream reader and writer between (a future, a buffer
    copy and several calls per request less; the plain asyncio server they are
    measured against in ``bench/http.py`` pays the same as this).

    ``close`` and ``abort`` never wait for the peer: a read or write waiting on the flow
    gives ``EOF`` at once, and the kernel sends what is queued (then FIN) in the
    background. After a peer's reset, reads and writes give ``Error``.
    """

    def __init__(
        self,
        on_connected: Callable[[SocketFlow], None] | None,
        loop: asyncio.AbstractEventLoop,
    ) -> None:
        self._on_connected = on_connected
        # The loop, kept: asyncio.get_running_loop() is a getpid() system call in 3.11.
        self._loop = loop
        self._transport: asyncio.Transport | None = None
        self._dest = (IPv4Address(0), 0)
        self._chunks: list[bytes] = []  # received, unread
        self._unread = 0
        self._read_paused = False
        self._eof = False  # the peer's FIN
        self._lost = False  # the connection is gone (reset, error or closed)
        self._error: BaseException | None = None  # why it went, if not by a clean close
        self._closed = False
        self._reset = False
        self._write_paused = False
        self._waiter: asyncio.Future[None] | None = None  # a read waiting for data
        self._drainer: asyncio.Future[None] | None = None  # a write waiting for room

    # --- asyncio.Protocol ---------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport
        peer = transport.get_extra_info("peername")
        self._dest = (IPv4Address(socket.inet_aton(peer[0])), peer[1])  # packed: no parse
        if self._on_connected is not None:
            self._on_connected(self)

    def data_received(self, data: bytes) -> None:
        self._chunks.append(data)
        self._unread += len(data)
        if self._unread > _READ_LIMIT and not self._read_paused:
            self._read_paused = True
            self.transport.pause_reading()
        self._wake_reader()

    def eof_received(self) -> bool:
        self._eof = True
        self._wake_reader()
        return True  # keep our side open: we may still write (a half-close)

    def connection_lost(self, exc: Exception | None) -> None:
        self._lost = True
        if isinstance(exc, ConnectionResetError | BrokenPipeError):
            self._reset = True
        self._error = exc
        self._wake_reader()
        self._wake_writer()

    def pause_writing(self) -> None:
        self._write_paused = True

    def resume_writing(self) -> None:
        self._write_paused = False
        self._wake_writer()

    def _wake_reader(self) -> None:
        _wake(self._waiter)
        self._waiter = None

    def _wake_writer(self) -> None:
        _wake(self._drainer)
        self._drainer = None

    @property
    def transport(self) -> asyncio.Transport:
        t = self._transport
        assert t is not None, "the flow is not connected yet"
        return t

    # --- FLOW -------------------------------------------------------------------------

    def get_dest(self) -> tuple[IPv4Address, int]:
        return self._dest

    async def read(self) -> Ok[memoryview] | Eof | Error[TCPError]:
        while True:
            if self._closed:
                return EOF
            if self._reset:
                return Error(_RESET)
            chunks = self._chunks
            if chunks:
                data = chunks[0] if len(chunks) == 1 else b"".join(chunks)
                chunks.clear()
                self._unread = 0
                if self._read_paused:
                    self._read_paused = False
                    self.transport.resume_reading()
                return Ok(memoryview(data))
            if self._eof or self._lost:
                e = self._error
                return EOF if e is None else Error(Unknown(f"read: {e}"))
            # A cancelled wait leaves its future here: the next wake skips it.
            self._waiter = w = self._loop.create_future()
            await w

    async def writev(self, bufs: v1.Buffers) -> Ok[None] | Eof | Error[TCPError]:
        if self._closed:
            return EOF
        if self._reset:
            return Error(_RESET)
        t = self.transport
        if self._lost or t.is_closing():  # the connection was lost: reset or broken
            e = self._error
            return EOF if e is None else Error(Unknown(f"write: {e}"))
        if len(bufs) == 1:
            t.write(flat(bufs[0]))
        else:
            t.write(b"".join(map(flat, bufs)))
        if self._write_paused:
            await self._drain()
        if self._reset:
            return Error(_RESET)
        return EOF if self._closed else Ok(None)

    async def _drain(self) -> None:
        """Wait for the kernel to take the data, for the connection to go, or for
        :meth:`close` (which wakes us)."""
        while self._write_paused and not self._lost and not self._closed:
            self._drainer = w = self._loop.create_future()
            await w

    async def write(self, buf: v1.Buffer) -> Ok[None] | Eof | Error[TCPError]:
        return await self.writev((buf,))

    async def writev_nodelay(self, bufs: v1.Buffers) -> None:
        # The sockets carry TCP_NODELAY; wait until the kernel has it all.
        if await self.writev(bufs) == Ok(None):
            transport = self.transport
            while transport.get_write_buffer_size() and not transport.is_closing():
                await asyncio.sleep(0)

    async def write_nodelay(self, buf: v1.Buffer) -> None:
        await self.writev_nodelay((buf,))

    async def shutdown_write(self) -> None:
        """Half-close (an extension beyond FLOW): send FIN, keep reading."""
        await self._drain()
        t = self.transport
        with contextlib.suppress(OSError):
            if t.can_write_eof() and not t.is_closing():
                t.write_eof()

    def _end(self) -> None:
        self._closed = True
        self._wake_reader()  # a pending read returns (and sees EOF)
        self._wake_writer()

    async def close(self) -> None:
        """FIN after the queued data (sent in the background); waiters give EOF."""
        if self._closed:
            return
        self._end()
        t = self._transport
        if t is not None:
            # asyncio closes the socket once its buffer is sent (at once if it is empty,
            # in the next turn of the loop); the kernel sends FIN after the queued data.
            t.close()

    def abort(self) -> None:
        """Reset the connection (RST, queued data dropped); waiters give EOF."""
        self._end()
        t = self._transport
        if t is None:
            return
        sock = t.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        t.abort()


class SocketTCPv4:
    """TCP over host sockets: outgoing connections (listeners are the stack's)."""

    def __init__(self, config: SocketConfig) -> None:
        self._config = config

    @classmethod
    async def connect(cls, id: SocketConfig) -> Ok[Self] | Error[TCPError]:
        return Ok(cls(id))

    def id(self) -> SocketConfig:
        return self._config

    async def disconnect(self) -> None:
        return None

    async def create_connection(
        self, dest: tuple[IPv4Address, int]
    ) -> Ok[SocketFlow] | Error[TCPError]:
        addr, port = dest
        _check_port("port", port)
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(self._config.connect_timeout):
                _t, flow = await loop.create_connection(
                    lambda: SocketFlow(None, loop), str(addr), port
                )
        except ConnectionRefusedError:
            return Error(Refused())
        except TimeoutError:
            return Error(Timeout())
        except OSError as e:
            if e.errno == errno.ETIMEDOUT:
                return Error(Timeout())
            return Error(Unknown(f"{addr}:{port}: {e.strerror or e}"))
        return Ok(flow)

    async def input(
        self,
        src: IPv4Address,
        dst: IPv4Address,
        buf: memoryview,
        *,
        listeners: Callable[[int], v1.TCPCallback | None],
    ) -> None:
        """The kernel demultiplexes; nothing to do (as the seed says for kernel stacks)."""
        return None


# --- UDP -------------------------------------------------------------------------------


@dataclass
class UDPCounters:
    """Datagrams dropped because a listener's queue was full, and sends that failed."""

    rx_dropped: int = 0
    tx_errors: int = 0


class _UDPListener:
    """One bound port: a reader that drains the socket and a task that runs the callback."""

    def __init__(
        self,
        socks: list[socket.socket],
        callback: v1.UDPCallback[IPv4Address],
        queue: int,
        counters: UDPCounters,
    ) -> None:
        self.socks = socks
        self.callback = callback
        self._counters = counters
        self._queue: asyncio.Queue[tuple[IPv4Address, IPv4Address, int, bytes]] = asyncio.Queue(
            queue
        )
        loop = asyncio.get_running_loop()
        for s in socks:
            loop.add_reader(s.fileno(), self._readable, s)
        self._task = loop.create_task(self._run())

    def _readable(self, s: socket.socket) -> None:
        bound = IPv4Address(s.getsockname()[0])
        while True:
            try:
                data, anc, _flags, addr = s.recvmsg(65535, 64)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:  # e.g. ICMP errors reported on the socket
                continue
            dst = bound
            for level, kind, cdata in anc:
                if level == socket.IPPROTO_IP and kind == _IP_PKTINFO and len(cdata) >= 12:
                    dst = IPv4Address(_PKTINFO.unpack_from(cdata)[2])
            try:
                self._queue.put_nowait((IPv4Address(addr[0]), dst, addr[1], data))
            except asyncio.QueueFull:
                self._counters.rx_dropped += 1

    async def _run(self) -> None:
        while True:
            src, dst, sport, data = await self._queue.get()
            try:
                await self.callback(src, dst, sport, memoryview(data))
            except asyncio.CancelledError:
                raise
            except Exception:
                # A failing callback must not stop the port; the error is the app's.
                import traceback

                traceback.print_exc()

    def close(self) -> None:
        loop = asyncio.get_running_loop()
        for s in self.socks:
            loop.remove_reader(s.fileno())
            s.close()
        self._task.cancel()


class SocketUDPv4:
    """UDP over host sockets."""

    def __init__(self, config: SocketConfig) -> None:
        self._config = config
        self.counters = UDPCounters()
        self._listeners: dict[int, _UDPListener] = {}
        self._ephemeral: socket.socket | None = None

    @classmethod
    async def connect(cls, id: SocketConfig) -> Ok[Self] | Error[UDPError]:
        return Ok(cls(id))

    def id(self) -> SocketConfig:
        return self._config

    async def disconnect(self) -> None:
        for lst in self._listeners.values():
            lst.close()
        self._listeners.clear()
        if self._ephemeral is not None:
            self._ephemeral.close()
            self._ephemeral = None

    def listen(self, port: int, callback: v1.UDPCallback[IPv4Address]) -> None:
        """Bind ``callback`` to ``port`` on every configured address, replacing any earlier."""
        _check_port("port", port)
        old = self._listeners.pop(port, None)
        if old is not None:
            old.close()
        socks: list[socket.socket] = []
        try:
            for ip in self._config.ips:
                s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                socks.append(s)
                s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                s.setsockopt(socket.IPPROTO_IP, _IP_PKTINFO, 1)
                s.bind((str(ip), port))
                s.setblocking(False)
        except OSError as e:
            for s in socks:
                s.close()
            raise OSError(e.errno, f"UDP port {port}: {e.strerror}") from None
        self._listeners[port] = _UDPListener(socks, callback, self._config.udp_queue, self.counters)

    def _socket_for(self, source_port: int | None) -> tuple[socket.socket, bool]:
        if source_port is not None:
            lst = self._listeners.get(source_port)
            if lst is not None:
                return lst.socks[0], False
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.bind((str(self._config.ips[0]), source_port))
            except OSError:
                s.close()
                raise
            return s, True
        if self._ephemeral is None:
            self._ephemeral = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            self._ephemeral.setblocking(False)
        return self._ephemeral, False

    async def write(
        self,
        buf: v1.Buffer,
        *,
        dest_ip: IPv4Address,
        dest_port: int,
        source_port: int | None = None,
    ) -> None:
        _check_port("dest_port", dest_port)
        if source_port is not None:
            _check_port("source_port", source_port)
        try:
            s, temporary = self._socket_for(source_port)
        except OSError:
            self.counters.tx_errors += 1
            return
        try:
            s.sendto(buf, (str(dest_ip), dest_port))
        except OSError:  # would block, unreachable, too big: UDP is lossy, count it
            self.counters.tx_errors += 1
        finally:
            if temporary:
                s.close()

    async def input(
        self,
        src: IPv4Address,
        dst: IPv4Address,
        buf: memoryview,
        *,
        listeners: Callable[[int], v1.UDPCallback[IPv4Address] | None],
    ) -> None:
        """The kernel demultiplexes; nothing to do (as the seed says for kernel stacks)."""
        return None


# --- IPV4 ------------------------------------------------------------------------------


class SocketIPv4:
    """The IPV4 view of a socket stack: addresses only; frames are the kernel's business."""

    def __init__(self, config: SocketConfig) -> None:
        self._config = config

    @classmethod
    async def connect(cls, id: SocketConfig) -> Ok[Self] | Error[Unknown]:
        return Ok(cls(id))

    def id(self) -> SocketConfig:
        return self._config

    async def disconnect(self) -> None:
        return None

    @staticmethod
    def _frames() -> NotImplementedError:
        return NotImplementedError(
            "the socket stack has no IP frames: the host kernel builds them "
            "(use DirectStackV4 for frame-level access)"
        )

    @staticmethod
    def _config_change() -> NotImplementedError:
        return NotImplementedError(
            "the socket stack uses the host's addresses; change them with ip(8)"
        )

    async def input(
        self,
        buf: memoryview,
        *,
        tcp: v1.IPCallback[IPv4Address],
        udp: v1.IPCallback[IPv4Address],
        default: v1.IPDefaultCallback[IPv4Address],
    ) -> None:
        raise self._frames()

    async def input_arpv4(self, buf: memoryview) -> None:
        raise self._frames()

    def allocate_frame(
        self, *, dst: IPv4Address, proto: Literal["TCP", "UDP"]
    ) -> tuple[memoryview, int]:
        raise self._frames()

    async def write(self, frame: v1.Buffer, buf: v1.Buffer) -> None:
        raise self._frames()

    async def writev(self, frame: v1.Buffer, bufs: v1.Buffers) -> None:
        raise self._frames()

    def checksum(self, frame: v1.Buffer, bufs: v1.Buffers) -> int:
        raise self._frames()

    def get_source(self, *, dst: IPv4Address) -> IPv4Address:
        """The address the host's routing table picks towards ``dst``."""
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            try:
                s.connect((str(dst), 9))
                return IPv4Address(s.getsockname()[0])
            except OSError:
                return self._config.ips[0]

    async def set_ip(self, ip: IPv4Address) -> None:
        raise self._config_change()

    def get_ip(self) -> list[IPv4Address]:
        return list(self._config.ips)

    async def set_ip_netmask(self, prefix: IPv4Network) -> None:
        raise self._config_change()

    def get_ip_netmasks(self) -> list[IPv4Network]:
        return []

    async def set_ip_gateways(self, gateways: list[IPv4Address]) -> None:
        raise self._config_change()

    def get_ip_gateways(self) -> list[IPv4Address]:
        return []


# --- STACKV4 ---------------------------------------------------------------------------


@dataclass
class _TCPListener:
    servers: list[asyncio.Server] = field(default_factory=list)


class SocketStackV4:
    """A STACKV4 whose TCP and UDP are the host kernel's, through asyncio."""

    def __init__(self, config: SocketConfig) -> None:
        self._config = config
        self._udp = SocketUDPv4(config)
        self._tcp = SocketTCPv4(config)
        self._ip = SocketIPv4(config)
        self._tcp_listeners: dict[int, _TCPListener] = {}
        self._flows: set[SocketFlow] = set()
        self._handlers: set[asyncio.Task[None]] = set()
        self._conn_tasks: set[asyncio.Task[Any]] = set()  # one per accepted connection
        self._done = asyncio.Event()

    @classmethod
    async def connect(cls, id: SocketConfig | None = None) -> Ok[Self] | Error[StackError]:
        return Ok(cls(id if id is not None else SocketConfig()))

    def id(self) -> SocketConfig:
        return self._config

    def udpv4(self) -> SocketUDPv4:
        return self._udp

    def tcpv4(self) -> SocketTCPv4:
        return self._tcp

    def ipv4(self) -> SocketIPv4:
        return self._ip

    def listen_udpv4(self, *, port: int, callback: v1.UDPCallback[IPv4Address]) -> None:
        self._udp.listen(port, callback)

    def listen_tcpv4(self, *, port: int, callback: v1.TCPCallback) -> None:
        """Bind ``callback`` to TCP ``port``, replacing any earlier binding.

        The socket is bound here, so a port in use raises ``OSError`` at once.
        """
        _check_port("port", port)
        old = self._tcp_listeners.pop(port, None)
        if old is not None:
            for srv in old.servers:
                srv.close()
        socks: list[socket.socket] = []
        try:
            for ip in self._config.ips:
                # TCP_NODELAY here: the accepted sockets inherit it (without it a
                # response's second write waits for the peer's delayed ACK, ~40 ms on
                # Linux). proto 0, not IPPROTO_TCP: asyncio would set it again on every
                # accepted socket, a system call per connection.
                s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                socks.append(s)
                s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                s.bind((str(ip), port))
                s.listen(self._config.backlog)
                s.setblocking(False)
        except OSError as e:
            for s in socks:
                s.close()
            raise OSError(e.errno, f"TCP port {port}: {e.strerror}") from None
        entry = _TCPListener()
        self._tcp_listeners[port] = entry

        loop = asyncio.get_running_loop()

        async def serve(flow: SocketFlow) -> None:
            try:
                await callback(flow)
            except asyncio.CancelledError:
                flow.transport.abort()  # cut by disconnect(): nothing waits for this task
            finally:
                self._flows.discard(flow)
                await flow.close()

        def on_connected(flow: SocketFlow) -> None:
            self._flows.add(flow)
            task = loop.create_task(serve(flow))
            self._conn_tasks.add(task)
            task.add_done_callback(self._conn_tasks.discard)

        for s in socks:
            task = loop.create_task(self._serve(entry, s, lambda: SocketFlow(on_connected, loop)))
            self._handlers.add(task)
            task.add_done_callback(self._handlers.discard)

    async def _serve(
        self, entry: _TCPListener, sock: socket.socket, factory: Callable[[], SocketFlow]
    ) -> None:
        srv = await asyncio.get_running_loop().create_server(factory, sock=sock)
        entry.servers.append(srv)

    async def listen(self) -> None:
        await self._done.wait()

    def stop_accepting(self) -> None:
        """Close the listening sockets; accepted connections go on (a graceful stop)."""
        for entry in self._tcp_listeners.values():
            for srv in entry.servers:
                srv.close()

    def live_connections(self) -> int:
        """Accepted connections whose callback is still running."""
        return len(self._conn_tasks)

    async def disconnect(self) -> None:
        """Stop listening and cut the connections still served: their callbacks are
        cancelled and their sockets aborted, so a peer that stopped reading cannot hold
        the stack."""
        self.stop_accepting()
        self._tcp_listeners.clear()
        tasks = list(self._conn_tasks)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=1.0)
        for flow in list(self._flows):
            flow.transport.abort()
            await flow.close()
        await self._udp.disconnect()
        self._done.set()


_c_stack: type[v1.StackV4] = SocketStackV4
_c_udp: type[v1.UDP[IPv4Address]] = SocketUDPv4
_c_tcp: type[v1.TCP[IPv4Address]] = SocketTCPv4
_c_ip: type[v1.IPv4] = SocketIPv4
_c_flow: type[v1.TCPFlow[IPv4Address]] = SocketFlow
