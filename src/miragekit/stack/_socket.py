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
from typing import Any, Literal, Self

from .. import v1
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


class SocketFlow:
    """One TCP connection over a host socket (asyncio streams underneath)."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader = reader
        self._writer = writer
        self._closed = False
        self._reset = False
        peer = writer.get_extra_info("peername")
        self._dest = (IPv4Address(peer[0]), int(peer[1]))

    def get_dest(self) -> tuple[IPv4Address, int]:
        return self._dest

    async def read(self) -> Ok[memoryview] | Eof | Error[TCPError]:
        if self._closed:
            return EOF
        if self._reset:
            return Error(Unknown("connection reset by peer"))
        try:
            data = await self._reader.read(1 << 18)
        except (ConnectionResetError, BrokenPipeError):
            self._reset = True
            return Error(Unknown("connection reset by peer"))
        except OSError as e:
            return Error(Unknown(f"read: {e.strerror or e}"))
        if self._closed or not data:
            return EOF
        return Ok(memoryview(data))

    async def writev(self, bufs: v1.Buffers) -> Ok[None] | Eof | Error[TCPError]:
        if self._closed or self._writer.is_closing():
            return EOF
        if self._reset:
            return Error(Unknown("connection reset by peer"))
        try:
            self._writer.writelines(bufs)
            await self._writer.drain()
        except (ConnectionResetError, BrokenPipeError):
            self._reset = True
            return Error(Unknown("connection reset by peer"))
        except OSError as e:
            return Error(Unknown(f"write: {e.strerror or e}"))
        return Ok(None)

    async def write(self, buf: v1.Buffer) -> Ok[None] | Eof | Error[TCPError]:
        return await self.writev((buf,))

    async def writev_nodelay(self, bufs: v1.Buffers) -> None:
        # asyncio sets TCP_NODELAY on its TCP transports; wait until the kernel has it all.
        if await self.writev(bufs) == Ok(None):
            transport = self._writer.transport
            while transport.get_write_buffer_size() and not transport.is_closing():
                await asyncio.sleep(0)

    async def write_nodelay(self, buf: v1.Buffer) -> None:
        await self.writev_nodelay((buf,))

    async def shutdown_write(self) -> None:
        """Half-close (an extension beyond FLOW): send FIN, keep reading."""
        with contextlib.suppress(OSError):
            await self._writer.drain()
            if self._writer.can_write_eof() and not self._writer.is_closing():
                self._writer.write_eof()

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        w = self._writer
        with contextlib.suppress(OSError):
            await w.drain()
            if w.can_write_eof() and not w.is_closing():
                w.write_eof()
        w.close()
        with contextlib.suppress(OSError):
            await w.wait_closed()


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
        try:
            async with asyncio.timeout(self._config.connect_timeout):
                reader, writer = await asyncio.open_connection(str(addr), port, limit=1 << 20)
        except ConnectionRefusedError:
            return Error(Refused())
        except TimeoutError:
            return Error(Timeout())
        except OSError as e:
            if e.errno == errno.ETIMEDOUT:
                return Error(Timeout())
            return Error(Unknown(f"{addr}:{port}: {e.strerror or e}"))
        return Ok(SocketFlow(reader, writer))

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
                # proto=IPPROTO_TCP: asyncio sets TCP_NODELAY only on sockets that say
                # so, and the accepted ones inherit it; without it a response's second
                # write waits for the peer's delayed ACK (~40 ms on Linux).
                s = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
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

        async def on_connection(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
            flow = SocketFlow(r, w)
            self._flows.add(flow)
            try:
                await callback(flow)
            finally:
                self._flows.discard(flow)
                await flow.close()

        loop = asyncio.get_running_loop()
        for s in socks:
            task = loop.create_task(self._serve(entry, s, on_connection))
            self._handlers.add(task)
            task.add_done_callback(self._handlers.discard)

    async def _serve(
        self,
        entry: _TCPListener,
        sock: socket.socket,
        handler: Callable[[asyncio.StreamReader, asyncio.StreamWriter], Any],
    ) -> None:
        srv = await asyncio.start_server(handler, sock=sock, limit=1 << 20)
        entry.servers.append(srv)

    async def listen(self) -> None:
        await self._done.wait()

    async def disconnect(self) -> None:
        for entry in self._tcp_listeners.values():
            for srv in entry.servers:
                srv.close()
        self._tcp_listeners.clear()
        for flow in list(self._flows):
            await flow.close()
        await self._udp.disconnect()
        self._done.set()


_c_stack: type[v1.StackV4] = SocketStackV4
_c_udp: type[v1.UDP[IPv4Address]] = SocketUDPv4
_c_tcp: type[v1.TCP[IPv4Address]] = SocketTCPv4
_c_ip: type[v1.IPv4] = SocketIPv4
_c_flow: type[v1.TCPFlow[IPv4Address]] = SocketFlow
