"""TCP over :class:`IPv4` or :class:`IPv6`: the thin asyncio driver around the sans-I/O
``miragekit.tcp``.

All protocol logic lives in :class:`~miragekit.tcp.TCPEndpoint` and its connections;
this module only moves segments between them and the IP layer, keeps one timer for the
whole endpoint, and turns connection events into wake-ups of the application's flows.

Why it is shaped this way (docs/design.md, the per-frame budget): received segments are fed in synchronously
from the IP layer, and the endpoint's output is collected once per batch (one
``call_soon`` however many segments arrived), so there is no task or future per segment.
Applications only get a task per accepted connection. Over plain IPv4 (no offload) the
segments come in with packed addresses (``IPv4.set_packed_handler``) and go out as whole
frames from each connection's prebuilt headers (:class:`TcpSender`), one burst per flush:
at MTU 1500 the per-segment layers were most of the CPU time.

FLOW semantics (docs/design.md): ``write`` completes when the bytes are in the send
buffer, waiting while it is full; ``close`` queues a FIN after the data and makes local
reads give ``EOF``; ``read`` gives ``Error(Unknown)`` after a reset, ``Error(Timeout)``
after retransmissions give up; ``create_connection`` gives ``Error(Refused())`` on RST
and ``Error(Timeout())`` when the SYN retries are exhausted. A listener's flow is closed
when its callback returns.

The same code runs over both families (as UDP does): the IP layer is any
:class:`TcpIPLayer`, the core handles 4- and 16-byte addresses (the pseudo-header is chosen
by their length), and only the default MSS differs (MTU - 40 over IPv4, MTU - 60 over
IPv6). Over IPv6, an ACK that advances ``snd.una`` confirms the neighbour to NDP
(RFC 4861 7.3.1), sparing it the NUD probes, and a Packet Too Big lowers the segment
size of the connections to that destination (RFC 8201).
"""

from __future__ import annotations

import asyncio
import dataclasses
import ipaddress
import logging
import struct
from collections.abc import Callable
from typing import Any, Final, Generic, Literal, Protocol, Self, cast

from .. import tcp as tcpcore
from ..buffers import flat
from ..link import CSUM_VALID
from ..result import EOF, Eof, Error, Ok, Refused, TCPError, Timeout, Unknown
from ..v1 import TCP as TCPProtocol
from ..v1 import A as A
from ..v1 import Buffer, Buffers, TCPCallback
from ..v1 import TCPFlow as TCPFlowProtocol

# residue()'s folds by their Final names: compiled code reads a Final as a constant.
from ..wire import (
    FOLD2,
    FOLD3,
    FOLD4,
    FOLD_FROM,
    FOLD_WIDE,
    HALF,
    MASK2,
    MASK3,
    MASK4,
    ipv4_sums_to_zero,
    pseudo_sum,
    residue,
)
from ..wire.tcp import DataFields, TCPRepr, cut_flags, cut_segment, plain_fields, plain_segment
from ._ethif import EthifCounters
from ._ipv4 import IPv4, _loop_rng
from ._ipv6 import IPv6

Addr = ipaddress.IPv4Address
PROTO_TCP: Final = 6
_ADDR: Final[dict[int, Callable[[bytes], Any]]] = {
    4: ipaddress.IPv4Address,
    16: ipaddress.IPv6Address,
}
_log = logging.getLogger(__name__)
_CONNECTED: Final = tcpcore.Connected
_CLOSED: Final = tcpcore.ConnectionClosed

# A whole Ethernet + IPv4 + TCP header in one pack (:class:`TcpSender`): the constant runs as
# byte strings, the fields that change per segment as numbers. "_TS": with the
# timestamp option (NOP, NOP, TS) that every segment after the handshake carries.
_TX_TS: Final = struct.Struct("!16sHH4sH12sIIHHH6sII")
_TX: Final = struct.Struct("!16sHH4sH12sIIHHH2s")
_TX_TS_PACK: Final = _TX_TS.pack  # bound once, as _RX_FIELDS
_TX_PACK: Final = _TX.pack
_URG0_NOP_NOP_TS: Final = b"\0\0\x01\x01\x08\x0a"
# _TX_TS with the runs a burst's middle frames share joined (TcpSender.burst): Ethernet
# and IPv4 up to the length, the ID, flags to protocol, the checksum, addresses and
# ports, the sequence number, ACK number to window, the checksum, urgent pointer and
# timestamps. Nine fields to pack instead of fourteen.
_TX_RUNS: Final = struct.Struct("!18sH4sH12sI8sH14s")
_ACK_WIN: Final = struct.Struct("!IHH")
_TS_TAIL: Final = struct.Struct("!6sII")
# A received frame read at once (:meth:`TCP._frame_input`): Ethernet destination and
# type; IPv4 version+IHL, TOS, total length, flags+offset, addresses; TCP ports, numbers,
# data offset, flags, window, urgent pointer, the first option word, TSval, TSecr.
_RX: Final = struct.Struct("!6s6xHBBH2xH4x4s4sHHIIBBH2xHIII")
# Bound once: compiled code calls a method of an object by name with a look-up in its
# type at every call (several hundred instructions), a bound method directly.
_RX_FIELDS: Final = _RX.unpack_from
_NOP_NOP_TS_WORD: Final = 0x0101080A
_TX_IP: Final = struct.Struct("!16sHH4sH8s")  # Ethernet + IPv4 only (TcpSender._frame_emitted)
_TS_OPT_SUM: Final = 0x0101 + 0x080A
_PORTS: Final = struct.Struct("!HH")
SOFT_GSO_MAX: Final = 65535 - 60
"""The payload bytes of one burst a connection hands over whole over IPv4 without
offload, cut into MSS-sized frames by :meth:`TcpSender.burst` (``Config.tso_max``)."""

# TCP._flush clears its handle with this, not a literal None: typed as the attribute is,
# the assignment does not narrow it to None for the rest of the method, where the run
# may set it again (code compiled with mypyc trusts such narrowing when it reads it).
_NO_FLUSH: Final[asyncio.Handle | bool | None] = None


class TcpIPLayer(Protocol[A]):
    """What TCP needs of an IP layer (:class:`IPv4` and :class:`IPv6` have it)."""

    @property
    def mtu(self) -> int: ...

    def set_handler(
        self, proto: int, handler: Callable[[A, A, memoryview, bool], None] | None
    ) -> None: ...

    def get_source(self, *, dst: A) -> A: ...

    def allocate_frame(self, *, dst: A, proto: Literal["TCP", "UDP"]) -> tuple[memoryview, int]: ...

    def send(self, frame: Any, bufs: Any) -> None: ...

    def rx_ecn(self) -> int: ...

    def set_ecn(self, frame: memoryview | bytearray, ecn: int) -> None: ...


