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
from dataclasses import dataclass
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


_RECV_SIZE: Final = 256 * 1024  # one recv per readiness, as asyncio's transports read
_HIGH_WATER: Final = 64 * 1024  # queued unsent bytes past which a write waits ...
_LOW_WATER: Final = 16 * 1024  # ... until the kernel has taken all but this (asyncio's marks)


class SocketFlow:
    """One TCP connection over a non-blocking host socket, driven by the event loop's
    reader and writer callbacks: a read waits for the socket's next bytes, a write is one
    ``send`` when the kernel takes it all (the rest is queued, sent when the socket is
    writable, and a writer waits while the queue is above its high-water mark).

    Not an asyncio transport and protocol: for a connection that serves one request,
    their set-up and teardown (a task and a future per accept, a scheduled call for each
    of ``connection_made``, the reader and the waiter, another to close) cost about a
    tenth of the server's CPU; the plain asyncio server that ``bench/http.py`` measures
    against pays it, this flow does not.

    ``close`` and ``abort`` never wait for the peer: a read or write waiting on the flow
    gives ``EOF`` at once, and the kernel sends what is queued (then FIN) in the
    background. After a peer's reset, reads and writes give ``Error``.
    """

    def __init__(
        self, sock: socket.socket, loop: asyncio.AbstractEventLoop, dest: tuple[IPv4Address, int]
    ) -> None:
        """``sock``: connected and non-blocking; the flow owns it from here."""
        self._sock = sock
        self._fd = sock.fileno()
        # The loop, kept: asyncio.get_running_loop() is a getpid() system call in 3.11.
        self._loop = loop
        self._dest = dest
        self._chunks: list[bytes] = []  # received, unread
        self._unread = 0
        self._out = bytearray()  # written, not yet taken by the kernel
        self._reading = True  # the loop watches the socket for reading
        self._eof = False  # the peer's FIN
        self._shut = False  # our FIN asked for (shutdown_write); sent once _out is empty
        self._lost = False  # the socket is gone (reset, error, closed or aborted)
        self._error: OSError | None = None  # why it went, if not by our own close
        self._closed = False
        self._reset = False
        self._waiter: asyncio.Future[None] | None = None  # a read waiting for data
        self._drainer: asyncio.Future[None] | None = None  # a write waiting for room
        loop.add_reader(self._fd, self._readable)

    @property
    def sock(self) -> socket.socket:
        """The host socket (for options; reading or writing it directly breaks the flow)."""
        return self._sock

    # --- the loop's callbacks -----------------------------------------------------------

    def _readable(self) -> None:
        try:
            data = self._sock.recv(_RECV_SIZE)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as e:
            self._fail(e)
            return
        if data:
            self._chunks.append(data)
            self._unread += len(data)
            if self._unread > _READ_LIMIT:
                self._stop_reading()  # read() resumes once the reader took it
        else:
            self._eof = True
            self._stop_reading()  # level-triggered: the end would be reported forever
        self._wake_reader()

    def _writable(self) -> None:
        out = self._out
        try:
            n = self._sock.send(out)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as e:
            self._fail(e)
            return
        del out[:n]
        if not out:
            self._loop.remove_writer(self._fd)
            if self._closed:
                self._release()  # close() was waiting for the queue: FIN now
            elif self._shut:
                self._shutdown()
        self._wake_writer()

    def _send(self, data: bytes | memoryview) -> None:
        """``data`` to the kernel, or after what is queued; what it does not take now
        is copied (the caller may reuse its buffer) and sent when the socket is writable."""
        out = self._out
        if out:
            out += data
            return
        try:
            n = self._sock.send(data)
        except (BlockingIOError, InterruptedError):
            n = 0
        except OSError as e:
            self._fail(e)
            return
        if n < len(data):
            out += data[n:]
            self._loop.add_writer(self._fd, self._writable)

    def _stop_reading(self) -> None:
        if self._reading:
            self._reading = False
            self._loop.remove_reader(self._fd)

    def _shutdown(self) -> None:
        with contextlib.suppress(OSError):
            self._sock.shutdown(socket.SHUT_WR)

    def _release(self) -> None:
        """Stop watching the socket and close it (FIN, or RST with a zero linger or
        unread data); the flow is lost from here."""
        if self._lost:
            return
        self._lost = True
        self._stop_reading()
        if self._out:
            self._out.clear()
            self._loop.remove_writer(self._fd)
        self._sock.close()
        self._wake_reader()
        self._wake_writer()

    def _fail(self, e: OSError) -> None:
        if isinstance(e, ConnectionResetError | BrokenPipeError):
            self._reset = True
        self._error = e
        self._release()

    def _wake_reader(self) -> None:
        _wake(self._waiter)
        self._waiter = None

    def _wake_writer(self) -> None:
        _wake(self._drainer)
        self._drainer = None

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
                if not self._reading and not self._eof and not self._lost:
                    self._reading = True
                    self._loop.add_reader(self._fd, self._readable)
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
        if not self._lost and not self._shut:
            if len(bufs) == 1:
                self._send(flat(bufs[0]))
            else:
                self._send(b"".join(map(flat, bufs)))
            if len(self._out) > _HIGH_WATER:
                await self._drain(_LOW_WATER)
        if self._reset:
            return Error(_RESET)
        if self._lost and self._error is not None:  # the connection broke
            return Error(Unknown(f"write: {self._error}"))
        return EOF if self._closed or self._lost or self._shut else Ok(None)

    async def _drain(self, limit: int) -> None:
        """Wait until at most ``limit`` bytes are queued, the connection goes, or
        :meth:`close` (which wakes us)."""
        while len(self._out) > limit and not self._lost and not self._closed:
            self._drainer = w = self._loop.create_future()
            await w

    async def write(self, buf: v1.Buffer) -> Ok[None] | Eof | Error[TCPError]:
        return await self.writev((buf,))

    async def writev_nodelay(self, bufs: v1.Buffers) -> None:
        # The sockets carry TCP_NODELAY; wait until the kernel has it all.
        if await self.writev(bufs) == Ok(None):
            await self._drain(0)

    async def write_nodelay(self, buf: v1.Buffer) -> None:
        await self.writev_nodelay((buf,))

    async def shutdown_write(self) -> None:
        """Half-close (an extension beyond FLOW): send FIN after what is queued, keep
        reading; later writes give ``EOF``."""
        if self._shut or self._lost or self._closed:
            return
        self._shut = True
        if not self._out:
            self._shutdown()

    def _end(self) -> None:
        self._closed = True
        self._wake_reader()  # a pending read returns (and sees EOF)
        self._wake_writer()

    async def close(self) -> None:
        """FIN after the queued data (sent in the background); waiters give EOF."""
        if self._closed:
            return
        self._end()
        if self._out:  # _writable closes the socket once the queue is sent
            self._stop_reading()
        else:
            self._release()

    def abort(self) -> None:
        """Reset the connection (RST, queued data dropped); waiters give EOF."""
        self._end()
        if not self._lost:
            with contextlib.suppress(OSError):
                self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_0)
            self._release()

    def drop(self) -> None:
        """Close at once, queued data dropped (FIN, not RST); waiters give EOF."""
        self._end()
        self._release()


