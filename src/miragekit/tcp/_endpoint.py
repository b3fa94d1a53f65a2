"""The connection table: demultiplexing, listeners with a bounded SYN backlog, SYN cookies.

:class:`TCPEndpoint` owns every connection of one host, keyed by the 4-tuple
``(local address, local port, remote address, remote port)`` (addresses as packed
bytes). Segments go in with ``handle_segment``/``handle_packet``: to the matching
connection, else to a listener on the port, else they are answered with a RST
(RFC 9293 3.10.7.1). A listener keeps at most ``backlog`` half-open plus not yet
accepted connections; beyond that it answers SYNs with SYN cookies (RFC 4987 3.6) and
keeps no state until the cookie comes back in an ACK. Connections that reach CLOSED are
removed from the table once their last segment is sent, so their memory is freed; one
that settles in TIME_WAIT leaves the table too, for a small :class:`TimeWait` record in
``time_wait`` that serves out its 2 MSL (``_timewait.py``): no live ``Connection`` per
connection closed first for a minute after.

Timers are kept with lazy deletion, and only connections touched since the last
``segments_to_send`` are asked for output, so the cost per call does not grow with the
number of idle connections. A deadline goes to the first of two FIFOs whose last entry
is not later, else to a heap: most deadlines are a fixed time from now (the SYN-ACK's
retransmission, a delayed ACK), so they arrive in order and cost O(1) each way, where a
heap entry costs O(log n) to push and to pop (stale or not) with thousands of
connections coming and going per second.
"""

from __future__ import annotations

import heapq
import hmac
import struct
from collections import OrderedDict, deque
from typing import Any, Final

from ..v1 import Buffer
from ..wire.tcp import ACK, FIN, RST, SYN, DataFields, TCPParseError, TCPRepr
from ._config import Config
from ._conn import Connection, State, _wscale_for
from ._fastopen import CookieJar, FastOpen, option_of
from ._isn import IsnGenerator
from ._timewait import ACK_OWED, ENDED, TimeWait
from .seqnum import MASK

__all__ = ["TCPEndpoint"]

Key = tuple[bytes, int, bytes, int]
# A Key where it is only passed on (the endpoint's dicts and timer entries, each
# connection's own, Connection._ep_key): typed Any so that the compiled build (mypyc)
# keeps the tuple object as it is. Typed Key, each one read was unpacked into a native
# struct and each dict use built a new tuple of it, to allocate, hash and compare.
_K = Any
# Connection._ep_at of a connection without a timer entry (deadlines are never negative).
_NO_ENTRY: Final = -1.0

# MSS values a SYN cookie can encode (3 bits).
_COOKIE_MSS: Final = (536, 1220, 1400, 1440, 1460, 4036, 8960, 65495)
_COOKIE_PERIOD: Final = 64.0
_QUOTE: Final = struct.Struct("!HHI")  # the quoted TCP header: ports, sequence number
_EPHEMERAL_LOW: Final = 49152
_EPHEMERAL_N: Final = 16384

_CLOSED: Final = State.CLOSED
_SYN_RECEIVED: Final = State.SYN_RECEIVED
_SYN_SENT: Final = State.SYN_SENT
_TIME_WAIT: Final = State.TIME_WAIT


class _Listener:
    __slots__ = ("accept_queue", "backlog", "fastopen", "half_open", "port")

    def __init__(self, port: int, backlog: int, fastopen: bool = False) -> None:
        self.port = port
        self.backlog = backlog
        self.fastopen = fastopen
        self.half_open: set[Key] = set()
        # Established, not yet accepted, by key in arrival order: taken from the front,
        # and one that closes before it is accepted leaves from anywhere in O(1).
        self.accept_queue: OrderedDict[Key, Connection] = OrderedDict()