class TCPFlow(Generic[A]):
    """One TCP connection of the direct stack, as a v1 FLOW."""

    __slots__ = (
        "_closed",
        "_conn",
        "_connected",
        "_dest",
        "_done",
        "_error",
        "_on_readable",
        "_reader",
        "_tcp",
        "_tx",
        "_una",
        "_writer",
    )

    def __init__(self, tcp: TCP[A], conn: tcpcore.Connection, dest: tuple[A, int]) -> None:
        # In the compiled object's layout order (the order of first assignment): what an
        # echo reads at its visits first, the rest after.
        self._conn = conn
        # The connection's prebuilt headers (TCP._sender), bound at its first reply sent
        # by TCP._send_writers: its 4-tuple is fixed, so no lookup a reply. The flow
        # owns it: the driver's table may drop it, the flow keeps it.
        self._tx: TcpSender | None = None
        self._tcp: TCP[A] = tcp
        self._error: TCPError | None = None
        self._closed = False  # closed by the application
        self._done = False  # the connection reached CLOSED
        self._reader: asyncio.Future[None] | None = None
        self._writer: asyncio.Future[None] | None = None
        self._on_readable: Callable[[], None] | None = None
        self._dest: tuple[A, int] = dest
        self._connected: asyncio.Future[None] | None = None
        self._una = -1  # snd.una last seen by the driver (NUD confirmation over IPv6)

    def __repr__(self) -> str:
        return f"<TCPFlow {self._dest[0]}:{self._dest[1]} {self._conn.state.name}>"

    @property
    def connection(self) -> tcpcore.Connection:
        """The sans-I/O connection underneath (for tests and diagnostics)."""
        return self._conn

    def get_dest(self) -> tuple[A, int]:
        return self._dest

    # -- events from the endpoint ---------------------------------------------------

    @staticmethod
    def _wake(fut: asyncio.Future[None] | None) -> None:
        if fut is not None and not fut.done():
            fut.set_result(None)

    def _on_event(self, ev: tcpcore.Event) -> None:
        if type(ev) is tcpcore.DataReceived:  # the usual one, ahead of the match
            fut = self._reader
            if fut is not None and not fut.done():
                fut.set_result(None)
            cb = self._on_readable
            if cb is not None:
                tcp = self._tcp
                if tcp._running:  # _call_readable, inlined for the usual case
                    tcp._readable.append(cb)
                else:
                    tcp._call_readable(cb)
            return
        t = type(ev)
        # Every accepted connection's others, ahead of the match's walk too.
        if t is _CONNECTED:
            self._wake(self._connected)
            return
        if t is _CLOSED:
            self._done = True
            self._wake_all()
            return
        match ev:
            case tcpcore.Connected():
                self._wake(self._connected)
            case tcpcore.DataReceived() | tcpcore.EndOfStream():
                self._wake(self._reader)
                if self._on_readable is not None:
                    self._tcp._call_readable(self._on_readable)
            case tcpcore.SendBufferAvailable():
                self._wake(self._writer)
            case tcpcore.ConnectionReset(refused=refused):
                if self._error is None:
                    self._error = Refused() if refused else Unknown("connection reset by peer")
                self._wake_all()
            case tcpcore.ConnectionTimedOut():
                if self._error is None:
                    self._error = Timeout()
                self._wake_all()
            case tcpcore.ConnectionClosed():
                self._done = True
                self._wake_all()

    def _wake_all(self) -> None:
        # The None tests here, not in _wake: every flow's close and end come this way,
        # usually with nothing waiting.
        if self._reader is not None:
            self._wake(self._reader)
        if self._on_readable is not None:
            self._tcp._call_readable(self._on_readable)
        if self._writer is not None:
            self._wake(self._writer)
        if self._connected is not None:
            self._wake(self._connected)

    async def _wait(self, which: str) -> None:
        fut = self._tcp._loop.create_future()
        setattr(self, which, fut)
        try:
            await fut
        finally:
            setattr(self, which, None)

    # -- FLOW -------------------------------------------------------------------------

    async def read(self) -> Ok[memoryview] | Eof | Error[TCPError]:
        while (r := self.read_now()) is None:
            if self._on_readable is not None:
                # Read by a task too: data then wakes it (_data_in), not only the callback.
                self._conn.set_reader(self._data_in)
            await self._wait("_reader")
        return r

    def read_now(self) -> Ok[memoryview] | Eof | Error[TCPError] | None:
        """What :meth:`read` would give without waiting, or None when it would wait. With
        :meth:`on_readable`, for callers that keep no task per connection (an asyncio
        transport), saving a future and a task step per read."""
        r = self.read_now_raw()
        return Ok(memoryview(r)) if isinstance(r, bytearray) else r

    def read_now_raw(self) -> bytearray | Eof | Error[TCPError] | None:
        """:meth:`read_now` with the data as the bytearray it is (the caller owns it), not
        wrapped: an asyncio transport's every read, where the ``Ok`` and the view cost
        more than the rest of the read. Data is everything the flow holds: the next call
        gives None until :meth:`on_readable`'s callback says there is more."""
        if self._closed:
            return EOF
        conn = self._conn
        # The connection's fields, not its properties (``readable``, ``poll_at() == 0.0``,
        # ``at_eof``): this runs twice per request of a keep-alive server.
        if conn._rcvbuf:
            data = conn.receive()
            if conn._ack_now or conn._ctl_out:  # the window opened enough to announce
                self._tcp._poke(self)
            return data
        if self._error is not None:
            return Error(self._error)
        if (conn._rcv_fin is not None and conn.at_eof) or self._done:
            return EOF
        return None

    def on_readable(self, callback: Callable[[], None] | None) -> None:
        """Call ``callback`` whenever :meth:`read_now` may have something new: data, the
        end, an error, a close. It is called from the event loop (after the stack's own
        work on incoming segments, or soon after a call into the flow), never from inside
        a call the application made, so it may hand data to the application at once."""
        self._on_readable = callback
        # Data is then told by the connection's call, not a DataReceived event that the
        # driver's run takes from it and hands to _on_event: the callback goes on the
        # driver's list of flows told of data (TCP._told), by the connection itself (no
        # Python call a request, no callable made per flow); _data_in once a task reads
        # the flow as well.
        self._conn.set_reader(callback, self._tcp._told)

    def _data_in(self) -> None:
        """The connection has data to read (its reader while a task waits in :meth:`read`
        on a flow with :meth:`on_readable`): the task is woken, and the callback listed
        as :meth:`on_readable`'s reader lists it (``TCP._told``)."""
        fut = self._reader
        if fut is not None and not fut.done():
            fut.set_result(None)
        self._tcp._told.append(self._on_readable)  # type: ignore[arg-type]

    async def writev(self, bufs: Buffers) -> Ok[None] | Eof | Error[TCPError]:
        for buf in bufs:
            r = await self._send(buf, nodelay=False)
            if r is not None:
                return r
        return Ok(None)

    async def write(self, buf: Buffer) -> Ok[None] | Eof | Error[TCPError]:
        r = await self._send(buf, nodelay=False)
        return Ok(None) if r is None else r

    async def _send(self, buf: Buffer, *, nodelay: bool) -> Eof | Error[TCPError] | None:
        view = flat(buf)
        while True:
            n = self.send_now(view, nodelay)
            if n < 0:
                return Error(self._error) if self._error is not None and not self._closed else EOF
            if n:
                view = view[n:]
            if not view:
                return None
            await self._wait("_writer")

    def send_now(self, buf: Buffer, nodelay: bool = False) -> int:
        """Queue what fits of ``buf`` in the send buffer without waiting: the bytes taken,
        or -1 when the flow can send no more (closed, reset). For callers that keep their
        own buffer (an asyncio transport), saving a coroutine per write; the writes that
        wait (:meth:`write`) come here too.

        Queued bytes go out at the driver's next run. Over plain IPv4 (the prebuilt
        headers) and outside the driver's run, the flow goes on the driver's list of
        writers, whose data, when it fits one segment with nothing in flight (a reply:
        :meth:`TCPEndpoint.segment_now`), goes out without the general walk; else the
        connection is woken as for any call into it. (Sending at once, in the write,
        cost more: the device's write woke the peer in the middle of our loop turn, and
        writes of one turn no longer shared a segment.)"""
        if self._closed or self._error is not None or self._done:
            return -1
        tcp = self._tcp
        if tcp._rx_ack is not None:
            tcp._end_ack()  # it came first
        try:
            n = self._conn.send(buf, nodelay=nodelay)
        except ValueError:
            return -1
        if n:
            # The driver's part, here and not in a method of its own: an asyncio
            # transport's every reply comes this way.
            if tcp._senders is None or tcp._running:
                tcp._poke(self)
            else:
                tcp._writers.append(self)
                if tcp._flush_handle is None:
                    tcp._flush_handle = tcp._loop_flush()
        return n

    async def writev_nodelay(self, bufs: Buffers) -> None:
        """Send past Nagle; return once every byte has been transmitted at least once."""
        for buf in bufs:
            if await self._send(buf, nodelay=True) is not None:
                return
        conn = self._conn
        while conn.unsent and not (self._done or self._error is not None or self._closed):
            await self._tcp._next_flush()

    async def write_nodelay(self, buf: Buffer) -> None:
        await self.writev_nodelay((buf,))

    async def shutdown_write(self) -> None:
        """Half-close: FIN after the queued data; reading goes on until the peer's FIN."""
        if self._closed or self._done:
            return
        if self._tcp._rx_ack is not None:
            self._tcp._end_ack()  # it came first
        self._conn.close()
        self._tcp._poke(self)

    async def close(self) -> None:
        """FIN after the queued data; a read or write waiting on this flow gives EOF."""
        if self._closed:
            return
        self._closed = True
        if self._tcp._rx_ack is not None:
            self._tcp._end_ack()  # it came first
        if not self._done:
            self._conn.close(discard_input=True)
            self._tcp._poke(self)
        self._wake_all()

    def abort(self) -> None:
        """Reset the connection (RST): queued data is dropped, the peer's reads and writes
        fail; on this flow, waiting and later reads and writes give EOF."""
        self._closed = True
        if self._tcp._rx_ack is not None:
            self._tcp._end_ack()  # it came first
        if not self._done:
            self._conn.abort()
            self._tcp._poke(self)
        self._wake_all()


_RUN_MIN: Final = 536  # frames with less data start no run (requests, not bulk data)
_RUN_MAX: Final = 65535  # a run is delivered when it holds this much (as GRO's 64 KiB)


class _Run:
    """Back-to-back in-order frames of one connection whose data is merged into one
    segment (:meth:`TCP._frame_input`), as Linux's GRO merges them: the same ACK, window,
    timestamps and ECN codepoint, each frame's data following the last's, all but the
    last holding ``size`` bytes. ``data`` is None while the run is only armed: the last
    frame went on alone and the next one may start a run."""

    __slots__ = ("data", "dst", "flags", "key", "next", "seq", "size", "urgent")

    def __init__(self, key: tuple[bytes, int, int, int, int, int, int, int], dst: bytes,
                 seq: int, flags: int, size: int, urgent: int) -> None:  # fmt: skip
        self.key = key  # source, ports, ACK, window, TSval, TSecr, ECN: what all share
        self.dst = dst
        self.seq = seq
        self.next = (seq + size) & 0xFFFFFFFF
        self.flags = flags
        self.size = size
        self.urgent = urgent
        self.data: bytearray | None = None


class _Ack:
    """A pure ACK of one connection held back in a receive batch (:meth:`TCP._hold_ack`):
    the next pure ACK of the same connection that acknowledges more takes its place, and
    the last is handed to the endpoint alone, as a receiver's stretch ACK would come."""

    __slots__ = ("ack", "conn", "dst", "key", "tse", "tsv", "window")

    def __init__(self, conn: tcpcore.Connection, key: tuple[bytes, int, int, int], dst: bytes,
                 ack: int, window: int, tsv: int, tse: int) -> None:  # fmt: skip
        self.conn = conn
        self.key = key  # source, ports, sequence number: what the ACKs it stands for share
        self.dst = dst
        self.ack = ack
        self.window = window
        self.tsv = tsv
        self.tse = tse