_LINGER_0: Final = struct.pack("ii", 1, 0)


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
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            sock.setblocking(False)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            async with asyncio.timeout(self._config.connect_timeout):
                await loop.sock_connect(sock, (str(addr), port))
        except BaseException as e:
            sock.close()
            if isinstance(e, ConnectionRefusedError):
                return Error(Refused())
            if isinstance(e, TimeoutError):
                return Error(Timeout())
            if isinstance(e, OSError):
                if e.errno == errno.ETIMEDOUT:
                    return Error(Timeout())
                return Error(Unknown(f"{addr}:{port}: {e.strerror or e}"))
            raise
        return Ok(SocketFlow(sock, loop, (addr, port)))

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


_ACCEPT_RETRY: Final = 1.0  # seconds without accepting after running out of descriptors
_OUT_OF_RESOURCES: Final = frozenset((errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM))


class _TCPListener:
    """One bound port: its listening sockets, each watched by the loop; every accepted
    connection becomes a :class:`SocketFlow` handed to ``on_flow``. The accepted sockets
    inherit the listener's TCP_NODELAY."""

    def __init__(
        self,
        socks: list[socket.socket],
        loop: asyncio.AbstractEventLoop,
        on_flow: Callable[[SocketFlow], None],
        backlog: int,
    ) -> None:
        self.socks = socks
        self._loop = loop
        self._on_flow = on_flow
        self._backlog = backlog
        self._open = True
        for s in socks:
            loop.add_reader(s.fileno(), self._accept, s)

    def _accept(self, lsock: socket.socket) -> None:
        loop = self._loop
        for _ in range(self._backlog):
            try:
                sock, (host, port) = lsock.accept()
            except (BlockingIOError, InterruptedError, ConnectionAbortedError):
                return
            except OSError as e:
                if e.errno in _OUT_OF_RESOURCES:  # let connections end before the next
                    loop.remove_reader(lsock.fileno())
                    loop.call_later(_ACCEPT_RETRY, self._resume, lsock)
                return  # anything else concerns that connection only
            sock.setblocking(False)
            dest = (IPv4Address(socket.inet_aton(host)), port)  # packed: no text parse
            self._on_flow(SocketFlow(sock, loop, dest))

    def _resume(self, lsock: socket.socket) -> None:
        if self._open:
            self._loop.add_reader(lsock.fileno(), self._accept, lsock)

    def close(self) -> None:
        if self._open:
            self._open = False
            for s in self.socks:
                self._loop.remove_reader(s.fileno())
                s.close()