class TCPEndpoint:
    """All TCP connections and listeners of one host (sans-I/O)."""

    __slots__ = (
        "_active",
        "_cookies",
        "_dirty",
        "_ephemeral",
        "_fifos",
        "_half_open",
        "_isn",
        "_listeners",
        "_next",
        "_next_ok",
        "_out",
        "_timers",
        "_tw_ack",
        "_tw_expiry",
        "accept_ready",
        "armed_unseen",
        "config",
        "connections",
        "stats",
        "time_wait",
    )

    def __init__(self, config: Config | None = None, *, secret: bytes) -> None:
        self.config = config or Config()
        self._isn = IsnGenerator(secret)
        self._cookies = CookieJar(secret)
        # Each connection's key is the one tuple made when it joined (Connection._ep_key):
        # every dict and timer entry of it holds that object, so their lookups find it by
        # identity, with no comparison of a fresh 4-tuple's addresses.
        self.connections: dict[Key, Connection] = {}
        self._listeners: dict[int, _Listener] = {}
        self._out: list[tuple[bytes, bytes, TCPRepr]] = []
        # Keys with something to send, in the order they became so: a dict, not a set, so
        # segments leave in the same order whatever PYTHONHASHSEED says.
        self._dirty: dict[_K, None] = {}
        # Keys of every listener's half-open connections (a quick test per segment).
        self._half_open: set[Key] = set()
        self._active: dict[_K, Connection] = {}
        self._timers: list[tuple[float, _K]] = []  # a heap
        self._fifos: tuple[deque[tuple[float, _K]], ...] = (deque(), deque())
        # Each connection's live timer entry is its own field (Connection._ep_at, -1.0:
        # none), not a dict by key: the entry is read at every send and input, and
        # a dict's look-up hashes the 4-tuple (reads its four objects) and reads a boxed
        # float, all cold in every cache at a connection's next echo.
        # poll_at's answer from the timer queues, while _next_ok (see poll_at).
        self._next: float | None = None
        self._next_ok = True
        self.armed_unseen: _K | None = None
        """The connection whose timer entry was made last (it had none: an idle
        connection's request), while the driver has not armed its loop timer since (it
        sets this to None when it does): no loop timer waits for that entry, so when
        the connection's deadline moves later (the delayed ACK that the reply carried,
        in the same loop turn) the entry follows it, where an entry that a loop timer
        may wait for is left to fire early (:meth:`handle_timer`). Only a new entry:
        a busy connection's moves later (request, reply, request...) cost an entry
        each, where left alone they cost nothing until the entry fires."""
        self.accept_ready = False
        """Set when a connection joins a listener's accept queue; the driver clears it
        when it has taken every connection it can (:meth:`accept`): no look at the
        listeners on a run that accepts nothing."""
        self._ephemeral = [0] * 256  # RFC 6056 3.3.4's table of counters
        # 4-tuples in TIME-WAIT, each a small record instead of its Connection; their
        # expiries in order (every one is 2 MSL from when it was set: a FIFO, entries made
        # stale by a restart skipped when they come up); those owing an ACK.
        self.time_wait: dict[Key, TimeWait] = {}
        self._tw_expiry: deque[tuple[float, _K]] = deque()
        self._tw_ack: dict[_K, None] = {}
        self.stats: dict[str, int] = {
            "segments_in": 0,
            "bad_checksum": 0,
            "malformed": 0,
            "rst_sent": 0,
            "syn_cookies_sent": 0,
            "syn_cookies_accepted": 0,
            "syn_cookies_rejected": 0,
            "connections_opened": 0,
            "connections_removed": 0,
            "time_wait_reused": 0,
            "icmp_accepted": 0,
            "icmp_ignored": 0,
            "fastopen_accepted": 0,  # SYNs whose data a valid cookie let in (RFC 7413)
            "fastopen_cookies_sent": 0,  # SYN-ACKs handing out a cookie
        }

    # ------------------------------------------------------------------ listeners

    def listen(self, port: int, backlog: int = 128, *, fastopen: bool = False) -> None:
        """Accept connections on ``port``; a new listen on a port replaces the old one.

        ``fastopen``: TCP Fast Open (RFC 7413): hand out cookies to clients that ask,
        and take the data of SYNs that bring a valid one."""
        if not 0 < port <= 0xFFFF:
            raise ValueError(f"port: {port} is outside 1..65535")
        if backlog < 1:
            raise ValueError("backlog: must be at least 1")
        self._listeners[port] = _Listener(port, backlog, fastopen)

    def unlisten(self, port: int) -> None:
        self._listeners.pop(port, None)

    def _queue_accept(self, lst: _Listener, key: Key, conn: Connection) -> None:
        lst.accept_queue[key] = conn
        self.accept_ready = True

    def accept(self, port: int) -> Connection | None:
        """The next established connection on a listening port, or None."""
        lst = self._listeners.get(port)
        if lst is None or not lst.accept_queue:
            return None
        return lst.accept_queue.popitem(last=False)[1]

    def backlog_len(self, port: int) -> int:
        lst = self._listeners.get(port)
        return 0 if lst is None else len(lst.half_open) + len(lst.accept_queue)

    # ------------------------------------------------------------------ active open

    def connect(
        self,
        now: float,
        laddr: bytes,
        raddr: bytes,
        rport: int,
        lport: int | None = None,
        *,
        fastopen: bool = False,
    ) -> Connection:
        r"""Open a connection (SYN_SENT); ``lport`` None picks a free ephemeral port.

        ``fastopen`` (RFC 7413): with a cookie from this server, what the application
        ``send``\ s before the SYN leaves rides in it; without one, the SYN asks for a
        cookie and the data follows the handshake."""
        if lport is None:
            lport = self._pick_port(laddr, raddr, rport)
        key = (laddr, lport, raddr, rport)
        if key in self.connections or key in self.time_wait:
            raise ValueError(f"lport: {lport} is already connected to that destination")
        iss, off = self._isn.isn_and_ts_offset(now, laddr, lport, raddr, rport)
        tfo: FastOpen | None = None
        if fastopen:
            cached = self._cookies.cached(raddr)
            tfo = FastOpen(*cached) if cached is not None else FastOpen(b"")
        conn = Connection.connect(self.config, lport, rport, iss, now, ts_offset=off, fastopen=tfo)
        self._add(key, conn)
        return conn

    def _pick_port(self, laddr: bytes, raddr: bytes, rport: int) -> int:
        """A free ephemeral port by RFC 6056 3.3.4 (double-hash): a keyed hash of the
        destination picks the start, a second one a counter of a small table, so ports
        are unpredictable to others yet a destination's successive ports do not repeat."""
        isn = self._isn
        offset = isn.port_hash(laddr, raddr, rport)
        slot = isn.port_hash(b"table", laddr, raddr, rport) % len(self._ephemeral)
        table = self._ephemeral
        for _ in range(_EPHEMERAL_N):
            cand = _EPHEMERAL_LOW + (offset + table[slot]) % _EPHEMERAL_N
            table[slot] += 1
            key = (laddr, cand, raddr, rport)
            if key not in self.connections and key not in self.time_wait:
                return cand
        raise ValueError("lport: no free ephemeral port for this destination")

    def _add(self, key: _K, conn: Connection) -> None:
        self.connections[key] = conn
        conn._ep_key = key
        self._dirty[key] = None
        self.stats["connections_opened"] += 1

    def take_active(self) -> list[Connection]:
        """Connections that received segments or timer expiries since the last call;
        of the segments taken by :meth:`handle_next`, only those that left events.

        The driver drains their events (``next_event``) and serves their applications;
        new connections of a listener come from :meth:`accept`.
        """
        if not self._active:
            return []
        active = list(self._active.values())
        self._active.clear()
        return active

    def has_work(self) -> bool:
        """Whether the driver's run has anything to collect: output due
        (:meth:`segments_to_send`), connections with news (:meth:`take_active`) or one
        to accept (:attr:`accept_ready`). False: a run would only ask :meth:`poll_at`."""
        return bool(self._out or self._dirty or self._tw_ack or self._active or self.accept_ready)

    def key_of(self, conn: Connection) -> Key | None:
        """``(local address, local port, remote address, remote port)`` of ``conn``, while
        the table holds it (constant time)."""
        key: Key | None = conn._ep_key
        return key

    def wake(self, conn: Connection) -> None:
        """Tell the endpoint the application called ``send``/``receive``/``close`` on it."""
        key = conn._ep_key
        if key is not None:
            self._dirty[key] = None

    def segment_now(self, conn: Connection, now: float) -> DataFields | None:
        """``conn.data_now(now)`` with the endpoint's part of sending: the connection's
        timer entry (as :meth:`segments_to_send` keeps it). The segment's fields (its
        addresses: :meth:`key_of`), or None when the general way must send (then
        nothing changed). The fields are returned as ``data_now`` gave them, not
        narrowed: the compiled build would unpack them and pack them again."""
        key = conn._ep_key
        if key is None:
            return None
        fields = conn.data_now(now)
        if fields is not None:
            t = conn.poll_at()  # _rearm, written out: every reply comes this way
            if t is not None:
                s = conn._ep_at
                if s < 0.0 or t < s or (t > s and self.armed_unseen == key):
                    self._arm(key, conn, t)
        return fields

    def ack_now(self, now: float) -> tuple[Connection, bytes, bytes, DataFields] | None:
        """When the only output due is one connection's pure ACK (its delayed ACK's timer
        fired): ``(connection, local address, remote address, the ACK's fields)``, with
        everything :meth:`segments_to_send` does for it done (its timer entry); else
        None, nothing changed, and :meth:`segments_to_send` gives the output."""
        dirty = self._dirty
        if len(dirty) != 1 or self._out or self._tw_ack:
            return None
        for key in dirty:
            conn = self.connections.get(key)
            if conn is None or key in self._half_open:
                return None
            fields = conn.ack_now(now)
            if fields is None:
                return None
            self._dirty = {}
            self._rearm(key, conn)
            return conn, key[0], key[2], fields
        return None

    # ------------------------------------------------------------------ input

    def handle_packet(
        self,
        now: float,
        src: bytes,
        dst: bytes,
        data: Buffer,
        *,
        verified: bool = False,
        ecn: int = 0,
    ) -> None:
        """Parse and checksum-verify one TCP segment from IP; bad ones are counted, dropped.

        ``verified`` skips the checksum for frames the device already checked (virtio-net
        ``DATA_VALID``) or that never crossed a wire (``NEEDS_CSUM`` from the kernel).
        ``ecn``: the IP header's ECN codepoint; only a CE mark (3) matters to TCP.
        """
        try:
            seg = TCPRepr.parse(data) if verified else TCPRepr.parse(data, src, dst)
        except TCPParseError as e:
            self.stats["bad_checksum" if e.field == "checksum" else "malformed"] += 1
            return
        if ecn == 3:
            seg = seg._replace(ecn=3)
        self.handle_segment(now, src, dst, seg)

    def handle_next(
        self,
        now: float,
        src: bytes,
        dst: bytes,
        sport: int,
        dport: int,
        seq: int,
        ack: int,
        window: int,
        payload: Buffer,
        ts: tuple[int, int] | None,
        conn: Connection | None = None,
    ) -> bool:
        """A segment given by its fields, ACK without SYN, FIN, RST or URG, without SACK
        blocks: when it is its connection's next expected one and acknowledges new data
        or nothing new (:meth:`Connection.handle_next`), taken as
        :meth:`handle_segment` would take it, without a TCPRepr. False, nothing
        changed: the caller gives the segment to :meth:`handle_segment`. ``conn``: the
        connection of the 4-tuple, when the caller has just looked it up in
        :attr:`connections` (not looked up again)."""
        if conn is None:
            conn = self.connections.get((dst, dport, src, sport))
            if conn is None:
                return False
        key = conn._ep_key
        if key is None or not conn.handle_next(now, seq, ack, window, payload, ts):
            return False
        self.stats["segments_in"] += 1
        if conn._events:
            # News for the driver. Else (the usual request, its data told by the
            # connection's reader) nothing for the driver's walk over take_active to do.
            self._active[key] = conn
        # Nothing to send (quiet: a delayed ACK, a request the application has yet to
        # answer): the walk of segments_to_send would only arm its timer. _rearm, written
        # out, with quiet() and poll_at() asked in one call: two calls less a request.
        t = conn.poll_at(True)
        if (t is not None and t < 0.0) or key in self._half_open:
            self._dirty[key] = None
        elif t is not None:
            s = conn._ep_at
            if s < 0.0 or t < s:
                self._arm(key, conn, t)
        else:
            # No deadline left (an ACK of everything sent, with no delayed ACK or
            # keepalive due): the entry goes now, so the timer that comes up for it
            # finds it gone.
            s = conn._ep_at
            if s >= 0.0:
                conn._ep_at = _NO_ENTRY
                if s == self._next:
                    self._next_ok = False  # it may have been poll_at's answer
        return True

    def handle_segment(self, now: float, src: bytes, dst: bytes, seg: TCPRepr) -> None:
        """Route a parsed segment from ``src`` to ``dst`` (both packed addresses)."""
        self.stats["segments_in"] += 1
        key: _K = (dst, seg.dst_port, src, seg.src_port)
        conn = self.connections.get(key)
        if conn is not None:
            st = conn.state
            if (
                st == _TIME_WAIT
                and seg.flags & SYN
                and conn.accepts_new_syn(seg)
                and seg.dst_port in self._listeners
            ):
                # A new incarnation of a 4-tuple in TIME_WAIT (RFC 6191).
                self.stats["time_wait_reused"] += 1
                conn.abort()  # TIME_WAIT -> CLOSED, no RST
                self._remove(key, conn)
                conn = None
            elif st != _CLOSED:
                ck = conn._ep_key
                if ck is not None:
                    key = ck  # the table's own tuple: found by identity below
                conn.handle_segment(now, seg)
                if st == _SYN_SENT and seg.flags & SYN and conn.fastopen is not None:
                    self._file_cookie(conn, src, seg)
                t = conn.poll_at(True)
                if key in self._half_open or (t is not None and t < 0.0):
                    self._dirty[key] = None
                elif t is not None:
                    # Nothing to send (a FIN whose ACK waits for the application's
                    # answer or close): as in handle_next, only the timer entry.
                    s = conn._ep_at
                    if s < 0.0 or t < s:
                        self._arm(key, conn, t)
                self._active[key] = conn
                return
            else:
                # Closed but not yet collected: behave as if it were gone.
                self._remove(key, conn)
        elif self.time_wait and (tw := self.time_wait.get(key)) is not None:
            if seg.flags & SYN and seg.dst_port in self._listeners and tw.accepts_new_syn(seg):
                # A new incarnation of a 4-tuple in TIME_WAIT (RFC 6191).
                self.stats["time_wait_reused"] += 1
                self._end_time_wait(key)
            else:
                self._time_wait_segment(now, key, tw, seg)
                return
        lst = self._listeners.get(seg.dst_port)
        flags = seg.flags
        if flags & RST:
            return
        if lst is None:
            self._reset_for(dst, src, seg)
            return
        if flags & (SYN | ACK | FIN) == SYN:
            self._on_syn(now, lst, key, seg)
        elif flags & ACK and not self._on_cookie_ack(now, lst, key, seg):
            self._reset_for(dst, src, seg)
        # Anything else to a listener is dropped (RFC 9293 LISTEN state), SYN+FIN too
        # (as Linux does: no legitimate stack sends it; scanners do).

    def handle_run(self, now: float, src: bytes, dst: bytes, seg: TCPRepr, size: int) -> None:
        """In-order data of frames of ``size`` bytes merged into ``seg`` by the driver,
        after :meth:`Connection.takes_run` said the connection may take it so; if the
        connection went meanwhile, ``seg`` is judged as any segment."""
        key: _K = (dst, seg.dst_port, src, seg.src_port)
        conn = self.connections.get(key)
        if conn is None or conn.state == _CLOSED or conn.state == _TIME_WAIT:
            self.handle_segment(now, src, dst, seg)
            return
        ck = conn._ep_key
        if ck is not None:
            key = ck  # the table's own tuple: found by identity below
        self.stats["segments_in"] += 1
        conn.handle_run(now, seg, size)
        self._dirty[key] = None
        self._active[key] = conn

    def _time_wait_segment(self, now: float, key: _K, tw: TimeWait, seg: TCPRepr) -> None:
        cfg = self.config
        expires = tw.expires
        what = tw.segment(now, seg, cfg.time_wait, cfg.challenge_ack_limit)
        if what == ENDED:
            self._end_time_wait(key)
            return
        if tw.expires != expires:
            if expires == self._next:
                self._next_ok = False  # the old expiry, maybe poll_at's answer, is void
            self._tw_expiry_add(tw.expires, key)
        if what == ACK_OWED:
            self._tw_ack[key] = None

    def _tw_expiry_add(self, t: float, key: _K) -> None:
        """Queue a TIME-WAIT record's expiry ``t`` (each 2 MSL from now: in order)."""
        self._tw_expiry.append((t, key))
        if self._next_ok and (self._next is None or t < self._next):
            self._next = t

    def _end_time_wait(self, key: _K) -> None:
        self._next_ok = False  # its expiry may have been poll_at's answer
        del self.time_wait[key]
        self._tw_ack.pop(key, None)
        self.stats["connections_removed"] += 1

    def _file_cookie(self, conn: Connection, server: bytes, synack: TCPRepr) -> None:
        """After a SYN-ACK to our Fast Open SYN: keep the cookie it brought (with the
        server's MSS, which bounds the next SYN's data); forget ours when the server
        took no data and sent no new one (RFC 7413 4.1.3)."""
        tfo = conn.fastopen
        if tfo is None or conn.state == _SYN_SENT:
            return
        if tfo.learnt is not None:
            self._cookies.learn(server, tfo.learnt, synack.mss or self.config.default_mss)
        elif tfo.cookie and tfo.syn_data and not tfo.acked and not conn._retransmits:
            # (After a retried SYN, which goes bare, the answer says nothing of the cookie.)
            self._cookies.forget(server)

    def address_lost(self, laddr: bytes) -> int:
        """Our address ``laddr`` is gone: its connections end without a segment
        (:meth:`Connection.address_lost`); how many."""
        n = 0
        for key, conn in list(self.connections.items()):
            if key[0] == laddr and conn.state != _CLOSED:
                conn.address_lost()
                self._dirty[key] = None
                self._active[key] = conn
                n += 1
        for key in [k for k in self.time_wait if k[0] == laddr]:
            self._end_time_wait(key)
            n += 1
        return n

    def handle_icmp_error(
        self,
        local: bytes,
        remote: bytes,
        quoted: Buffer,
        *,
        refused: bool = False,
        mtu: int | None = None,
    ) -> bool:
        """An ICMP error from IP about a segment we sent from ``local`` to ``remote``
        (``quoted``: at least its first 8 bytes). Counted; True when a connection took it
        (see :meth:`Connection.icmp_error`)."""
        q = memoryview(quoted)
        if len(q) < 8:
            self.stats["icmp_ignored"] += 1
            return False
        sport, dport, seq = _QUOTE.unpack_from(q)
        key = (local, sport, remote, dport)
        conn = self.connections.get(key)
        if conn is None and (tw := self.time_wait.get(key)) is not None and tw.icmp_matches(seq):
            self.stats["icmp_accepted"] += 1
            return True
        if conn is None or not conn.icmp_error(
            seq, refused=refused, mtu=mtu, ipv6=len(local) == 16
        ):
            self.stats["icmp_ignored"] += 1
            return False
        self.stats["icmp_accepted"] += 1
        self._dirty[key] = None
        self._active[key] = conn
        return True

    def _reset_for(self, local: bytes, remote: bytes, seg: TCPRepr) -> None:
        """A RST answering ``seg`` where no connection exists (RFC 9293 3.10.7.1)."""
        if seg.flags & RST:
            return
        if seg.flags & ACK:
            rst = TCPRepr(seg.dst_port, seg.src_port, seg.ack, 0, RST, 0)
        else:
            seglen = (
                len(seg.payload) + (1 if seg.flags & SYN else 0) + (1 if seg.flags & FIN else 0)
            )
            rst = TCPRepr(seg.dst_port, seg.src_port, 0, (seg.seq + seglen) & MASK, RST | ACK, 0)
        self.stats["rst_sent"] += 1
        self._out.append((local, remote, rst))

    def _on_syn(self, now: float, lst: _Listener, key: Key, seg: TCPRepr) -> None:
        laddr, lport, raddr, rport = key
        if len(lst.half_open) + len(lst.accept_queue) >= lst.backlog:
            self._send_cookie(now, key, seg)
            return
        iss, off = self._isn.isn_and_ts_offset(now, laddr, lport, raddr, rport)
        tfo: FastOpen | None = None
        if lst.fastopen and (cookie := option_of(seg)) is not None:
            valid = self._cookies.server_cookie(raddr)
            if hmac.compare_digest(cookie, valid):
                tfo = FastOpen(b"")
                if seg.payload:
                    tfo.acked = True
                    self.stats["fastopen_accepted"] += 1
            else:
                # A request, or a cookie not (or no longer) ours: hand out the right one;
                # any data in the SYN is left for after the handshake.
                tfo = FastOpen(valid)
                self.stats["fastopen_cookies_sent"] += 1
        conn = Connection.accept(self.config, seg, iss, now, ts_offset=off, fastopen=tfo)
        self._add(key, conn)
        if tfo is not None and tfo.acked:
            # The application may read the SYN's data and answer now (RFC 7413 4.2.3).
            self._queue_accept(lst, key, conn)
            return
        lst.half_open.add(key)
        self._half_open.add(key)

    # ------------------------------------------------------------------ SYN cookies

    def _cookie(self, key: Key, irs: int, counter: int, mss_idx: int) -> int:
        h = self._isn.cookie_hash(key[0], key[1], key[2], key[3], irs, counter, mss_idx)
        return ((counter & 0x1F) << 27) | (mss_idx << 24) | (h & 0xFFFFFF)

    def _send_cookie(self, now: float, key: Key, seg: TCPRepr) -> None:
        peer_mss = seg.mss if seg.mss else self.config.default_mss
        mss_idx = 0
        for i, m in enumerate(_COOKIE_MSS):
            if m <= peer_mss:
                mss_idx = i
        counter = int(now // _COOKIE_PERIOD)
        cookie = self._cookie(key, seg.seq, counter, mss_idx)
        cfg = self.config
        ts: tuple[int, int] | None = None
        ws: int | None = None
        sack = False
        if cfg.timestamps and seg.timestamp is not None:
            # Window scale and SACK ride in the low 6 bits of our TSval, which the
            # client echoes in its ACK (as Linux does); bit 5 marks them present.
            ws_bits = seg.wscale if cfg.window_scaling and seg.wscale is not None else 0xF
            sack = cfg.sack and seg.sack_permitted
            tsval = (int(now * 1000) + self._isn.ts_offset(*key)) & MASK
            tsval = (tsval & ~0x3F) | 0x20 | (0x10 if sack else 0) | ws_bits
            ts = (tsval, seg.timestamp[0])
            if ws_bits != 0xF:
                ws = _wscale_for(cfg.recv_buffer)
        synack = TCPRepr(
            key[1],
            key[3],
            cookie,
            (seg.seq + 1) & MASK,
            SYN | ACK,
            min(cfg.recv_buffer, 65535),
            b"",
            cfg.mss,
            ws,
            sack,
            (),
            ts,
        )
        self.stats["syn_cookies_sent"] += 1
        self._out.append((key[0], key[2], synack))

    def _on_cookie_ack(self, now: float, lst: _Listener, key: Key, seg: TCPRepr) -> bool:
        cookie = (seg.ack - 1) & MASK
        irs = (seg.seq - 1) & MASK
        counter = int(now // _COOKIE_PERIOD)
        mss_idx = (cookie >> 24) & 0x7
        for age in (0, 1):
            c = counter - age
            if c < 0:
                continue  # the clock's first period has no previous one (simulated time)
            if (c & 0x1F) == cookie >> 27 and self._cookie(key, irs, c, mss_idx) == cookie:
                break
        else:
            self.stats["syn_cookies_rejected"] += 1
            return False
        if len(lst.accept_queue) >= lst.backlog:
            self.stats["syn_cookies_rejected"] += 1
            return True  # drop silently: the client retries
        self.stats["syn_cookies_accepted"] += 1
        off = self._isn.ts_offset(*key)
        ts = seg.timestamp
        with_ts = self.config.timestamps and ts is not None and bool(ts[1] & 0x20)
        ws_bits = ts[1] & 0xF if ts is not None else 0xF
        conn = Connection.from_cookie(
            self.config,
            seg,
            cookie,
            _COOKIE_MSS[mss_idx],
            now,
            ts_offset=off,
            wscale=None if ws_bits == 0xF else min(ws_bits, 14),
            sack=ts is not None and bool(ts[1] & 0x10),
            timestamps=with_ts,
        )
        self._add(key, conn)
        self._queue_accept(lst, key, conn)
        conn.handle_segment(now, seg)
        return True

    # ------------------------------------------------------------------ timers and output

    def poll_at(self) -> float | None:
        """When ``handle_timer`` is next needed (0.0 when output is pending now).

        The answer of the last walk over the timer queues is kept (:attr:`_next`) and
        is exactly what a walk would give: an entry armed lowers it (:meth:`_arm`, a
        TIME-WAIT expiry), and an entry voided while it may be the answer (timers
        handled, a connection removed, a TIME-WAIT record ended) makes the next call
        walk again. A driver run that finds nothing to do then does not walk."""
        if self._out or self._dirty or self._tw_ack:
            return 0.0
        if self._next_ok:
            return self._next
        return self._due_walk()

    def _due_walk(self) -> float | None:
        """The earliest live entry of the timer queues (stale fronts dropped), kept."""
        timers = self._timers
        conns = self.connections
        best: float | None = None
        while timers:
            t, key = timers[0]
            c = conns.get(key)
            if c is not None and c._ep_at == t:
                best = t
                break
            heapq.heappop(timers)
        for q in self._fifos:
            while q:
                t, key = q[0]
                c = conns.get(key)
                if c is not None and c._ep_at == t:
                    if best is None or t < best:
                        best = t
                    break
                q.popleft()
        q = self._tw_expiry
        tws = self.time_wait
        while q:
            t, key = q[0]
            tw = tws.get(key)
            if tw is not None and tw.expires == t:
                if best is None or t < best:
                    best = t
                break
            q.popleft()
        self._next = best
        self._next_ok = True
        return best

    def _arm(self, key: _K, conn: Connection, t: float) -> None:
        """Make ``t`` the timer entry of ``conn`` (its key ``key``; earlier entries of it
        go stale)."""
        s = conn._ep_at
        conn._ep_at = t
        if s < 0.0:
            self.armed_unseen = key
        if self._next_ok:
            if s >= 0.0 and s == self._next and s < t:
                self._next_ok = False  # the entry voided may have been poll_at's answer
            elif self._next is None or t < self._next:
                self._next = t  # the earliest entry now: poll_at's answer
        for q in self._fifos:
            if not q or q[-1][0] <= t:
                q.append((t, key))
                return
        heapq.heappush(self._timers, (t, key))

    def handle_timer(self, now: float) -> bool:
        """Handle every connection timer due at ``now`` and end the TIME-WAIT records
        whose 2 MSL are over; True when some connection's timer was handled (it may
        have something to send), False when the entries due were stale (deadlines
        moved later, connections gone) or only TIME-WAIT records ended."""
        self._next_ok = False  # entries are taken and re-armed: poll_at walks again
        fired = False
        timers = self._timers
        conns = self.connections
        due: list[tuple[float, _K]] = []
        while timers and timers[0][0] <= now:
            due.append(heapq.heappop(timers))
        for q in self._fifos:
            while q and q[0][0] <= now:
                due.append(q.popleft())
        q = self._tw_expiry
        tws = self.time_wait
        while q and q[0][0] <= now:
            t, key = q.popleft()
            tw = tws.get(key)
            if tw is not None and tw.expires == t:
                self._end_time_wait(key)  # 2 MSL are over: no segment
        if len(due) > 1:
            due.sort()  # in deadline order, as one heap would give them
        for t, key in due:
            conn = conns.get(key)
            if conn is None or conn._ep_at != t:
                continue
            conn._ep_at = _NO_ENTRY
            at = conn.poll_at()
            if at is None:
                continue
            if at > now:
                # The entry was kept because it was earlier than the connection's new
                # deadline (see segments_to_send): wait on for the real one.
                self._arm(key, conn, at)
                continue
            conn.handle_timer(now)
            self._dirty[key] = None
            self._active[key] = conn
            fired = True
        return fired

    def segments_to_send(self, now: float) -> list[tuple[bytes, bytes, TCPRepr]]:
        """``(local address, remote address, segment)`` for everything due now."""
        out = self._out
        self._out = []
        if self._tw_ack:
            tws = self.time_wait
            for key in self._tw_ack:
                out.append((key[0], key[2], tws[key].ack(now, key[1], key[3])))
            self._tw_ack = {}
        dirty = self._dirty
        if not dirty:
            return out
        self._dirty = {}
        conns = self.connections
        half_open = self._half_open
        for key in dirty:
            conn = conns.get(key)
            if conn is None:
                continue
            segs = conn.segments_to_send(now)
            if segs:
                laddr = key[0]
                raddr = key[2]
                for seg in segs:
                    out.append((laddr, raddr, seg))
            st = conn.state
            if key in half_open and st != _SYN_RECEIVED:
                self._track(key, conn)
            if st == _CLOSED:
                self._remove(key, conn)
                continue
            if st == _TIME_WAIT and (tw := conn.time_wait_record()) is not None:
                # The connection's driver drains its ConnectionClosed and lets it go.
                self._remove(key, conn, count=False)
                self.time_wait[key] = tw
                self._tw_expiry_add(tw.expires, key)
                self._active[key] = conn
                continue
            self._rearm(key, conn)
        return out

    def _rearm(self, key: _K, conn: Connection) -> None:
        """The connection's timer entry after input or output. An entry that fires no
        later than needed is kept: a later deadline (the common case: delayed ACK, then
        TLP, then RTO of the FIN) costs no heap entry; handle_timer re-arms when an
        entry fires early."""
        t = conn.poll_at()
        if t is not None:
            s = conn._ep_at
            if s < 0.0 or t < s or (t > s and self.armed_unseen == key):
                self._arm(key, conn, t)

    def _track(self, key: _K, conn: Connection) -> None:
        """Move a listener's half-open connection on once it leaves SYN_RECEIVED."""
        if conn.state == _SYN_RECEIVED:
            return
        self._half_open.discard(key)
        lst = self._listeners.get(key[1])
        if lst is not None and key in lst.half_open:
            lst.half_open.discard(key)
            if conn.state != _CLOSED:
                self._queue_accept(lst, key, conn)

    def _remove(self, key: _K, conn: Connection, *, count: bool = True) -> None:
        """Take ``conn`` out of the table; ``count``: it is gone (not in TIME-WAIT)."""
        del self.connections[key]
        conn._ep_key = None
        s = conn._ep_at
        conn._ep_at = _NO_ENTRY
        if s >= 0.0 and s == self._next:
            self._next_ok = False  # its entry may have been poll_at's answer
        self._half_open.discard(key)
        if count:
            self.stats["connections_removed"] += 1
        # Only the listener on its local port can hold it: O(1), whatever the queues hold.
        lst = self._listeners.get(key[1])
        if lst is not None:
            if lst.accept_queue:
                lst.accept_queue.pop(key, None)
            lst.half_open.discard(key)