class TCP(Generic[A]):
    """v1.TCP over :class:`IPv4` or :class:`IPv6`: connections, listeners and the
    endpoint's timer."""

    def __init__(self, ip: TcpIPLayer[A], *, config: tcpcore.Config | None = None) -> None:
        # The fields in the compiled object's layout order (the order of first
        # assignment): those a host's every visit reads first, on as few cache lines as
        # they fit (at 500 hosts a host's driver is cold in the caches at its next frame).
        self._ip: TcpIPLayer[A] = ip
        self._loop = asyncio.get_running_loop()
        self._flush_handle: asyncio.Handle | bool | None = None
        """The flush that is due: a loop callback, True when the end of the device's read
        batch runs it (:meth:`_flush_soon`), None when none is."""
        self._rx_now: float | None = None  # the time of this batch's segments (till a flush)
        self._timer_at: float | None = None
        self._flush_waiters: list[asyncio.Future[None]] = []
        self._running = False  # inside _run: flows' readable callbacks wait for its end
        self._readable: list[Callable[[], None]] = []
        # The on_readable callbacks of flows told of data since the last run began (by
        # their connections' reader, TCPFlow.on_readable): called after the next run,
        # which counts as serving a flow, as the event did: the flush after it is then
        # scheduled at once, for the tasks the callbacks wake. The same list throughout
        # (the readers hold its append).
        self._told: list[Callable[[], None]] = []
        self._rx_run: _Run | None = None
        self._rx_ack: _Ack | None = None
        self._writers: list[TCPFlow[A]] = []  # flows that queued data (TCPFlow.send_now)
        # Keyed by the connection itself, not id(): id() raises an audit event, which
        # costs a Python call per lookup once a hook is installed (the simulator's).
        self._flows: dict[tcpcore.Connection, TCPFlow[A]] = {}
        self._plain_gen = -1
        self._plain: tuple[bytes, bytes, frozenset[bytes]] | None = None
        self._rx_ip: IPv4 | None = None
        self.frames_fast = 0
        """Received frames taken whole by :meth:`_frame_input` (the rest went the general
        way)."""
        self.segments_next = 0
        """Segments of :attr:`frames_fast` taken by :meth:`TCPEndpoint.handle_next` (an
        established connection's next expected segment, without a TCPRepr)."""
        # Over IPv6 the NDP neighbour cache hears of forward progress (RFC 4861 7.3.1).
        ndp = getattr(ip, "ndp", None)
        self._ndp_confirm: Callable[[bytes, float], None] | None = getattr(
            ndp, "confirm_reachable", None
        )
        self._v6 = self._ndp_confirm is not None
        # Over IPv6, Packet Too Big lowers the layer's path MTU; connections follow it.
        self._pmtu: dict[bytes, Any] | None = getattr(ip, "pmtu", None) if self._v6 else None
        self._path_mtu: Callable[[Any], int] | None = getattr(ip, "path_mtu", None)
        # IPv4 without offload: frames are built here from prebuilt headers (TcpSender),
        # and a connection's burst comes as one segment that they cut at its MSS
        # (software segmentation, as the kernel's GSO): the connection's per-segment
        # walk (window checks, send-buffer slice, segment tuple) runs once per burst.
        self._soft_gso = isinstance(ip, IPv4) and ip.offload is None
        if config is None:
            # With TSO (a TAP with offloads, either family), one segment carries up to
            # ~64 KiB; the device cuts it at the MSS. Larger buffers keep the kernel
            # sending whole 64 KiB segments (measured with bench/tap_datapath.py); they
            # cost memory only while data is queued.
            hdrs = 60 if self._v6 else 40
            tso = getattr(ip, "tso_max", 0)
            config = tcpcore.Config(
                mss=min(65535 - hdrs, ip.mtu - hdrs),
                tso_max=tso or (SOFT_GSO_MAX if self._soft_gso else 0),
                send_buffer=1024 * 1024 if tso else 256 * 1024,
                recv_buffer=4 * 1024 * 1024 if tso else 256 * 1024,
            )
        self.config = config
        self._mss_max = config.mss
        self._mtu_seen = ip.mtu
        secret = _loop_rng(self._loop).randbytes(32)
        self.endpoint = tcpcore.TCPEndpoint(config, secret=secret)
        self._callbacks: dict[int, TCPCallback] = {}
        # Each accepted flow's task, by flow (the task drops its own entry when it ends:
        # no ``current_task()`` lookup). A dict: disconnect cancels in start order.
        self._tasks: dict[TCPFlow[A], asyncio.Task[None]] = {}
        self._peers: dict[bytes, A] = {}  # packed address -> address object (accepts)
        self._timer: asyncio.TimerHandle | None = None
        # On a loop with call_at_again and call_soon_again (a SimLoop) the driver's timer
        # and flush callback are scheduled again, not made anew: the timer that fired
        # last (_spare_timer), and one flush handle (_own_flush, queued or not).
        self._again_at: Callable[..., asyncio.TimerHandle] | None = getattr(
            self._loop, "call_at_again", None
        )
        self._again_soon: Callable[..., asyncio.Handle] | None = getattr(
            self._loop, "call_soon_again", None
        )
        self._instead_at: Callable[..., asyncio.TimerHandle] | None = getattr(
            self._loop, "call_at_instead", None
        )
        self._spare_timer: asyncio.TimerHandle | None = None
        # Bound once (compiled, each ``self._on_timer`` is a new method object): handed
        # to the loop with every timer and flush scheduled again.
        self._on_timer_cb: Callable[[], None] = self._on_timer
        self._flush_cb: Callable[..., None] = self._flush
        self._own_flush: asyncio.Handle | None = None
        self._own_flush_queued = False
        self._disconnected = False
        self.internal_errors = 0
        # IPv4 without offload: each connection's frames come from a prebuilt header
        # (TcpSender), kept here by 4-tuple.
        self._senders: dict[tuple[bytes, bytes, int, int], TcpSender] | None = (
            {} if self._soft_gso else None
        )
        # IPv4 without offload: the usual frame of a connection is taken whole
        # (_frame_input), checked against what the layers would check, kept by generation.
        self.syns_fast = 0
        """Frames of :attr:`frames_fast` that were SYNs with options other than timestamps
        alone (parsed by the endpoint as the general path would)."""
        self.frames_merged = 0
        """Frames of :attr:`frames_fast` whose data joined a run (:class:`_Run`): the
        endpoint saw one segment for the run, not one per frame (counted when the run
        is handed over, at the latest by the batch's flush)."""
        self.acks_merged = 0
        """Pure ACKs of :attr:`frames_fast` that a later pure ACK of the same connection in
        the same batch stood for (:meth:`_hold_ack`): the endpoint never saw them."""
        self.sends_fast = 0
        """Writers' data sent as one segment without the general walk
        (:meth:`TCPEndpoint.segment_now`)."""
        self.acks_fast = 0
        """Pure ACKs sent as a run's only output without the general walk
        (:meth:`TCPEndpoint.ack_now`: mostly delayed ACKs)."""
        if isinstance(ip, IPv4) and ip.offload is None:
            self._rx_ip = ip
            self._eth_counters: EthifCounters = ip.id().counters
            ip.frame_input = self._frame_input
            ip.batch_done = self._batch_done
        self._headers: dict[bytes, _Prebuilt] = {}  # by destination, for the TcpSenders
        if isinstance(ip, IPv4):
            ip.set_packed_handler(PROTO_TCP, self._receive_packed)
            ip.set_error_handler(PROTO_TCP, self._icmp_error)
            ip.address_lost.append(self._address_lost)
        else:
            ip.set_handler(PROTO_TCP, self._receive)

    @classmethod
    async def connect(cls, id: TcpIPLayer[A], *, config: tcpcore.Config | None = None) -> Ok[Self]:
        return Ok(cls(id, config=config))

    def id(self) -> TcpIPLayer[A]:
        return self._ip

    @property
    def stats(self) -> dict[str, int]:
        return self.endpoint.stats

    def connections(self) -> int:
        """How many connections the endpoint still holds (any state, TIME-WAIT too)."""
        return len(self.endpoint.connections) + len(self.endpoint.time_wait)

    def flow_count(self) -> int:
        """How many flows the driver still tracks (each freed when its connection closes)."""
        return len(self._flows)

    # -- input --------------------------------------------------------------------------

    def _receive(self, src: A, dst: A, segment: memoryview, verified: bool = False) -> None:
        """The per-segment input from an IP layer that gives address objects (IPv6);
        ``verified``: the device vouched for the checksum."""
        if self._ip.mtu != self._mtu_seen:
            self._follow_mtu()
        self._receive_packed(src.packed, dst.packed, segment, verified)

    def _follow_mtu(self) -> None:
        """The IP layer's MTU changed (IPv6: a router advertisement's MTU option, RFC 4861
        6.3.4): new connections offer and send segments that fit it; active ones follow
        in :meth:`_v6_active`."""
        mtu = self._mtu_seen = self._ip.mtu
        mss = min(self._mss_max, mtu - (60 if self._v6 else 40))
        if mss != self.config.mss:
            self.config = self.endpoint.config = dataclasses.replace(self.config, mss=mss)

    def _receive_packed(
        self, src: bytes, dst: bytes, segment: memoryview, verified: bool = False
    ) -> None:
        """The per-segment input from IPv4, with packed addresses.

        The segments of one batch (until the next flush) share the time the first was
        taken at: one clock read per device wake-up instead of one per segment."""
        if self._rx_run is not None:
            self._end_run()
            self._rx_run = None
        if self._rx_ack is not None:
            self._end_ack()
        now = self._rx_now
        if now is None:
            now = self._rx_now = self._loop.time()
        self.endpoint.handle_packet(
            now, src, dst, segment, verified=verified, ecn=self._ip.rx_ecn()
        )
        if self._flush_handle is None:
            self._flush_soon()

    def _frame_input(self, frame: memoryview, rx_flags: int = 0) -> bool:
        """A whole received frame, when it is the usual one of a bulk transfer: IPv4
        without options or fragmentation from a plausible source to our address and MAC,
        TCP with timestamps as the only option, both checksums right (not verified when
        ``rx_flags`` has the device's ``CSUM_VALID``: counted in IPv4's ``rx_vouched``).
        Such a frame is counted as Ethernet and IPv4 would count it and its segment goes
        straight to the endpoint: at MTU 1500 the layer-by-layer path (ethertype dispatch,
        IPv4 input, generic TCP parse) cost about a sixth of a segment's CPU. Anything
        else, or any doubt, returns False and the frame takes the general path, which
        judges and counts it (a bad checksum is verified there again)."""
        ip = self._rx_ip
        n = len(frame)
        if ip is None or n < 66 or frame[23] != PROTO_TCP:
            return False
        if self._plain_gen != ip.generation:
            self._plain_gen = ip.generation
            self._plain = ip.plain_input()
        plain = self._plain
        if plain is None:
            return False
        (dmac, etype, vihl, tos, tl, frag, src, dst, sport, dport, seq, ack, off, flags, window,
         urgent, opt, tsv, tse) = _RX_FIELDS(frame)  # fmt: skip
        mac, ours, martians = plain
        # Timestamps as the only option; else a SYN (ECE, CWR allowed), whose options
        # the endpoint parses (:meth:`TCPEndpoint.handle_packet`, the checksum checked
        # here): one per connection, it need not climb the layers either.
        ts_only = off == 0x80 and opt == _NOP_NOP_TS_WORD
        if (
            etype != 0x0800
            or vihl != 0x45
            or (not ts_only and flags & 0x17 != 0x02)
            or frag & 0x3FFF
            or dst != ours
            or dmac != mac
            or not 52 <= tl <= n - 14
            or src[0] >= 224
            or src[0] == 127
            or src in martians
            # Both checksums: the IPv4 header's, and TCP's, whose pseudo-header the
            # addresses in the header begin; the protocol and TCP length complete it.
            # Not when the device vouches for them.
            or (
                not rx_flags & CSUM_VALID
                and not ipv4_sums_to_zero(frame[14 : 14 + tl], PROTO_TCP - 20 + tl)
            )
        ):
            return False
        if rx_flags & CSUM_VALID:
            ip.rx_vouched += 1
        ecn = tos & 3  # the ECN codepoint (RFC 3168)
        plen = tl - 52
        run = self._rx_run
        if run is not None:
            # Data that follows the run's (ACK, maybe PSH; the same connection, ACK,
            # window, timestamps and ECN) joins it; anything else ends it.
            if (
                seq == run.next
                and flags | 0x08 == 0x18
                and 0 < plen <= run.size
                and (src, sport, dport, ack, window, tsv, tse, ecn) == run.key
            ):
                data = run.data
                if data is None:
                    conn = self.endpoint.connections.get((dst, dport, src, sport))
                    if conn is not None and conn.takes_run(seq):
                        run.data = bytearray(frame[66 : 14 + tl])
                        run.seq = seq
                        run.flags = flags
                        data = run.data
                        if self._flush_handle is None:
                            self._flush_soon()
                else:
                    data += frame[66 : 14 + tl]
                    run.flags |= flags
                if data is not None:
                    # Counted with the run's other frames when it is handed over (_end_run).
                    run.next = (seq + plen) & 0xFFFFFFFF
                    if plen < run.size:
                        self._end_run()
                        self._rx_run = None
                    elif len(data) >= _RUN_MAX:
                        self._end_run()
                    return True
            self._end_run()
            self._rx_run = None
        # _count_fast(1), written out: a call would cost every pure ACK a sender reads.
        self._eth_counters.rx_frames += 1
        c = ip.counters
        c.rx_packets += 1
        c.rx_delivered += 1
        self.frames_fast += 1
        conn = None
        if plen == 0 and flags == 0x10 and not ecn:
            conn = self._hold_ack(src, dst, sport, dport, seq, ack, window, tsv, tse)
            if self._rx_ack is not None:
                return True  # held
        elif self._rx_ack is not None:
            self._end_ack()
        now = self._rx_now
        if now is None:
            now = self._rx_now = self._loop.time()
        if not ts_only:
            self.endpoint.handle_packet(now, src, dst, frame[34 : 14 + tl], verified=True, ecn=ecn)
            self.syns_fast += 1
            if self._flush_handle is None:
                self._flush_soon()
            return True
        self._deliver(now, src, dst, sport, dport, seq, ack, flags, window,
                      frame[66 : 14 + tl], tsv, tse, urgent, ecn, conn)  # fmt: skip
        # conn: a pure ACK, taken now (not held), whose flush may have nothing to do.
        if self._flush_handle is None and (conn is None or not self._ack_quiet()):
            self._flush_soon()
        if plen >= _RUN_MIN and flags | 0x08 == 0x18 and ecn != 3:
            self._rx_run = _Run((src, sport, dport, ack, window, tsv, tse, ecn), dst, seq, flags,
                             plen, urgent)  # fmt: skip
        return True

    def _count_fast(self, n: int) -> None:
        """Count ``n`` frames that :meth:`_frame_input` took, as Ethernet and IPv4 would
        have counted them: a frame that joins a run is counted with the run when the run
        is handed over (one update per run, not four per frame)."""
        ip = self._rx_ip
        assert ip is not None  # set whenever _frame_input is installed
        self._eth_counters.rx_frames += n
        c = ip.counters
        c.rx_packets += n
        c.rx_delivered += n
        self.frames_fast += n

    def _deliver(self, now: float, src: bytes, dst: bytes, sport: int, dport: int, seq: int,
                 ack: int, flags: int, window: int, payload: memoryview | bytes, tsv: int,
                 tse: int, urgent: int, ecn: int,
                 conn: tcpcore.Connection | None = None) -> None:  # fmt: skip
        """One segment of :meth:`_frame_input` (timestamps its only option) to the
        endpoint: the usual one (an ACK, maybe PSH, of an established connection's next
        data) without a TCPRepr; anything else, or any doubt, the general way. ``conn``:
        its connection, when the caller has just looked it up (a pure ACK that
        :meth:`_hold_ack` did not hold)."""
        if flags & 0x37 == 0x10 and self.endpoint.handle_next(
            now, src, dst, sport, dport, seq, ack, window, payload, (tsv, tse), conn
        ):
            self.segments_next += 1
        else:
            seg = plain_segment(
                sport, dport, seq, ack, flags, window, payload, (), (tsv, tse), urgent, ecn
            )
            self.endpoint.handle_segment(now, src, dst, seg)

    def _hold_ack(self, src: bytes, dst: bytes, sport: int, dport: int, seq: int, ack: int,
                  window: int, tsv: int, tse: int) -> tcpcore.Connection | None:  # fmt: skip
        """A pure ACK (flags ACK only, no data, not ECN-marked) of :meth:`_frame_input`:
        held back while its connection says the next may stand for it
        (:meth:`Connection.takes_ack`), or taking the place of the held one when it is
        of the same connection and sequence number and acknowledges more with a TSval
        no older. Held: :attr:`_rx_ack` is set after the call. Else nothing is held
        (any earlier held ACK handed over) and the caller hands the ACK to the endpoint,
        with the connection returned (None: none), looked up here, not again. A bulk
        sender meets one ACK every few segments, each costlier than a segment sent; the
        connection walks the last of a batch's."""
        key = (src, sport, dport, seq)
        held = self._rx_ack
        if held is not None:
            if (
                held.key == key
                and held.dst == dst
                and 0 < (ack - held.ack) & 0xFFFFFFFF < 0x80000000
                and (tsv - held.tsv) & 0xFFFFFFFF < 0x80000000
                and held.conn.takes_ack(seq, ack, tsv)
            ):
                held.ack = ack
                held.window = window
                held.tsv = tsv
                held.tse = tse
                self.acks_merged += 1
                return held.conn
            self._end_ack()
        conn = self.endpoint.connections.get((dst, dport, src, sport))
        # An ACK of everything sent is not held: no later ACK can acknowledge more and
        # stand for it, and taken now its batch may need no flush (_ack_quiet).
        if conn is None or ack == conn._snd_max & 0xFFFFFFFF or not conn.takes_ack(seq, ack, tsv):
            return conn
        self._rx_ack = _Ack(conn, key, dst, ack, window, tsv, tse)
        if self._flush_handle is None:
            self._flush_soon()
        return conn

    def _ack_quiet(self) -> bool:
        """Whether the flush that the pure ACK just handed to the endpoint would ask for
        has nothing to do: nothing to send, no news for a flow, nothing to accept, no
        earlier deadline for the loop's timer (an ACK that only moved the connection's
        timers: a request/response peer's delayed ACK). Then no flush is scheduled (a
        loop callback an echo in a simulation) and the batch's time is dropped, as that
        flush would drop it. Not in a device's read batch (TAP): its end runs the flush
        without a loop callback, and the batch's frames share one clock read."""
        ip = self._rx_ip
        if (
            (ip is not None and ip.batched)
            or self._told
            or self._writers
            or self._readable
            or self._flush_waiters
            or self._rx_ack is not None
        ):
            return False
        ep = self.endpoint
        if ep.has_work():
            return False
        t = ep.poll_at()
        at = self._timer_at
        if t is None or (at is not None and t >= at):
            self._rx_now = None
            return True
        return False

    def _end_ack(self) -> None:
        """Hand the endpoint the held pure ACK (:meth:`_hold_ack`): at the batch's flush,
        or before anything that came after it (another frame, a timer, the application
        calling into a connection)."""
        held = self._rx_ack
        assert held is not None
        self._rx_ack = None
        now = self._rx_now
        if now is None:
            now = self._rx_now = self._loop.time()
        src, sport, dport, seq = held.key
        self._deliver(now, src, held.dst, sport, dport, seq, held.ack, 0x10, held.window, b"",
                      held.tsv, held.tse, 0, 0, held.conn)  # fmt: skip

    def _batch_done(self) -> None:
        """The device's read batch is over (``IPv4.batch_done``): the flush its frames
        asked for runs now, in the reader's loop turn, instead of in the next. An
        application's reply to a request then leaves a loop turn earlier (a request costs
        one turn less: a poll of the selector and the flush's handle), and a request's
        data reaches the protocol in the turn that read it, as asyncio's own socket
        transports deliver it."""
        h = self._flush_handle
        if h is not None:
            if isinstance(h, asyncio.Handle):
                h.cancel()
                if h is self._own_flush:  # a cancelled handle is never queued again
                    self._own_flush = None
                    self._own_flush_queued = False
            self._flush()

    def _flush_soon(self) -> None:
        """The flush a received frame asks for, none being due: in a read batch whose
        end calls :meth:`_batch_done` (``IPv4.batched``, TAP) the batch's end runs it, so a
        batch costs no loop callback made and cancelled; else a loop callback."""
        ip = self._rx_ip
        if ip is not None and ip.batched and ip.batch_done == self._batch_done:
            # (Not after disconnect, which took the batch's end away from this driver.)
            self._flush_handle = True
        else:
            self._flush_handle = self._loop_flush()

    def _end_run(self) -> None:
        """Hand the endpoint the run's merged segment, if it holds any; the run stays
        armed, for the data that follows."""
        run = self._rx_run
        assert run is not None
        data = run.data
        if data is None:
            return
        run.data = None
        # Every frame but the last held ``size`` bytes: the count without a count.
        merged = (len(data) - 1) // run.size
        self.frames_merged += merged
        self._count_fast(merged + 1)
        src, sport, dport, ack, window, tsv, tse, ecn = run.key
        seg = plain_segment(
            sport, dport, run.seq, ack, run.flags, window, data, (), (tsv, tse), run.urgent, ecn
        )
        now = self._rx_now
        if now is None:
            now = self._rx_now = self._loop.time()
        self.endpoint.handle_run(now, src, run.dst, seg, run.size)

    def _address_lost(self, laddr: bytes) -> None:
        """IPv4 lost the address ``laddr``: the connections on it end now."""
        if self._rx_ack is not None:
            self._end_ack()
        if self.endpoint.address_lost(laddr):
            self._schedule_flush()

    def _icmp_error(
        self,
        icmp_type: int,
        code: int,
        local: bytes,
        remote: bytes,
        quoted: memoryview,
        mtu: int | None,
    ) -> bool:
        """An ICMP error from IPv4 about one of our segments: the endpoint checks that it
        quotes a live one, then lowers the path MTU or refuses a connection attempt."""
        if self._rx_ack is not None:
            self._end_ack()  # what came before the error first
        refused = icmp_type == 3 and code in (2, 3)  # protocol, port unreachable
        if (refused or mtu is not None) and self.endpoint.handle_icmp_error(
            local, remote, quoted, refused=refused, mtu=mtu
        ):
            self._schedule_flush()
            return True
        return False

    async def input(
        self,
        src: A,
        dst: A,
        buf: memoryview,
        *,
        listeners: Callable[[int], TCPCallback | None],
    ) -> None:
        """The seed's input: ``listeners(port)`` decides, per segment, who accepts."""
        if len(buf) >= 4:
            port = int.from_bytes(buf[2:4], "big")
            cb = listeners(port)
            if cb is None:
                self.unlisten(port)
            elif self._callbacks.get(port) is not cb:
                self.listen(port, cb)
        self._receive(src, dst, buf)

    # -- listeners and connections ------------------------------------------------------

    def listen(
        self, port: int, callback: TCPCallback, *, backlog: int = 128, fastopen: bool = False
    ) -> None:
        """Accept connections on ``port`` with ``callback``, replacing an earlier one.

        ``fastopen``: TCP Fast Open (RFC 7413): clients that have our cookie send their
        first bytes in the SYN; the flow reads them as any others."""
        self.endpoint.listen(port, backlog, fastopen=fastopen)
        self._callbacks[port] = callback

    def listening(self, port: int) -> bool:
        """Whether ``port`` has a listener."""
        return port in self._callbacks

    def unlisten(self, port: int) -> None:
        self.endpoint.unlisten(port)
        self._callbacks.pop(port, None)

    async def create_connection(
        self, dest: tuple[A, int], *, fastopen: Buffer | None = None
    ) -> Ok[TCPFlow[A]] | Error[TCPError]:
        """Open a connection to ``(addr, port)``.

        ``fastopen``: the first bytes to send, with TCP Fast Open (RFC 7413): in the SYN
        when a cookie from this server is at hand (the server may answer a round trip
        earlier), else after the handshake while the SYN asks for a cookie. Either way
        they are sent before ``create_connection`` returns, exactly once for the peer.
        """
        addr, port = dest
        if not 0 < port < 65536:
            raise ValueError(f"port must be in 1..65535, got {port}")
        if self._disconnected:
            return Error(Unknown("the TCP layer is disconnected"))
        if self._ip.mtu != self._mtu_seen:
            self._follow_mtu()
        src = self._ip.get_source(dst=addr)
        conn = self.endpoint.connect(
            self._loop.time(), src.packed, addr.packed, port, fastopen=fastopen is not None
        )
        first = flat(fastopen) if fastopen is not None else memoryview(b"")
        queued = conn.send(first) if first else 0  # what the SYN may carry goes in first
        flow: TCPFlow[A] = TCPFlow(self, conn, (addr, port))
        self._flows[conn] = flow
        flow._connected = fut = self._loop.create_future()
        self._schedule_flush()
        try:
            await fut
        except asyncio.CancelledError:
            # A cancelled connect aborts the attempt: no SYN retries nobody owns.
            self._flows.pop(conn, None)
            conn.abort()
            self.endpoint.wake(conn)
            self._schedule_flush()
            raise
        flow._connected = None  # done: a resolved future would stay with every flow
        if conn.state in (tcpcore.State.SYN_SENT, tcpcore.State.CLOSED) or flow._error:
            err = flow._error or Timeout()
            self._flows.pop(conn, None)
            return Error(err)
        self._learnt_pmtu(conn, addr)  # after the handshake, which sets the MSS
        if queued < len(first):
            r = await flow.write(first[queued:])
            if not isinstance(r, Ok):
                return Error(flow._error or Unknown("the connection closed while sending"))
        return Ok(flow)

    # -- output and timers ----------------------------------------------------------------

    def _poke(self, flow: TCPFlow[A]) -> None:
        """The application called into ``flow``'s connection: collect its output soon."""
        if self._rx_run is not None:
            self._end_run()
        if self._rx_ack is not None:
            self._end_ack()
        conn = flow._conn
        self.endpoint.wake(conn)
        for ev in conn.take_events():
            flow._on_event(ev)
        if flow._done:
            self._flows.pop(conn, None)
        if self._flush_handle is None:  # _schedule_flush, inlined: every close comes here
            self._flush_handle = self._loop_flush()

    def _loop_flush(self) -> asyncio.Handle:
        """A loop callback that runs :meth:`_flush`: the driver's own handle queued again
        when it is in no queue (it ran), else a new one (the own one's first, or one
        beside it: a flush ran early, from the timer, while it waited). Its context is
        a copy of the caller's either way, as ``call_soon`` gives: tasks a run starts
        (accepted connections) belong to whoever asked for the flush, as before."""
        again = self._again_soon
        if again is None or self._own_flush_queued:
            return self._loop.call_soon(self._flush)
        h = self._own_flush = again(self._own_flush, self._flush_cb, (True,))
        self._own_flush_queued = True
        return h

    def _schedule_flush(self) -> None:
        if self._flush_handle is None:
            self._flush_handle = self._loop_flush()

    async def _next_flush(self) -> None:
        """Wait until the driver next hands output to the IP layer."""
        fut = self._loop.create_future()
        self._flush_waiters.append(fut)
        await fut

    def _call_readable(self, callback: Callable[[], None]) -> None:
        """A flow's ``on_readable`` callback: after the driver's run when the event came
        from it, else on the loop's next turn (the application is inside a call)."""
        if self._running:
            self._readable.append(callback)
        else:
            self._loop.call_soon(callback)

    def _flush(self, own: bool = False) -> None:
        """Run the driver (``own``: called by the driver's own handle, which is then in
        no queue and may be queued again)."""
        if own:
            self._own_flush_queued = False
        if self._rx_run is not None:
            self._end_run()
        if self._rx_ack is not None:
            self._end_ack()
        self._flush_handle = _NO_FLUSH  # not None: see _NO_FLUSH
        self._rx_now = None
        self._running = True
        served = False
        try:
            served = self._run()
        except Exception:
            # A bug of ours, not the peer's: count it, keep the stack running.
            self.internal_errors += 1
            _log.exception("TCP driver failed")
        finally:
            self._running = False
        if self._readable:
            callbacks, self._readable = self._readable, []
            for cb in callbacks:
                cb()
        if self._flush_waiters:  # rare (writes waiting for their flush): no list a run
            waiters, self._flush_waiters = self._flush_waiters, []
            for w in waiters:
                if not w.done():
                    w.set_result(None)
        if served and self._flush_handle is None:
            # The tasks this run woke (or started) take their turn next, in the order
            # they were woken; a flush scheduled now runs right after them, in the same
            # loop turn, and sends what they wrote (a reply, a FIN) without waiting a
            # turn more for the flush their writes would schedule.
            self._flush_handle = self._loop_flush()

    def _on_timer(self) -> None:
        self._spare_timer = self._timer  # the handle running this: in no queue now
        self._timer = None
        self._timer_at = None
        if self._rx_run is not None:
            self._end_run()
        if self._rx_ack is not None:
            self._end_ack()
        ep = self.endpoint
        if (
            not ep.handle_timer(self._loop.time())
            and self._flush_handle is None
            and not self._flush_waiters
            and not self._writers
            and not self._told
            and not self._readable
            and not ep.has_work()
        ):
            # No connection's timer was due after all (its deadline moved later: a
            # delayed ACK a reply carried, a retransmission the ACK cancelled; it is
            # gone) and nothing waits for a run, which would only arm the timer again:
            # arm it here, as that run would, for the same deadline.
            self._rx_now = None
            self._arm_timer(ep.poll_at())
            return
        self._flush()

    def _run(self) -> bool:
        """Send what is due and hand the connections' events to their flows; True when
        some flow was given events or a connection was accepted (a task may run now)."""
        ep = self.endpoint
        told = self._told
        served = bool(told)  # data told to a flow (TCPFlow.on_readable): as its event would
        if told:
            self._readable += told  # called after this run (_flush)
            told.clear()
        if not self._writers and not ep.has_work():
            # Nothing to send, deliver or accept (the re-flush after tasks that wrote
            # nothing, an ACK that changed only the timers): only the timer, as below.
            if not served:
                self._arm_timer(ep.poll_at())
            return served
        for _ in range(8):
            now = self._loop.time()
            if self._writers:
                self._send_writers(now)  # before anything else now due
            if self._senders is not None and (acked := ep.ack_now(now)) is not None:
                self._send_ack(now, *acked)
            segs = ep.segments_to_send(now)
            if segs:
                self._send(segs, now)
            flows = self._flows
            for conn in ep.take_active():
                flow = flows.get(conn)
                # Tested first: a flow read through on_readable is told of data without
                # an event (TCPFlow._data_in), so a request usually leaves none.
                if conn._events:
                    evs = conn.take_events()
                    if flow is not None:
                        served = True
                        for ev in evs:
                            flow._on_event(ev)
                if self._v6 and flow is not None:
                    self._v6_active(flow)
                if flow is not None and flow._done:
                    del flows[conn]
            if ep.accept_ready:
                ep.accept_ready = False
                for port, cb in self._callbacks.items():
                    while (new := ep.accept(port)) is not None:
                        self._start(new, cb)
                        served = True
            t = ep.poll_at()
            if t != 0.0:
                break
        if not served:
            # Served: a run follows in this loop turn (see _flush) and arms the timer
            # then, for the deadlines the woken tasks leave (a reply's), once: a
            # request's run and its reply's arm it once between them.
            self._arm_timer(t)
        return served

    def _send_writers(self, now: float) -> None:
        """Send the segment of each writer (:meth:`TCPFlow.send_now`) whose data goes as
        one segment now, as a frame from its prebuilt header (writers are listed only
        over plain IPv4): a reply goes from the connection to the device without the
        list of segments and the walk over it that :meth:`_send` makes for the general
        way's output. The others' connections are woken for the general way."""
        writers = self._writers
        self._writers = []
        ep = self.endpoint
        ip = cast(IPv4, self._ip)
        frames: list[bytes] = []
        sent = 0
        for flow in writers:
            conn = flow._conn
            fields = ep.segment_now(conn, now)
            if fields is None:
                ep.wake(conn)
                continue
            sent += 1
            tx = flow._tx
            if tx is None:
                key = ep.key_of(conn)
                assert key is not None  # segment_now gave fields: the table holds it
                tx = flow._tx = self._sender(key[0], key[2], conn.local_port, conn.remote_port)
            seq, ack, flags, window, payload, ts = fields
            frame = tx.data_frame(seq, ack, flags, window, payload, ts, 0, now)
            if frame is None:  # as _send does: what the prebuilt header does not cover
                if frames:
                    ip.send_frames(frames)
                    frames = []
                key = ep.key_of(conn)
                assert key is not None
                self._emit(key[0], key[2], conn.segment_of(fields))
            else:
                frames.append(frame)
        if frames:
            ip.send_frames(frames)
        self.sends_fast += sent

    def _send_ack(
        self,
        now: float,
        conn: tcpcore.Connection,
        laddr: bytes,
        raddr: bytes,
        fields: DataFields,
    ) -> None:
        """A connection's pure ACK, its only output (:meth:`TCPEndpoint.ack_now`: a
        delayed ACK's timer fired), as a frame from its prebuilt header: no segment
        tuple and no walk over a list of them (:meth:`_send`)."""
        flow = self._flows.get(conn)
        tx = None if flow is None else flow._tx
        if tx is None:
            tx = self._sender(laddr, raddr, conn.local_port, conn.remote_port)
            if flow is not None:
                flow._tx = tx
        seq, ack, flags, window, payload, ts = fields
        frame = tx.data_frame(seq, ack, flags, window, payload, ts, 0, now)
        if frame is None:  # what the prebuilt header does not cover, as _send does
            self._emit(laddr, raddr, conn.segment_of(fields))
        else:
            cast(IPv4, self._ip).send_frames([frame])
        self.acks_fast += 1

    def _sender(self, laddr: bytes, raddr: bytes, sport: int, dport: int) -> TcpSender:
        """The prebuilt headers of a connection (over plain IPv4), made when missing.

        One per 4-tuple: a flow owns its connection's (``TCPFlow._tx``, bound at its
        first reply); the table here finds them by 4-tuple for the general way and
        keeps those of connections without a flow (handshakes, resets). Bounded by
        clearing it: a flow keeps its sender through a clear, and a miss finds it
        again through the flow, so no flow is unbound and no second sender (with its
        own IPv4 ID count) is made for a connection that has one."""
        senders = self._senders
        assert senders is not None
        key = (laddr, raddr, sport, dport)
        sender = senders.get(key)
        if sender is None:
            if len(senders) >= 4096:
                senders.clear()  # bounded; a dropped header is found or rebuilt when needed
            conn = self.endpoint.connections.get((laddr, sport, raddr, dport))
            flow = None if conn is None else self._flows.get(conn)
            sender = None if flow is None else flow._tx
            if sender is None:
                sender = TcpSender(cast(IPv4, self._ip), *key, self._headers)
                if flow is not None:
                    flow._tx = sender
            senders[key] = sender
        return sender

    def _v6_active(self, flow: TCPFlow[A]) -> None:
        """IPv6 upkeep of an active connection: an ACK of new data confirms the neighbour
        (RFC 4861 7.3.1); a smaller path MTU (RFC 8201) lowers the segment size."""
        conn = flow._conn
        addr = flow._dest[0]
        assert isinstance(addr, ipaddress.IPv6Address)
        una = conn.snd_una
        if una != flow._una:
            if flow._una >= 0 and self._ndp_confirm is not None:
                self._ndp_confirm(addr.packed, self._loop.time())
            flow._una = una
        if self._path_mtu is not None and (
            (self._pmtu and addr.packed in self._pmtu) or conn.mss + 60 > self._mtu_seen
        ):
            conn.set_path_mtu(self._path_mtu(addr), ipv6=True)

    def _arm_timer(self, t: float | None) -> None:
        """The loop's timer for the endpoint's next deadline ``t`` (its ``poll_at()``,
        taken by the caller: the run's last look at it)."""
        if t == 0.0:
            self._schedule_flush()
            return
        self.endpoint.armed_unseen = None
        at = self._timer_at
        if at is not None and (t is None or t >= at):
            # The armed timer fires no later than needed: keep it (an early wake-up finds
            # nothing due and re-arms). With many short connections the earliest deadline
            # moves later at almost every flush; moving the loop's timer each time cost
            # a cancel and a new handle per flush.
            return
        if self._timer is not None:
            instead = self._instead_at
            if t is not None and instead is not None:
                # Cancelled and made anew, in one: the same timer, moved earlier.
                self._timer_at = t
                self._timer = instead(self._timer, t, self._on_timer_cb)
                return
            self._timer.cancel()
            self._timer = None
        self._timer_at = t
        if t is not None:
            # The timer that fired last, scheduled again when the loop can; its context
            # is a copy of the caller's, as a new timer's would be.
            again = self._again_at
            if again is None:
                self._timer = self._loop.call_at(t, self._on_timer)
            else:
                self._timer = again(self._spare_timer, t, self._on_timer_cb)
                self._spare_timer = None

    def _send(self, segs: list[tuple[bytes, bytes, TCPRepr]], now: float) -> None:
        """Hand the endpoint's output to the IP layer: over plain IPv4 as whole frames
        from each connection's prebuilt header, in one burst (order kept: a segment the
        fast path does not cover flushes the burst before it goes the general way)."""
        senders = self._senders
        if senders is None:
            emit = self._emit
            for laddr, raddr, seg in segs:
                emit(laddr, raddr, seg)
            return
        ip = cast(IPv4, self._ip)
        # The burst's frames as headers and payloads apart (a ring-mapped device copies
        # both into its slot: no joined frame is made first); a whole frame's payload is b"".
        frames: list[bytes] = []
        bodies: list[Buffer] = []
        key: tuple[bytes, bytes, int, int] | None = None
        sender: TcpSender | None = None
        mss = 0
        for laddr, raddr, seg in segs:
            if (
                key is None
                or seg.src_port != key[2]
                or seg.dst_port != key[3]
                or raddr is not key[1]
                or laddr is not key[0]
            ):
                # Another connection than the segment before (bursts are per connection).
                key = (laddr, raddr, seg.src_port, seg.dst_port)
                sender = self._sender(*key)
                mss = 0
            assert sender is not None
            if len(seg.payload) > 1024 and self._soft_gso:
                # Maybe a burst of the connection's software segmentation: cut at its MSS.
                if not mss:
                    conn = self.endpoint.connections.get((laddr, seg.src_port, raddr, seg.dst_port))
                    mss = conn.mss if conn is not None else 536
                if len(seg.payload) > mss:
                    if not sender.burst(seg, now, mss, frames, bodies):
                        if frames:
                            ip.send_split(frames, bodies)
                            frames = []
                            bodies = []
                        for piece in cut_segment(seg, mss):
                            self._emit(laddr, raddr, piece)
                    continue
            frame = sender.frame(seg, now)
            if frame is None:
                if frames:
                    ip.send_split(frames, bodies)
                    frames = []
                    bodies = []
                self._emit(laddr, raddr, seg)
            else:
                frames.append(frame)
                bodies.append(b"")
        if frames:
            ip.send_split(frames, bodies)

    def _emit(self, laddr: bytes, raddr: bytes, seg: TCPRepr) -> None:
        ip = self._ip
        if getattr(ip, "offload", None) is not None:
            self._emit_offload(laddr, raddr, seg)
            return
        if self._v6:
            self._emit_generic(laddr, raddr, seg)
            return
        ip4 = cast(IPv4, ip)
        n = seg.buffer_len()
        frame = ip4.allocate_header(raddr, PROTO_TCP, 34 + n, laddr, df=True)  # RFC 1191
        seg.emit(frame[34:], laddr, raddr)
        if seg.ecn:
            ip4.set_ecn(frame, seg.ecn)
        ip4.send_frame(frame)

    def _emit_generic(self, laddr: bytes, raddr: bytes, seg: TCPRepr) -> None:
        """Any IP layer (IPv6 here): its frame, the segment emitted after the headers."""
        ip = self._ip
        frame, hl = ip.allocate_frame(dst=_ADDR[len(raddr)](raddr), proto="TCP")
        n = seg.buffer_len()
        if hl + n > len(frame):
            big = bytearray(hl + n)
            big[:hl] = frame[:hl]
            frame = memoryview(big)
        if self._v6 and frame[hl - 32 : hl - 16] != laddr:
            # The connection's own address, not the one source selection would pick now
            # (the peer may have reached us at another of our addresses).
            frame[hl - 32 : hl - 16] = laddr
        seg.emit(frame[hl : hl + n], laddr, raddr)
        if seg.ecn:
            ip.set_ecn(frame, seg.ecn)
        ip.send(frame[: hl + n], ())

    def _emit_offload(self, laddr: bytes, raddr: bytes, seg: TCPRepr) -> None:
        """The headers into a small frame, the payload as is (no copy); the device
        completes the checksum and, above the MTU, cuts the segment at the MSS. Either
        family: only the IP header differs (IPv6's layer keeps to the path MTU)."""
        ip = cast(IPv4 | IPv6, self._ip)
        payload = seg.payload
        plen = len(payload)
        head = seg._replace(payload=b"") if plen else seg
        n = head.buffer_len()
        if isinstance(ip, IPv4):
            hl = 34
            frame = ip.allocate_header(raddr, PROTO_TCP, 34 + n, laddr, df=True)  # RFC 1191
        else:
            hl = 54
            frame = ip.allocate_header(raddr, PROTO_TCP, 54 + n, laddr)
        head.emit(frame[hl:])
        if seg.ecn:
            ip.set_ecn(frame, seg.ecn)
        frame[hl + 16 : hl + 18] = pseudo_sum(laddr, raddr, PROTO_TCP, n + plen).to_bytes(2, "big")
        gso = 0
        if plen:  # the IP layer drops it when the packet fits its (path) MTU
            gso = ip.mtu - (hl - 14) - n
            conn = self.endpoint.connections.get((laddr, seg.src_port, raddr, seg.dst_port))
            if conn is not None and conn.mss < gso:
                gso = conn.mss
        ip.send_offload(frame, payload, gso)

    def _learnt_pmtu(self, conn: tcpcore.Connection, addr: A) -> None:
        """A new connection starts from the path MTU IPv4 learnt for its peer (RFC 1191)."""
        ip = self._ip
        if isinstance(ip, IPv4) and len(ip.pmtu) and isinstance(addr, Addr):
            conn.set_path_mtu(ip.path_mtu(addr))

    def _start(self, conn: tcpcore.Connection, cb: TCPCallback) -> None:
        key = self.endpoint.key_of(conn)
        alen = 16 if self._v6 else 4
        raddr = key[2] if key is not None else bytes(alen)
        port = key[3] if key is not None else conn.remote_port
        # Address objects are immutable: one per peer serves all its connections.
        peers = self._peers
        addr = peers.get(raddr)
        if addr is None:
            if len(peers) >= 1024:
                peers.clear()
            addr = peers[raddr] = cast(A, _ADDR[len(raddr)](raddr))
        self._learnt_pmtu(conn, addr)
        flow: TCPFlow[A] = TCPFlow(self, conn, (addr, port))
        self._flows[conn] = flow
        for ev in conn.take_events():
            flow._on_event(ev)
        # The task removes itself from _tasks when it ends (see _serve): cheaper than a
        # done callback, which costs one more loop callback per connection. Without a
        # task factory, the Task directly: loop.create_task would only add three Python
        # calls (its own, a debug test, naming) to what it does then.
        loop = self._loop
        if loop.get_task_factory() is None:
            self._tasks[flow] = asyncio.Task(self._serve(cb, flow), loop=loop)
        else:
            self._tasks[flow] = loop.create_task(self._serve(cb, flow))

    async def _serve(self, cb: TCPCallback, flow: TCPFlow[A]) -> None:
        try:
            await cb(flow)
        except asyncio.CancelledError:
            raise
        except Exception:
            _log.exception("TCP listener callback failed")
        finally:
            self._tasks.pop(flow, None)
            await flow.close()

    def stop_accepting(self) -> None:
        """Unlisten every port; accepted connections go on."""
        for port in list(self._callbacks):
            self.unlisten(port)

    def live_connections(self) -> int:
        """Accepted connections whose callback is still running."""
        return len(self._tasks)

    async def disconnect(self) -> None:
        """Close every connection (FIN after queued data) and stop accepting."""
        self._disconnected = True
        if self._rx_ip is not None and self._rx_ip.frame_input == self._frame_input:
            self._rx_ip.frame_input = None
            self._rx_ip.batch_done = None
        for port in list(self._callbacks):
            self.unlisten(port)
        for task in list(self._tasks.values()):
            task.cancel()
        for flow in list(self._flows.values()):
            await flow.close()
        self._flush()