class SocketStackV4:
    """A STACKV4 whose TCP and UDP are the host kernel's, through asyncio."""

    def __init__(self, config: SocketConfig) -> None:
        self._config = config
        self._udp = SocketUDPv4(config)
        self._tcp = SocketTCPv4(config)
        self._ip = SocketIPv4(config)
        self._tcp_listeners: dict[int, _TCPListener] = {}
        self._flows: set[SocketFlow] = set()
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
            old.close()
        socks: list[socket.socket] = []
        try:
            for ip in self._config.ips:
                # TCP_NODELAY here: the accepted sockets inherit it (without it a
                # response's second write waits for the peer's delayed ACK, ~40 ms on
                # Linux).
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

        loop = asyncio.get_running_loop()

        async def serve(flow: SocketFlow) -> None:
            try:
                await callback(flow)
            except asyncio.CancelledError:
                flow.drop()  # cut by disconnect(): nothing waits for this task
            finally:
                self._flows.discard(flow)
                await flow.close()

        def on_flow(flow: SocketFlow) -> None:
            self._flows.add(flow)
            task = loop.create_task(serve(flow))
            self._conn_tasks.add(task)
            task.add_done_callback(self._conn_tasks.discard)

        self._tcp_listeners[port] = _TCPListener(socks, loop, on_flow, self._config.backlog)

    async def listen(self) -> None:
        await self._done.wait()

    def stop_accepting(self) -> None:
        """Close the listening sockets; accepted connections go on (a graceful stop)."""
        for entry in self._tcp_listeners.values():
            entry.close()

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
            flow.drop()
        await self._udp.disconnect()
        self._done.set()


_c_stack: type[v1.StackV4] = SocketStackV4
_c_udp: type[v1.UDP[IPv4Address]] = SocketUDPv4
_c_tcp: type[v1.TCP[IPv4Address]] = SocketTCPv4
_c_ip: type[v1.IPv4] = SocketIPv4
_c_flow: type[v1.TCPFlow[IPv4Address]] = SocketFlow