class TcpSender:
    """The Ethernet, IPv4 and TCP headers of one connection, prebuilt.

    Why: at MTU 1500 the per-segment budget is a few microseconds, and building each
    frame layer by layer (TCP header and options, then IPv4 header, route, ARP lookup,
    Ethernet header) spent most of it. Here the constant parts (MACs, addresses, ports,
    TTL, from :meth:`IPv4.prebuilt_header`) are byte strings and the constant parts of
    both checksums are sums kept from the last refresh, so a segment is one
    ``struct.pack`` of the header, one pass over the payload for its checksum, and one
    concatenation.

    The header carries DF (path-MTU discovery, RFC 1191) and the connection counts its
    own IPv4 IDs from :meth:`IPv4.next_ident` (per destination, hashed: no global counter
    to observe). The header is kept until the next hop's ARP entry expires or the layer's
    :attr:`IPv4.generation` changes (ARP cache, address, netmask, gateways, TTL), then
    built again. :meth:`frame` gives ``None`` for what it does not cover (options other
    than timestamps, urgent data, above the MTU, no route, next hop not resolved): the
    caller then takes the general path, which handles all that.
    """

    __slots__ = (
        "_addrs",
        "_dport",
        "_eth_ip",
        "_eth_ip_ect",
        "_gen",
        "_headers",
        "_ident",
        "_ip",
        "_ip_mid",
        "_ip_sum",
        "_laddr",
        "_ports",
        "_raddr",
        "_sport",
        "_tcp_sum",
        "_until",
    )

    def __init__(
        self,
        ip: IPv4,
        laddr: bytes,
        raddr: bytes,
        sport: int,
        dport: int,
        headers: dict[bytes, _Prebuilt] | None = None,
    ) -> None:
        if len(laddr) != 4 or len(raddr) != 4:
            raise ValueError("laddr/raddr: need two 4-byte (IPv4) addresses")
        # In the compiled object's layout order (the order of first assignment): what
        # every frame reads first, on as few cache lines as may be; a refresh's rest after.
        self._ident = ip.next_ident(raddr)  # then counted here (DF: RFC 6864 4.1)
        self._gen = -1  # never current: the first frame() refreshes
        self._until = 0.0
        self._ip = ip
        self._eth_ip = b""
        self._ip_mid = b""
        self._ip_sum = 0
        self._tcp_sum = 0
        self._ports = b""
        self._eth_ip_ect = b""
        self._addrs = b""
        self._laddr = laddr
        self._raddr = raddr
        self._sport = sport
        self._dport = dport
        self._headers = headers

    def _refresh(self, now: float) -> bool:
        """Route and resolve the next hop again; False when either fails. The headers to
        one destination are shared by its connections (``headers``, kept by the driver):
        a new connection to a known peer costs no route or ARP lookup."""
        ip = self._ip
        cache = self._headers
        pre = None if cache is None else cache.get(self._raddr)
        if pre is None or pre[0] != ip.generation or now >= pre[1]:
            pre = _prebuild(ip, self._raddr, now)
            if pre is None:
                return False
            if cache is not None:
                if len(cache) >= 1024:
                    cache.clear()  # bounded; a dropped entry is built again when needed
                cache[self._raddr] = pre
        (self._gen, self._until, self._eth_ip, self._eth_ip_ect, self._ip_mid, self._addrs,
         self._ip_sum, asum) = pre  # fmt: skip
        self._ports = self._addrs + _PORTS.pack(self._sport, self._dport)
        self._tcp_sum = asum + self._sport + self._dport
        return True

    def frame(self, seg: TCPRepr, now: float) -> bytes | None:
        """The whole frame for ``seg`` (IP ident taken; :meth:`IPv4.send_frames` counts
        it), or ``None`` when the general path must send it."""
        fields = plain_fields(seg)
        if fields is not None:
            seq, ack, flags, window, payload, ts, ecn = fields
            return self.data_frame(seq, ack, flags, window, payload, ts, ecn, now)
        ip = self._ip
        if (self._gen != ip.generation or now >= self._until) and not self._refresh(now):
            return None
        return self._frame_handshake(seg) or self._frame_emitted(seg)

    def data_frame(
        self,
        seq: int,
        ack: int,
        flags: int,
        window: int,
        payload: Buffer,
        ts: tuple[int, int] | None,
        ecn: int,
        now: float,
    ) -> bytes | None:
        """The whole frame of a segment with no option but timestamps and no urgent
        data, from its fields (:meth:`Connection.data_now` gives a reply's, so no
        :class:`TCPRepr` is made for it; :meth:`frame` gives any other's), or ``None``
        when the general path must send it (above the MTU, ECN other than ECT(0), no
        route or next hop)."""
        ip = self._ip
        if (self._gen != ip.generation or now >= self._until) and not self._refresh(now):
            return None
        n = len(payload)
        if (ecn and ecn != 2) or (52 if ts else 40) + n > ip.mtu:
            return None  # only ECT(0) is prebuilt
        hdr = self._data_head(seq, ack, flags, window, payload, ts, ecn)
        return hdr + payload if n else hdr

    def burst(
        self, seg: TCPRepr, now: float, size: int, heads: list[bytes], bodies: list[Buffer]
    ) -> bool:
        """The frames of ``seg``, whose payload is longer than ``size``, cut into segments
        of ``size`` bytes as :func:`~miragekit.wire.tcp.cut_segment` cuts it (software
        segmentation: the connection emits one segment per burst, as for a device with
        TSO): each frame's headers appended to ``heads``, its payload (a view of
        ``seg``'s) to ``bodies``, joined only by a device that needs them joined
        (:meth:`IPv4.send_split`); False, and nothing appended, when the general path
        must send it (it then cuts the segment itself)."""
        ip = self._ip
        if (self._gen != ip.generation or now >= self._until) and not self._refresh(now):
            return False
        fields = plain_fields(seg)
        if fields is None:
            return False
        seq, ack, flags, window, payload, ts, ecn = fields
        if (ecn and ecn != 2) or (52 if ts else 40) + size > ip.mtu:
            return False
        view = memoryview(payload)
        n = len(view)
        first, middle, last = cut_flags(flags)
        head = self._data_head
        append, keep = heads.append, bodies.append
        piece = view[:size]
        append(head(seq, ack, first, window, piece, ts, ecn))
        keep(piece)
        off = size
        end = n - size
        if ts is not None and off < end:
            # The middle frames (all but two of a burst) differ only in sequence number,
            # IPv4 ID and payload: _data_head's steps with its per-segment constants
            # (lengths, the sums of the fields that stay, the Ethernet and IPv4 run)
            # taken once, and no call a frame. tests/test_tcp_soft_gso.py checks every
            # frame against _data_head's (test_burst_is_the_frames_of_the_cut_segments).
            tl = 52 + size
            offflags = 0x8000 | middle  # 32-byte header: data offset 8 words
            tsv, tse = ts
            tcp_base = self._tcp_sum + 32 + size + ack + offflags + window + _TS_OPT_SUM + tsv + tse
            ip_base = self._ip_sum + tl + ecn
            # The fields that stay as byte runs (fewer to pack: _TX_TS's layout, joined).
            lead = (self._eth_ip_ect if ecn else self._eth_ip) + tl.to_bytes(2, "big")
            mid, ports, pack = self._ip_mid, self._ports, _TX_RUNS.pack
            ack_win = _ACK_WIN.pack(ack, offflags, window)
            tail = _TS_TAIL.pack(_URG0_NOP_NOP_TS, tsv, tse)
            ident = self._ident
            # residue() of each piece, its steps written out when the MSS is in the range
            # of its folds, the first fold made by reading the halves apart (a call, its
            # length check and the fold are ~0.1-0.15 µs of a frame's ~1.9); the test
            # above compares every frame with _data_head's, which calls residue().
            fold = FOLD_FROM < size < FOLD_WIDE
            while off < end:
                piece = view[off : off + size]
                ident = (ident + 1) & 0xFFFF
                r = (ip_base + ident) % 0xFFFF
                s = (seq + off) & 0xFFFFFFFF
                if fold:
                    v = int.from_bytes(piece[:HALF], "little") + int.from_bytes(
                        piece[HALF:], "little"
                    )
                    v = (v >> FOLD2) + (v & MASK2)
                    v = (v >> FOLD3) + (v & MASK3)
                    v = (v >> FOLD4) + (v & MASK4)
                    c = ((v % 0xFFFF << 8) + tcp_base + s) % 0xFFFF
                else:
                    c = (residue(piece) + tcp_base + s) % 0xFFFF
                append(
                    pack(lead, ident, mid, 0xFFFF - r if r else 0, ports, s, ack_win,
                         0xFFFF - c if c else 0, tail)
                )  # fmt: skip
                keep(piece)
                off += size
            self._ident = ident
        while off < end:
            piece = view[off : off + size]
            append(head((seq + off) & 0xFFFFFFFF, ack, middle, window, piece, ts, ecn))
            keep(piece)
            off += size
        piece = view[off:]
        append(head((seq + off) & 0xFFFFFFFF, ack, last, window, piece, ts, ecn))
        keep(piece)
        return True

    def _data_head(
        self,
        seq: int,
        ack: int,
        flags: int,
        window: int,
        payload: Buffer,
        ts: tuple[int, int] | None,
        ecn: int,
    ) -> bytes:
        """The headers (Ethernet, IPv4, TCP) of a segment that :meth:`frame` covers
        (checked there: it fits the MTU; ECN is none or ECT(0)), the payload only summed."""
        plen = len(payload)
        hl = 20 if ts is None else 32
        tcp_len = hl + plen
        tl = 20 + tcp_len
        self._ident = ident = (self._ident + 1) & 0xFFFF
        # ECN in the TOS byte: the low byte of the checksum's first word (only ECT(0) here).
        r = (self._ip_sum + tl + ident + ecn) % 0xFFFF
        ip_csum = 0xFFFF - r if r else 0
        # The payload's sum: one big integer reduced at once (wire/_checksum); an odd
        # length is padded with a zero byte. Never all zero: the protocol is in the sum.
        v = residue(payload)
        offflags = hl << 10 | flags
        v += self._tcp_sum + tcp_len + seq + ack + offflags + window
        eth_ip = self._eth_ip_ect if ecn else self._eth_ip
        # The arguments written out in each pack, not gathered in a tuple and unpacked
        # with ``*`` (a tuple and the slower call per frame).
        if ts is None:
            r = v % 0xFFFF
            return _TX_PACK(eth_ip, tl, ident, self._ip_mid, ip_csum, self._ports, seq, ack,
                             offflags, window, 0xFFFF - r if r else 0, b"\0\0")  # fmt: skip
        tsv, tse = ts
        r = (v + _TS_OPT_SUM + tsv + tse) % 0xFFFF
        return _TX_TS_PACK(eth_ip, tl, ident, self._ip_mid, ip_csum, self._ports, seq, ack,
                           offflags, window, 0xFFFF - r if r else 0, _URG0_NOP_NOP_TS, tsv,
                           tse)  # fmt: skip

    def _frame_handshake(self, seg: TCPRepr) -> bytes | None:
        """A SYN or SYN-ACK with only the handshake's options (MSS, window scale,
        SACK-permitted, timestamps) and no data: one pack, as :meth:`frame` does, with
        the options' constant bytes kept by shape (:func:`_handshake_options`); every
        connection sends one, and emitting it field by field cost 3 µs (0.9 so). Else None."""
        _sp, _dp, seq, ack, flags, window, payload, mss, ws, sackp, sack, ts, urg, unk, ecn = seg
        if payload or sack or urg or unk or (ecn and ecn != 2):
            return None
        opts, opt_sum = _handshake_options(mss, ws, sackp, ts is not None)
        tcp_len = 20 + len(opts)
        if ts is not None:
            tcp_len += 8
        tl = 20 + tcp_len
        if tl > self._ip.mtu:
            return None
        self._ident = ident = (self._ident + 1) & 0xFFFF
        r = (self._ip_sum + tl + ident + ecn) % 0xFFFF
        ip_csum = 0xFFFF - r if r else 0
        offflags = tcp_len << 10 | flags
        v = self._tcp_sum + tcp_len + seq + ack + offflags + window + opt_sum
        if ts is not None:
            v += ts[0] + ts[1]
        r = v % 0xFFFF
        eth_ip = self._eth_ip_ect if ecn else self._eth_ip
        hdr = _TX.pack(
            eth_ip, tl, ident, self._ip_mid, ip_csum, self._ports, seq, ack, offflags, window,
            0xFFFF - r if r else 0, b"\0\0",
        )  # fmt: skip
        if ts is None:
            return hdr + opts
        return hdr + opts + _TS_VALUES.pack(*ts)

    def _frame_emitted(self, seg: TCPRepr) -> bytes | None:
        """A segment with other options (the handshake's, SACK blocks) or urgent data:
        the TCP header written by :meth:`TCPRepr.emit` behind the prebuilt headers."""
        ecn = seg.ecn
        n = seg.buffer_len()
        tl = 20 + n
        if tl > self._ip.mtu or (ecn and ecn != 2):
            return None  # only ECT(0) is prebuilt
        self._ident = ident = (self._ident + 1) & 0xFFFF
        r = (self._ip_sum + tl + ident + ecn) % 0xFFFF
        buf = bytearray(34 + n)
        eth_ip = self._eth_ip_ect if ecn else self._eth_ip
        _TX_IP.pack_into(
            buf, 0, eth_ip, tl, ident, self._ip_mid, 0xFFFF - r if r else 0, self._addrs
        )
        seg.emit(memoryview(buf)[34:], self._laddr, self._raddr)
        return bytes(buf)


# What a connection's headers share with every other connection to the same destination
# (TcpSender._refresh): generation and until when valid, the Ethernet and IPv4 header's
# fixed runs (MACs to TOS, and the same with ECT(0) (RFC 3168); flags to protocol; the
# addresses), the IPv4 header's sum but length and ident, and the TCP pseudo-header's sum
# but length (addresses, protocol).
_Prebuilt = tuple[int, float, bytes, bytes, bytes, bytes, int, int]


# The handshake's options by shape (MSS, window scale, SACK-permitted, timestamps or not):
# their bytes as TCPRepr.emit writes them, but TSval and TSecr, which come last, and the
# sum of those bytes (whole 32-bit words: each adds as its value).
_HANDSHAKE_OPTIONS: Final[dict[tuple[int | None, int | None, bool, bool], tuple[bytes, int]]] = {}
_TS_VALUES: Final = struct.Struct("!II")


def _handshake_options(
    mss: int | None, wscale: int | None, sack_permitted: bool, ts: bool
) -> tuple[bytes, int]:
    key = (mss, wscale, sack_permitted, ts)
    got = _HANDSHAKE_OPTIONS.get(key)
    if got is None:
        tmpl = TCPRepr(
            0, 0, 0, 0, 0, 0, b"", mss, wscale, sack_permitted, (), (0, 0) if ts else None
        )
        opts = bytes(tmpl.to_bytes()[20 : -8 if ts else None])
        if len(_HANDSHAKE_OPTIONS) >= 256:
            _HANDSHAKE_OPTIONS.clear()  # bounded: the shapes a peer can make us use
        got = _HANDSHAKE_OPTIONS[key] = (opts, int.from_bytes(opts, "big") % 0xFFFF)
    return got


def _prebuild(ip: IPv4, raddr: bytes, now: float) -> _Prebuilt | None:
    r = ip.prebuilt_header(raddr, PROTO_TCP, now, df=True)  # RFC 1191
    if r is None:
        return None
    hdr, until = r
    # 2**16 == 1 (mod 0xFFFF): a run of bytes adds as its words.
    ip_sum = int.from_bytes(hdr[14:34], "big") % 0xFFFF
    addr_sum = int.from_bytes(hdr[26:30], "big") + int.from_bytes(raddr, "big") + PROTO_TCP
    # The generation after the lookup, which may have expired an entry and so moved it.
    ect = hdr[:15] + bytes((hdr[15] | 2,))
    return ip.generation, until, hdr[:16], ect, hdr[20:24], hdr[26:34], ip_sum, addr_sum


_c_tcp: type[TCPProtocol[Addr]] = TCP[Addr]
_c_flow: type[TCPFlowProtocol[Addr]] = TCPFlow[Addr]
_c_tcp6: type[TCPProtocol[ipaddress.IPv6Address]] = TCP[ipaddress.IPv6Address]
_c_flow6: type[TCPFlowProtocol[ipaddress.IPv6Address]] = TCPFlow[ipaddress.IPv6Address]
