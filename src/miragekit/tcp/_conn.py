"""One TCP connection as a sans-I/O state machine (RFC 9293 and friends).

A :class:`Connection` never reads a clock and never does I/O: the driver feeds it
segments (``handle_segment(now, seg)``) and timer expiries (``handle_timer(now)``), takes
the segments it wants sent (``segments_to_send(now)``), arms one timer at ``poll_at()``,
and drains events (``next_event()``). Application data goes in with ``send`` (bounded
buffer: it returns how much it accepted) and comes out with ``receive``.

Sequence numbers are kept as unbounded ints inside (``iss`` as given, growing without
wrapping), and converted at the boundary: outgoing numbers are masked to 32 bits and
incoming ones unwrapped next to the expected value (as ``seqnum.unwrap`` does, inlined
on the hot path) as soon as they arrive. So comparisons in here are plain ``<``, and
wraparound only exists at the edges.

What is implemented: the RFC 9293 state machine with simultaneous open and close, RST
processing and generation, RFC 5961 challenge ACKs (rate-limited), MSS negotiation,
RFC 7323 window scaling, timestamps and PAWS, RFC 2018 SACK with RFC 6675 recovery
(NextSeg rules 1-4), RFC 8985 RACK-TLP, RFC 6937 PRR, RFC 2883 D-SACK with undo, or
RFC 6582 NewReno recovery without SACK, RFC 6298 RTO with backoff and give-up,
RFC 3042 limited transmit, pluggable congestion control, delayed ACKs, Nagle, sender
and receiver SWS avoidance, zero-window probing, TIME_WAIT and a FIN_WAIT_2 timeout,
optional keepalive, TSO bursts (``Config.tso_max``), RFC 3168 ECN (``_ecn.py``) and
RFC 7413 Fast Open (``_fastopen.py``).
"""

from __future__ import annotations

from collections.abc import Callable
from enum import IntEnum
from typing import Any, Final

from ..v1 import Buffer
from ..wire.tcp import (
    ACK,
    CWR,
    ECE,
    FIN,
    PSH,
    RST,
    SYN,
    DataFields,
    TCPRepr,
    handshake_segment,
    plain_segment,
)
from ._config import Config
from ._ecn import CE, Ecn, syn_requests_ecn, synack_agrees
from ._events import (
    Connected,
    ConnectionClosed,
    ConnectionReset,
    ConnectionTimedOut,
    DataReceived,
    EndOfStream,
    Event,
    SendBufferAvailable,
)
from ._fastopen import FastOpen, option_of, with_option
from ._rack import ReorderWindow
from ._reassembly import Reassembler
from ._rtt import RttEstimator
from ._sack import DUP_THRESH, RetransmitLedger, Scoreboard
from ._sendbuf import SendBuffer
from ._timewait import TimeWait, newer_syn
from .congestion import INITIAL_SSTHRESH, CongestionControl, new_controller
from .seqnum import HALF, MASK, acceptable

__all__ = ["Connection", "State"]


class State(IntEnum):
    CLOSED = 0
    LISTEN = 1
    SYN_SENT = 2
    SYN_RECEIVED = 3
    ESTABLISHED = 4
    FIN_WAIT_1 = 5
    FIN_WAIT_2 = 6
    CLOSE_WAIT = 7
    CLOSING = 8
    LAST_ACK = 9
    TIME_WAIT = 10


CLOSED: Final = State.CLOSED
SYN_SENT: Final = State.SYN_SENT
SYN_RECEIVED: Final = State.SYN_RECEIVED
ESTABLISHED: Final = State.ESTABLISHED
FIN_WAIT_1: Final = State.FIN_WAIT_1
FIN_WAIT_2: Final = State.FIN_WAIT_2
CLOSE_WAIT: Final = State.CLOSE_WAIT
CLOSING: Final = State.CLOSING
LAST_ACK: Final = State.LAST_ACK
TIME_WAIT: Final = State.TIME_WAIT

# States in which data (and FIN) may be sent or retransmitted.
_SENDING: Final = frozenset({ESTABLISHED, CLOSE_WAIT, FIN_WAIT_1, CLOSING, LAST_ACK})
# States in which the peer may still send data.
_RECEIVING: Final = frozenset({ESTABLISHED, FIN_WAIT_1, FIN_WAIT_2})

_TS_OPTION_LEN: Final = 12
_PAWS_IDLE: Final = 24 * 86400.0
_EVT_CONNECTED: Final = Connected()
_EVT_DATA: Final = DataReceived()
_EVT_WRITABLE: Final = SendBufferAvailable()
_EVT_EOF: Final = EndOfStream()
_EVT_RESET: Final = ConnectionReset()
_EVT_REFUSED: Final = ConnectionReset(refused=True)
QUICKACKS: Final = 16
"""Segments ACKed at once, without delay, after one fills a hole: the sender is
recovering from a loss, and an ACK per segment clocks it out of recovery sooner (Linux
leaves delayed ACKs for as many after a retransmission, TCP_MAX_QUICKACKS)."""
TLP_SLACK: Final = 0.002
"""Added to a probe timeout with more than one segment in flight: Linux's two timer
ticks (at HZ=1000), so a sub-millisecond SRTT does not probe at once."""
SYN_LOSS_RTO: Final = 3.0
"""The timeout once data flows after a retransmitted SYN or SYN-ACK (RFC 6298 5.7)."""
MIN_SND_MSS: Final = 48
"""The smallest peer MSS honoured: tinier segments only multiply the work per byte
(Linux's ``tcp_min_snd_mss``, the fix for CVE-2019-11479)."""
_EVT_TIMEOUT: Final = ConnectionTimedOut()
_EVT_CLOSED: Final = ConnectionClosed()


def _wscale_for(buffer: int) -> int:
    shift = _WSCALE.get(buffer)
    if shift is None:
        shift = 0
        while (65535 << shift) < buffer and shift < 14:
            shift += 1
        _WSCALE[buffer] = shift
    return shift


# Every connection's counters as ``Connection.stats`` shows them: a copy of this, with the
# connection's own counts written in.
_STATS: Final[dict[str, int]] = {
    "segs_in": 0,
    "segs_out": 0,
    "retransmits": 0,
    "rto": 0,
    "fast_retransmits": 0,
    "lost_retransmits": 0,
    "tail_loss_probes": 0,
    "window_probes": 0,  # zero-window probes the persist timer sent (RFC 9293 3.8.6.1)
    "challenge_acks": 0,
    "dropped": 0,
    "resets_data_lost": 0,  # RST for data the application will never read (RFC 1122)
    "dsacks_in": 0,  # D-SACK blocks received (RFC 2883)
    "dsacks_out": 0,  # D-SACK blocks sent
    "undos": 0,  # loss responses undone: every retransmission was D-SACKed (RFC 3708)
    "undos_by_timestamp": 0,  # of which found by the echoed timestamp (RFC 3522)
    "ce_received": 0,  # segments that arrived marked Congestion Experienced (RFC 3168)
    "ecn_reductions": 0,  # window reductions for an ECN-Echo
    "cwr_received": 0,  # segments with CWR: the peer reduced for our ECN-Echo
    "tlp_recoveries": 0,  # a probe repaired a loss: cwnd reduced (RFC 8985 7.4)
    "rescue_retransmits": 0,  # NextSeg rule 4 (RFC 6675)
}

# The window scale for a receive buffer size, computed once per size (every handshake
# asks; there are as many sizes as configurations).
_WSCALE: Final[dict[int, int]] = {}


class Connection:
    """A TCP connection; build it with :meth:`connect` or :meth:`accept`."""

    __slots__ = (
        "_ack_at",
        "_ack_now",
        "_cc",
        "_challenge_count",
        "_challenge_second",
        "_close_at",
        "_ctl_out",
        "_discard_input",
        "_dsack",
        "_dupacks",
        "_ecn",
        "_eof_signalled",
        "_ep_at",
        "_ep_key",
        "_events",
        "_fin_queued",
        "_fin_seq",
        "_high_rxt",
        "_in_recovery",
        "_inflate",
        "_irs",
        "_iss",
        "_ka_at",
        "_ka_probes",
        "_last_ack_sent",
        "_ledger",
        "_max_snd_wnd",
        "_nodelay",
        "_ooo",
        "_peer_mss",
        "_prior_cc",
        "_probe",
        "_prr_delivered",
        "_prr_out",
        "_push_upto",
        "_quickacks",
        "_rack_at",
        "_rcv_adv",
        "_rcv_fin",
        "_rcv_mss",
        "_rcv_nxt",
        "_rcv_wscale",
        "_rcvbuf",
        "_readable_signalled",
        "_reader",
        "_reader_list",
        "_recover",
        "_recover_fs",
        "_reducing",
        "_reo",
        "_rescue",
        "_retransmits",
        "_retries",
        "_rexmit",
        "_rto_recovery",
        "_rtt",
        "_rtt_seq",
        "_rtt_time",
        "_rtx_at",
        "_run_size",
        "_sack_on",
        "_scoreboard",
        "_seg_max",
        "_segs_in",
        "_segs_out",
        "_smss",
        "_snd_buf_seq",
        "_snd_max",
        "_snd_nxt",
        "_snd_una",
        "_snd_wl1",
        "_snd_wl2",
        "_snd_wnd",
        "_snd_wscale",
        "_sndbuf",
        "_sws_open",
        "_tfo",
        "_tlp_at",
        "_tlp_end",
        "_tlp_probe",
        "_tlp_rtt",
        "_tlp_rxt",
        "_ts_offset",
        "_ts_on",
        "_ts_recent",
        "_ts_recent_at",
        "_unacked_bytes",
        "_want_writable",
        "_ws_on",
        "_xstats",
        "config",
        "local_port",
        "remote_port",
        "state",
    )

    def __init__(
        self,
        config: Config,
        local_port: int,
        remote_port: int,
        iss: int,
        *,
        ts_offset: int = 0,
    ) -> None:
        if not (0 <= local_port <= 0xFFFF and 0 <= remote_port <= 0xFFFF):
            raise ValueError("local_port/remote_port: must be 0..65535")
        if not 0 <= iss <= MASK:
            raise ValueError("iss: must be a 32-bit number")
        # The fields are assigned in the order of the compiled object's layout (mypyc
        # lays a native class out in the order its attributes are first assigned): an
        # echo finds its connection cold in every cache, so the fields an echo reads at
        # every visit come first and share a few cache lines, those it reads at most
        # visits next, the rare ones last (tests/test_conn_layout.py).
        # Flags (one byte each compiled) go in runs of eight between the 8-byte fields.
        # The parts are made in their old order: the order of allocations stays.
        mss0 = config.mss if config.mss < config.default_mss else config.default_mss
        sndbuf = SendBuffer()
        rcvbuf = bytearray()
        ooo = Reassembler()
        scoreboard = Scoreboard()
        reo = ReorderWindow()
        rtt = RttEstimator(config.initial_rto, config.min_rto, config.max_rto)
        cc: CongestionControl = new_controller(config.congestion, mss0, hystart=config.hystart)
        # -- read at every visit (poll_at's deadlines, the sequence space, the output)
        self._ka_at: float | None = None
        # Control segments due (RST, probes, ACKs out of turn): a list made by the first
        # (_queue_ctl), None while there is none, as almost always.
        self._ctl_out: list[TCPRepr] | None = None
        self._close_at: float | None = None
        self._ack_at: float | None = None
        self._tlp_at: float | None = None
        self._rtx_at: float | None = None
        self._rack_at: float | None = None
        # The endpoint's timer entry of this connection (set and cleared by
        # TCPEndpoint), -1.0 while it has none: a field, not a dict by the 4-tuple.
        self._ep_at = -1.0
        self.state = CLOSED
        self.config = config
        self._sndbuf = sndbuf
        self._snd_buf_seq = iss + 1
        self._ecn: Ecn | None = None  # ECN negotiated (or, in SYN_SENT, asked for)
        self._last_ack_sent = 0
        self._snd_nxt = iss
        self._ts_recent = 0
        self._rcv_adv = 0
        self._snd_max = iss
        self._rcv_nxt = 0
        self._snd_una = iss
        # A list, not a deque: a connection holds a few events at a time, and an empty
        # list costs 56 bytes where an empty deque costs 760. None while there is none
        # (most of the time: data is told to a reader): the first event makes the list.
        self._events: list[Event] | None = None
        self._snd_wnd = 0
        self._ts_offset = ts_offset
        self._ack_now = False
        self._fin_queued = False
        self._in_recovery = False
        self._ts_on = False
        self._tlp_probe = False
        self._rexmit = False
        self._probe = False
        self._tlp_rtt = True
        # -- read at most visits (an ACK or data in)
        self._rcvbuf = rcvbuf
        # The endpoint's 4-tuple of this connection while its table holds it (set and
        # cleared by TCPEndpoint): the one key object of its dicts and timer entries.
        self._ep_key: Any = None  # Any: kept as the tuple it is (see _endpoint._K)
        self._scoreboard = scoreboard
        # RFC 8985 7: TLP.end_seq (SND.NXT after the probe; None: no episode),
        # TLP.is_retrans, and whether an RTT was sampled since the last probe.
        self._tlp_end: int | None = None
        self._unacked_bytes = 0
        self._ooo = ooo
        self._rcv_wscale = 0
        # The counters (see ``stats``): the three every connection moves as fields, the
        # rest in a dict made by the first count (most connections never make one).
        self._segs_out = 0
        self._dsack: tuple[int, int] | None = None
        half = config.recv_buffer // 2
        self._sws_open = half if half < mss0 else mss0  # as _set_seg_max keeps it
        self._rtt_seq: int | None = None
        self._rtt = rtt
        self._segs_in = 0
        self._snd_wl1 = 0
        self._max_snd_wnd = 0
        self._snd_wscale = 0
        self._snd_wl2 = 0
        self._ts_recent_at = 0.0
        self._cc = cc
        self._inflate = 0
        self._sack_on = False
        self._rto_recovery = False
        self._want_writable = False
        self._discard_input = False  # closed for reading too: new data means RST
        self._readable_signalled = False
        self._ws_on = False
        self._tlp_rxt = False
        self._reducing = False  # PRR runs: this recovery's reduction was not undone
        # -- read at some visits
        # set_reader's callback: data readable is told by a call, not a DataReceived.
        self._reader: Callable[[], None] | None = None
        # set_reader's list: the reader is appended to it, not called (see set_reader).
        self._reader_list: list[Callable[[], None]] | None = None
        self._rcv_fin: int | None = None
        self._smss = mss0
        self._high_rxt = iss
        self._retries = 0
        self._dupacks = 0
        self._prior_cc: tuple[object, ...] | None = None
        self._reo = reo
        self._recover = iss
        self._quickacks = 0
        self._run_size = 0  # while a coalesced run is processed: its frames' size
        self._rcv_mss = mss0
        # -- rarely read
        self.local_port = local_port
        self.remote_port = remote_port
        self._fin_seq = 0
        self._xstats: dict[str, int] | None = None
        # Made by the first loss episode (_start_episode): most connections never have
        # one, and None answers as a closed ledger would (nothing to undo).
        self._ledger: RetransmitLedger | None = None
        self._retransmits = 0
        self._seg_max = mss0
        self._iss = iss
        self._tfo: FastOpen | None = None  # TCP Fast Open (RFC 7413) in the handshake
        self._irs = 0
        self._peer_mss = config.default_mss
        self._ka_probes = 0
        self._rtt_time = 0.0
        self._challenge_count = 0
        self._challenge_second = -1
        self._prr_delivered = 0
        self._prr_out = 0
        self._recover_fs = 1
        self._push_upto = 0
        self._rescue: int | None = None  # RescueRxt (RFC 6675 NextSeg rule 4)
        self._nodelay = config.nodelay
        self._eof_signalled = False

    @property
    def stats(self) -> dict[str, int]:
        """This connection's counters, by name (a snapshot: a new dict at each read)."""
        out = _STATS.copy()
        out["segs_in"] = self._segs_in
        out["segs_out"] = self._segs_out
        out["retransmits"] = self._retransmits
        if self._xstats is not None:
            out.update(self._xstats)
        return out

    def _count(self, name: str, n: int = 1) -> None:
        """Add ``n`` to counter ``name`` (one of ``_STATS`` other than the three fields)."""
        x = self._xstats
        if x is None:
            x = self._xstats = {}
        x[name] = x.get(name, 0) + n

    # ------------------------------------------------------------------ construction

    @classmethod
    def connect(
        cls,
        config: Config,
        local_port: int,
        remote_port: int,
        iss: int,
        now: float,
        *,
        ts_offset: int = 0,
        fastopen: FastOpen | None = None,
    ) -> Connection:
        """An active open: the connection is in SYN_SENT and its SYN is ready to send.

        ``fastopen`` (RFC 7413): the SYN carries its cookie (or asks for one) and, with a
        cookie, the first bytes queued with ``send`` before the SYN goes out."""
        conn = cls(config, local_port, remote_port, iss, ts_offset=ts_offset)
        conn._tfo = fastopen
        conn.state = SYN_SENT
        conn._rcv_wscale = _wscale_for(config.recv_buffer) if config.window_scaling else 0
        if config.ecn == "on":
            conn._ecn = Ecn()
        return conn

    @classmethod
    def accept(
        cls,
        config: Config,
        syn: TCPRepr,
        iss: int,
        now: float,
        *,
        ts_offset: int = 0,
        fastopen: FastOpen | None = None,
    ) -> Connection:
        """A passive open from a received SYN: SYN_RECEIVED, with the SYN-ACK ready.

        ``fastopen`` (RFC 7413): with ``acked`` set the SYN's data is taken (the SYN-ACK
        acknowledges it; it can be read, and answered, at once); a ``cookie`` rides the
        SYN-ACK."""
        if syn.flags & (SYN | ACK | RST) != SYN:
            raise ValueError("syn: must be a segment with SYN set and ACK/RST clear")
        conn = cls(config, syn.dst_port, syn.src_port, iss, ts_offset=ts_offset)
        conn.state = SYN_RECEIVED
        conn._irs = syn.seq
        conn._rcv_nxt = syn.seq + 1
        conn._last_ack_sent = conn._rcv_nxt
        conn._negotiate(syn)
        conn._ts_recent_at = now
        rbuf = config.recv_buffer
        conn._rcv_adv = conn._rcv_nxt + (rbuf if rbuf < 65535 else 65535)
        conn._snd_wnd = syn.window
        conn._max_snd_wnd = syn.window
        conn._snd_wl1 = syn.seq
        conn._snd_wl2 = iss
        if fastopen is not None:
            conn._tfo = fastopen
            if fastopen.acked and syn.payload:
                data = memoryview(syn.payload)[: conn._rcv_adv - conn._rcv_nxt]
                conn._rcvbuf += data
                conn._rcv_nxt += len(data)
                conn._readable_signalled = True
                conn._event(_EVT_DATA)
        return conn

    @classmethod
    def from_cookie(
        cls,
        config: Config,
        ack: TCPRepr,
        iss: int,
        mss: int,
        now: float,
        *,
        ts_offset: int = 0,
        wscale: int | None = None,
        sack: bool = False,
        timestamps: bool = False,
    ) -> Connection:
        """ESTABLISHED from the ACK that returned a valid SYN cookie (``iss`` is the cookie).

        The cookie holds the MSS; window scale and SACK come back only when the
        endpoint could encode them in the timestamp (``timestamps``), as Linux does.
        """
        conn = cls(config, ack.dst_port, ack.src_port, iss, ts_offset=ts_offset)
        conn._irs = (ack.seq - 1) & MASK
        conn._rcv_nxt = conn._irs + 1
        conn._last_ack_sent = conn._rcv_nxt
        conn._rcv_adv = conn._rcv_nxt + min(config.recv_buffer, 65535)
        conn._peer_mss = mss
        smss = min(mss, config.mss)
        if timestamps and ack.timestamp is not None:
            conn._ts_on = True
            conn._ts_recent = ack.timestamp[0]
            conn._ts_recent_at = now
            smss -= _TS_OPTION_LEN
            if wscale is not None:
                conn._ws_on = True
                conn._snd_wscale = wscale
                conn._rcv_wscale = _wscale_for(config.recv_buffer)
            conn._sack_on = sack
        conn._smss = max(smss, 1)
        conn._cc.set_mss(conn._smss)
        conn._set_seg_max()
        conn._snd_nxt = conn._snd_max = iss + 1
        conn._establish(now, ack._replace(flags=ACK), iss + 1, conn._rcv_nxt)
        return conn

    def _negotiate(self, syn: TCPRepr) -> None:
        """Options from the peer's SYN (or SYN-ACK) against what we offer (RFC 7323, 2018)."""
        cfg = self.config
        if syn.mss is not None and syn.mss > 0:
            self._peer_mss = syn.mss if syn.mss > MIN_SND_MSS else MIN_SND_MSS
        if cfg.window_scaling and syn.wscale is not None:
            self._ws_on = True
            self._snd_wscale = syn.wscale
            self._rcv_wscale = _wscale_for(cfg.recv_buffer)
        else:
            self._ws_on = False
            self._snd_wscale = 0
            self._rcv_wscale = 0
        self._sack_on = cfg.sack and syn.sack_permitted
        if cfg.timestamps and syn.timestamp is not None:
            self._ts_on = True
            self._ts_recent = syn.timestamp[0]
        else:
            self._ts_on = False
        smss = self._peer_mss if self._peer_mss < cfg.mss else cfg.mss
        if self._ts_on:
            smss -= _TS_OPTION_LEN
        self._smss = smss if smss > 1 else 1
        self._cc.set_mss(self._smss)
        self._set_seg_max()
        # ECN (RFC 3168 6.1.1): a SYN asks with ECE and CWR, a SYN-ACK agrees with ECE.
        if not syn.flags & ACK:
            self._ecn = Ecn() if cfg.ecn != "off" and syn_requests_ecn(syn) else None
        elif self._ecn is not None and not synack_agrees(syn):
            self._ecn = None

    def accepts_new_syn(self, syn: TCPRepr) -> bool:
        """In TIME_WAIT: may this SYN start a new incarnation of the 4-tuple?

        RFC 1122 4.2.2.13 / RFC 6191: yes when its sequence number is beyond the old
        connection's, or (with timestamps) its TSval is newer; the endpoint then drops
        this TIME_WAIT early instead of answering with a challenge ACK.
        """
        if self.state != TIME_WAIT:
            return False
        return newer_syn(syn, self._rcv_nxt, self._ts_recent if self._ts_on else None)

    def time_wait_record(self) -> TimeWait | None:
        """In TIME_WAIT with nothing left to send: hand the 4-tuple's last 2 MSL to a
        small :class:`TimeWait` the endpoint keeps instead of this object. This object
        then says ConnectionClosed (its driver may let it go) and changes no more; its
        state reads TIME_WAIT, and unread data can still be read. None: not (yet)."""
        if (
            self.state != TIME_WAIT
            or self._ctl_out
            or self._ack_now
            or self._ack_at is not None
            or self._dsack is not None
            or self._close_at is None
            or self._rcv_fin is None
            or self._rcv_nxt != self._rcv_fin + 1
            or not self._snd_una == self._snd_nxt == self._snd_max
        ):
            return None
        window = self._window_field(False)  # what every later ACK would advertise
        ecn = self._ecn
        tw = TimeWait(
            self._rcv_nxt,
            self._snd_nxt,
            expires=self._close_at,
            window=window,
            rcv_wnd=max(self._rcv_adv - self._rcv_nxt, 0),
            max_snd_wnd=self._max_snd_wnd,
            last_ack_sent=self._last_ack_sent,
            ts_recent=self._ts_recent if self._ts_on else None,
            ts_recent_at=self._ts_recent_at,
            ts_offset=self._ts_offset,
            sack_on=self._sack_on,
            ecn_echo=None if ecn is None else ecn.echo,
            challenge_second=self._challenge_second,
            challenge_count=self._challenge_count,
        )
        self._close_at = None
        self._rack_at = None
        self._event(_EVT_CLOSED)
        return tw

    def set_path_mtu(self, mtu: int, *, ipv6: bool = False) -> None:
        """Clamp the segment size to a (smaller) path MTU, e.g. from ICMP "fragmentation
        needed" (RFC 1191) or a PLPMTUD probe; never below the 536/1220 minimum."""
        floor = 1220 if ipv6 else 536
        mss = max(mtu - (60 if ipv6 else 40), floor)
        if self._ts_on:
            mss -= _TS_OPTION_LEN
        if mss < self._smss:
            self._smss = mss
            self._cc.mss = mss
            self._set_seg_max()

    def _set_seg_max(self) -> None:
        tso = self.config.tso_max
        smss = self._smss
        seg = tso - tso % smss
        self._seg_max = (seg if seg > smss else smss) if tso else smss
        # Receiver SWS avoidance's least worthwhile opening (RFC 9293 3.8.6.2.2), kept
        # here with the segment size it follows, not worked out for every segment sent.
        half = self.config.recv_buffer // 2
        self._sws_open = half if half < smss else smss

    # ------------------------------------------------------------------ application API

    def send(self, data: Buffer, *, nodelay: bool = False) -> int:
        """Queue bytes to send; returns how many fit in the send buffer (back-pressure).

        ``nodelay`` sends these bytes without waiting for Nagle (``write_nodelay``).
        Raises ``ValueError`` after ``close`` or when the connection is closed.
        """
        if self._fin_queued or self.state in (CLOSED, TIME_WAIT):
            raise ValueError("send: the connection is closed for sending")
        room = self.config.send_buffer - self._sndbuf.size
        n = len(data)
        if n > room:
            n = room
            self._want_writable = True
            data = memoryview(data)[:n]
        if n:
            self._sndbuf.append(data)
            if nodelay:
                self._push_upto = self._snd_buf_seq + self._sndbuf.size
        return n

    def segment_now(self, now: float) -> TCPRepr | None:
        """:meth:`data_now`'s segment as a :class:`TCPRepr` (None when it gives None)."""
        fields = self.data_now(now)
        return None if fields is None else self.segment_of(fields)

    def segment_of(self, fields: DataFields) -> TCPRepr:
        """The segment whose fields :meth:`data_now` gave (for the general way to send)."""
        seq, ack, flags, window, payload, ts = fields
        return plain_segment(
            self.local_port, self.remote_port, seq, ack, flags, window, payload, (), ts
        )

    def data_now(self, now: float) -> DataFields | None:
        """The one segment that carries everything ``send`` queued, when it all goes out
        whole now: an established connection with nothing in flight, nothing else to
        send (no control segment, retransmission, probe, recovery, SACK or ECN news),
        the queued data within one MSS, the peer's window and cwnd. Else None, and
        nothing changed: ``segments_to_send`` takes the general way.

        Given as its fields ``(seq, ack, flags, window, payload, timestamp)`` (no SACK
        blocks, no ECN mark, no other option: what a prebuilt header covers,
        :meth:`TcpSender.data_frame`), not as a :class:`TCPRepr` that the sender would
        only take apart again.

        Why: a request/response server's every reply is this case, and the general walk
        (``segments_to_send`` -> ``_send_data`` -> ``_emit_range`` -> ``_make``) was most
        of its sending cost. The segment and everything this does are exactly what
        ``segments_to_send(now)`` would give and do (tests/test_tcp_small_send.py)."""
        una = self._snd_una
        n = self._sndbuf.size
        if (
            not self._fields_suffice()
            or self._snd_max != una
            or self._snd_nxt != una
            or self._snd_buf_seq != una
            or self._probe
            or not 0 < n <= self._smss
            or n > self._snd_wnd
            or n > self._cc.cwnd + self._inflate
        ):
            return None
        end = una + n
        payload = self._sndbuf.slice(0, n)
        # _make's fields and bookkeeping; no SACK blocks (no out-of-order data, no D-SACK).
        ack, window, ts = self._fields(ACK | PSH, now)
        if self._rtt_seq is None and not self._ts_on:
            self._rtt_seq = end
            self._rtt_time = now
        self._snd_max = self._snd_nxt = end
        if self._rtx_at is None:
            self._rtx_at = now + self._rtt.timeout()
        self._arm_tlp(now)
        if self._sack_on:
            self._scoreboard.record_sent(end, now)
        self._cwnd_use(now, una)
        return una & MASK, ack, ACK | PSH, window, payload, ts

    def ack_now(self, now: float) -> DataFields | None:
        """The pure ACK that :meth:`segments_to_send` would give as its only segment now,
        as :meth:`data_now`'s fields (what a prebuilt header covers): an established
        connection owing an ACK (its delayed ACK's timer fired, or an input asked for one
        at once) with nothing else to send (no control segment, data, retransmission,
        probe, recovery, SACK blocks or ECN). Else None, and nothing changed.

        Why: the client's delayed ACK is the third frame of every request/response,
        and the general walk made a :class:`TCPRepr` of it that the sender only took
        apart again. The segment and the bookkeeping are ``segments_to_send``'s
        (tests/test_tcp_timer_ack.py)."""
        if (
            not self._ack_now
            or not self._fields_suffice()
            or self._snd_nxt < self._snd_buf_seq + self._sndbuf.size + self._fin_queued
        ):
            return None
        seq = self._ack_seq()  # before _fields, as segments_to_send's _make call takes them
        ack, window, ts = self._fields(ACK, now)
        return seq & MASK, ack, ACK, window, b"", ts

    def _fields_suffice(self) -> bool:
        """An established connection that owes nothing a prebuilt header cannot carry:
        no control segment, retransmission, probe (TLP), recovery, ECN news, D-SACK or
        SACK blocks (out-of-order data). What :meth:`data_now` and :meth:`ack_now` both
        ask before giving a segment as its fields."""
        return (
            self.state is ESTABLISHED
            and not self._ctl_out
            and not self._rexmit
            and not self._tlp_probe
            and not self._in_recovery
            and self._ecn is None
            and self._dsack is None
            and not self._ooo.ranges
        )

    @property
    def send_buffer_free(self) -> int:
        return self.config.send_buffer - self._sndbuf.size

    @property
    def unsent(self) -> int:
        """Bytes queued by ``send`` that have not been transmitted even once."""
        return max(0, self._snd_buf_seq + self._sndbuf.size - max(self._snd_nxt, self._snd_max))

    @property
    def send_queued(self) -> int:
        """Bytes sent but not acknowledged, plus bytes not yet sent."""
        return self._sndbuf.size

    def set_nodelay(self, on: bool) -> None:
        self._nodelay = on

    def receive(self, max_bytes: int = -1) -> bytearray:
        """Take up to ``max_bytes`` (all when negative) of in-order received data.

        Taking everything hands over the buffer itself (no copy); the caller owns it.
        """
        buf = self._rcvbuf
        if not buf:
            self._readable_signalled = False
            return bytearray()
        if max_bytes < 0 or max_bytes >= len(buf):
            out = buf
            self._rcvbuf = buf = bytearray()
        else:
            out = buf[:max_bytes]
            del buf[:max_bytes]
        if not buf:
            self._readable_signalled = False
        # Announce a window that has opened a lot (inlined: once per read).
        if self.state in _RECEIVING:
            cfg = self.config
            cur = self._rcv_adv - self._rcv_nxt
            free = cfg.recv_buffer - len(buf)
            if free >= 2 * cur and free - cur >= self._sws_open:
                self._ack_now = True
        return out

    @property
    def readable(self) -> int:
        return len(self._rcvbuf)

    @property
    def at_eof(self) -> bool:
        """The peer's FIN arrived and every byte before it has been read."""
        return self._rcv_fin is not None and self._rcv_nxt > self._rcv_fin and not self._rcvbuf

    def close(self, *, discard_input: bool = False) -> None:
        """Send what is queued, then FIN (RFC 9293 CLOSE). Idempotent.

        ``discard_input``: the application will read nothing more (a socket's close(),
        not a half-close). Then data not yet read, or data arriving later, resets the
        connection instead, so the peer learns its data was lost (RFC 1122 4.2.2.13,
        RFC 9293 3.10.4) rather than waiting on a zero window.
        """
        if discard_input and self.state != CLOSED:
            self._discard_input = True
            if self._rcvbuf or self._ooo.ranges:
                self._lose_input()
                return
        st = self.state
        if self._fin_queued or st == CLOSED:
            return
        if st == SYN_SENT:
            self._terminate(None)
            return
        self._fin_queued = True
        self._fin_seq = self._snd_buf_seq + self._sndbuf.size
        if st == ESTABLISHED:
            self.state = FIN_WAIT_1
        # In SYN_RECEIVED the FIN waits for ESTABLISHED (RFC 9293 3.10.4).
        elif st == CLOSE_WAIT:
            self.state = LAST_ACK

    def abort(self) -> None:
        """Reset the connection (RFC 9293 ABORT): one RST goes out, then CLOSED."""
        if self.state in (SYN_RECEIVED, ESTABLISHED, FIN_WAIT_1, FIN_WAIT_2, CLOSE_WAIT):
            self._queue_ctl(self._make(RST | ACK, self._edge_seq(self._snd_nxt), b""))
        self._terminate(None)

    def _edge_seq(self, nxt: int) -> int:
        """``nxt``, unless a zero-window probe took it past the peer's window: then the
        window's edge, the one number a shut window accepts (RFC 9293 3.10.7.4, RFC 5961
        3.2). A segment without data past it is dropped whole, ACK included."""
        edge = self._snd_una + self._snd_wnd
        return edge if edge < nxt else nxt

    def _ack_seq(self) -> int:
        """The sequence number of a pure ACK: the highest sent (SND.MAX, as Linux's
        SND.NXT), not SND.NXT, which a timeout moves back: the peer takes a window update
        only from a segment whose number is not below the last one's (SND.WL1), so ACKs
        numbered back from where our data had reached would never tell it that our
        window shut, and it would go on sending into it. At the window's edge at most."""
        return self._edge_seq(self._snd_max)

    def _old_probe(self, now: float) -> TCPRepr:
        """A probe the peer must answer with an ACK (its window and what it has), as a
        keepalive and a zero-window probe are: no data, and the sequence number before
        SND.UNA, which no window accepts (RFC 9293 3.10.7.4: an unacceptable segment is
        answered with an ACK). Nothing is taken from the send buffer and SND.NXT stays."""
        return self._make(ACK, self._snd_una - 1, b"", now)

    def _lose_input(self) -> None:
        self._count("resets_data_lost")
        self.abort()

    def icmp_error(self, seq: int, *, refused: bool, mtu: int | None, ipv6: bool = False) -> bool:
        """An ICMP error quoting our segment with sequence number ``seq``; False (and
        nothing done) unless ``seq`` is one we sent and is not yet acknowledged (RFC 5927
        4.1: a blind attacker must guess it). A smaller path ``mtu`` lowers the segment
        size (RFC 1191) and resends what is in flight at once in the new size; port or
        protocol unreachable (``refused``) ends a connection still in SYN_SENT at once,
        as Linux does (RFC 1122 4.2.3.9)."""
        una = self._snd_una
        if (seq - una) & MASK > (self._snd_max - una) & MASK:
            return False
        if mtu is not None:
            before = self._smss
            self.set_path_mtu(mtu, ipv6=ipv6)
            if self._smss < before and self._snd_max > una and self.state in _SENDING:
                # As Linux (tcp_simple_retransmit): the segments in flight were too big
                # for the path and are lost; go back to snd.una now, congestion window
                # untouched (the data in flight did not grow, only its units shrank).
                self._snd_nxt = una
                self._scoreboard.rxt.clear()
                self._in_recovery = False
                self._inflate = 0
                self._dupacks = 0
                self._recover = self._snd_max
                self._high_rxt = una
                self._rtt_seq = None
        if refused and self.state == SYN_SENT:
            self._terminate(_EVT_REFUSED)
        return True

    def address_lost(self) -> None:
        """Our address went away (a DHCP lease lost or changed): end at once and send
        nothing more, since no segment may leave from an address we no longer own; the
        application sees a reset."""
        self._ctl_out = None
        self._terminate(_EVT_RESET)

    def set_reader(
        self, callback: Callable[[], None] | None, into: list[Callable[[], None]] | None = None
    ) -> None:
        """Tell newly readable data by calling ``callback`` (with no arguments, from inside
        the segment's processing: it must not call into this connection) instead of
        queueing a :class:`DataReceived` event; None: events again. Why: a driver that
        hands the data straight to one reader (an asyncio transport's ``data_received``)
        saves the event, the list it comes in and the dispatch on its type, twice per
        request of a keep-alive server. Every other event is queued as before.

        With ``into``, ``callback`` is appended to that list instead of called: a driver
        that calls its readers after the segment's processing needs no callable made per
        connection for it (a partial of the list's append costs four objects)."""
        self._reader = callback
        self._reader_list = None if callback is None else into

    def _event(self, ev: Event) -> None:
        """Queue ``ev`` for the application (:meth:`next_event`, :meth:`take_events`)."""
        evs = self._events
        if evs is None:
            self._events = [ev]
        else:
            evs.append(ev)

    def next_event(self) -> Event | None:
        evs = self._events
        return evs.pop(0) if evs else None

    def take_events(self) -> list[Event]:
        """Every pending event at once, oldest first (one call where draining with
        :meth:`next_event` takes one per event and one more)."""
        evs = self._events
        if evs:
            self._events = None
            return evs
        return []

    # ------------------------------------------------------------------ timers

    def poll_at(self, quiet: bool = False) -> float | None:
        """When ``handle_timer`` must be called next (None: no timer needed; 0.0: now,
        output is due). ``quiet``: -1.0 whenever :meth:`quiet` is false, else the same:
        the endpoint's one question after a segment's input (nothing to send: only the
        timer entry), one call where asking both took two (deadlines are clock times,
        never negative)."""
        if self._ctl_out or self._ack_now:
            return -1.0 if quiet else 0.0
        if quiet:
            st = self.state
            if not (
                (st is ESTABLISHED or st is CLOSE_WAIT)
                and not self._rexmit
                and not self._tlp_probe
                and not self._in_recovery
                and self._snd_nxt >= self._snd_buf_seq + self._sndbuf.size + self._fin_queued
            ):
                return -1.0
        # Each deadline tested where it is, read again only when set: most are unset
        # most of the time, and an unset one then costs a test, not a copy and a test
        # (twice a request: after its input and after the reply).
        t = self._rtx_at
        if self._ack_at is not None and (t is None or self._ack_at < t):
            t = self._ack_at
        if self._close_at is not None and (t is None or self._close_at < t):
            t = self._close_at
        if self._ka_at is not None and (t is None or self._ka_at < t):
            t = self._ka_at
        if self._tlp_at is not None and (t is None or self._tlp_at < t):
            t = self._tlp_at
        if self._rack_at is not None and (t is None or self._rack_at < t):
            t = self._rack_at
        return t

    def handle_timer(self, now: float) -> None:
        c = self._close_at
        if c is not None and now >= c:
            self._close_at = None
            if self.state == FIN_WAIT_2:
                self._terminate(_EVT_TIMEOUT)
            else:
                self._terminate(None)
            return
        a = self._ack_at
        if a is not None and now >= a:
            self._ack_at = None
            self._ack_now = True
        p = self._tlp_at
        if p is not None and now >= p:
            self._tlp_at = None
            if (
                self.state in _SENDING
                and self._snd_max > self._snd_una
                and (not self._in_recovery or self._rack_at is None)
                and self._tlp_end is None
                and self._tlp_rtt
            ):
                # RFC 8985 7.3: one probe; the RTO (not the PTO) is armed again.
                self._tlp_probe = True
                self._rtx_at = now + self._rtt.timeout()  # _send_probe: from the head's send
        q = self._rack_at
        if q is not None and now >= q:
            self._rack_at = None
            if self.state in _SENDING and self._sack_on:
                self._rack_detect(now)
                self._maybe_enter_recovery(now)
        r = self._rtx_at
        if r is not None and now >= r:
            self._on_rto(now)
        k = self._ka_at
        if k is not None and now >= k and self.state != CLOSED:
            self._on_keepalive(now)

    def _on_keepalive(self, now: float) -> None:
        """RFC 9293 3.8.4 / RFC 1122 4.2.3.6: probe an idle peer; give up when it is gone."""
        cfg = self.config
        assert cfg.keepalive_idle is not None
        if self._snd_max > self._snd_una or self.state not in (ESTABLISHED, CLOSE_WAIT):
            # Data in flight: the retransmission timer watches the peer.
            self._ka_at = now + cfg.keepalive_idle
            return
        if self._ka_probes >= cfg.keepalive_probes:
            self._terminate(_EVT_TIMEOUT)
            return
        self._ka_probes += 1
        self._queue_ctl(self._old_probe(now))
        self._ka_at = now + cfg.keepalive_interval

    def _on_rto(self, now: float) -> None:
        st = self.state
        limit = (
            self.config.syn_retries
            if st in (SYN_SENT, SYN_RECEIVED)
            else self.config.max_retransmits
        )
        if self._retries >= limit:
            self._terminate(_EVT_TIMEOUT)
            return
        self._retries += 1
        self._count("rto")
        self._tlp_at = None
        self._tlp_probe = False
        self._tlp_end = None
        rtt = self._rtt
        rtt.on_expiry()
        self._rtx_at = now + rtt.timeout()
        self._rtt_seq = None
        if self._snd_max == self._snd_una:
            # Nothing in flight: the persist timer (zero window), send a probe.
            self._probe = True
            return
        if st not in (SYN_SENT, SYN_RECEIVED):
            cc = self._cc
            if self._retries > 1 or self._in_recovery:
                # The same segment timed out again (RFC 5681 3.1: ssthresh is held
                # constant), or fast recovery already made this episode's reduction
                # (as Linux keeps its ssthresh): only the loss window.
                cc.cwnd = self._smss
            else:
                self._start_episode()
                # FlightSize without what went beyond cwnd because the peer had it
                # already (SACKed data), as for fast retransmit (RFC 5681 3.2).
                flight = self._snd_max - self._snd_una
                cc.on_rto(now, flight if flight < cc.cwnd else cc.cwnd)
            self._rto_recovery = True
        self._snd_nxt = self._snd_una
        if self._retries > 1:
            # RFC 2018 8: after a timeout the SACK information may be stale (the peer
            # may renege); from the second timeout on, resend everything.
            self._scoreboard.clear()
        else:
            self._scoreboard.rxt.clear()
        self._in_recovery = False
        self._inflate = 0
        self._dupacks = 0
        self._recover = self._snd_max
        self._high_rxt = self._snd_una
        if self._snd_wnd == 0:
            self._probe = True

    # ------------------------------------------------------------------ segment input

    def takes_run(self, seq: int) -> bool:
        """Whether in-order data from ``seq`` may come as one run: the payloads of
        back-to-back frames merged into one segment (as GRO merges them), given through
        :meth:`handle_run`. Only in the steady state of a bulk transfer, where taking
        the frames one by one ends in the same state and sends the same ACKs: the next
        expected data, established, nothing out of order or quick-ACKed, no FIN."""
        return (
            self.state is ESTABLISHED
            and seq == self._rcv_nxt & MASK
            and not self._ooo.ranges
            and not self._quickacks
            and self._rcv_fin is None
            and not self._discard_input
        )

    def takes_ack(self, seq: int, ack32: int, tsv: int) -> bool:
        """Whether a pure ACK (no data, flags ACK only, no SACK blocks, not CE-marked)
        from ``seq`` acknowledging ``ack32``, TSval ``tsv``, may stand for the pure ACKs
        of the same batch before it that this also said yes to: taken alone it ends in
        the state they and it would end in, taken one by one. Why: a bulk sender meets
        one ACK every few segments, and each cost more than a segment sent.

        Only in the steady state of a bulk send: established, the next expected
        sequence number, new data acknowledged within what was sent, a TSval PAWS
        accepts, congestion avoidance (which counts bytes, where slow start's growth is
        capped per ACK: RFC 3465), outside recovery, nothing SACKed, no probe episode,
        FIN, ECN or spurious-loss check: header prediction takes it. What differs is what
        a receiver's stretch ACK would change: one RTT sample instead of one per ACK."""
        una = self._snd_una
        ack = una + (((ack32 - una) + 0x80000000) & MASK) - 0x80000000
        cc = self._cc
        return (
            self.state is ESTABLISHED
            and seq == self._rcv_nxt & MASK
            and una < ack <= self._snd_max
            and cc.cwnd >= cc.ssthresh
            and self._plain_ack_state()
            and (not self._ts_on or ((tsv - self._ts_recent) & MASK) < 0x80000000)
        )

    def _plain_ack_state(self) -> bool:
        """Nothing pending that an ACK of new data would have the general ACK processing
        attend to: outside recovery, nothing SACKed, no probe episode (TLP), FIN, ECN or
        spurious-loss check. What header prediction (:meth:`handle_next`) and
        :meth:`takes_ack` both ask of the connection."""
        return (
            not self._in_recovery
            and not self._scoreboard.blocks
            and self._tlp_end is None
            and not self._fin_queued
            and self._ecn is None
            and self._prior_cc is None
        )

    def handle_run(self, now: float, seg: TCPRepr, size: int) -> None:
        """A run (:meth:`takes_run`) of frames of ``size`` bytes of data each (the last
        may hold less): the delayed-ACK rule counts full-sized segments of ``size``
        (RFC 5681 4.2), not the merged length."""
        self._run_size = size
        try:
            self.handle_segment(now, seg)
        finally:
            self._run_size = 0

    def handle_next(
        self,
        now: float,
        seq32: int,
        ack32: int,
        window: int,
        payload: Buffer,
        ts: tuple[int, int] | None,
        seg: TCPRepr | None = None,
    ) -> bool:
        """Header prediction (RFC 9293 3.10.7.4, after Van Jacobson): the next expected
        segment of an established connection, an ACK without SYN, FIN, RST or URG (the
        caller checked the flags), passes every acceptability test by construction, so
        its ACK, window and data are taken here without the general walk. False, with
        nothing changed, when the segment is not that: :meth:`handle_segment` judges it.

        ``seg``: the parsed segment, for the ACKs that need the general ACK processing
        (partial, SACK, recovery, ECN). The driver's frame path gives None and no
        TCPRepr is made for the usual segment: then only an ACK of new data (a
        request/response peer's every request, a bulk sender's every ACK) or of nothing
        new with the window unchanged (a bulk receiver's every segment), without SACK
        blocks and on a connection without ECN, is taken; anything else is declined."""
        rcv_nxt = self._rcv_nxt
        if self.state is not ESTABLISHED or seq32 != rcv_nxt & MASK:
            return False
        plen = len(payload)
        una = self._snd_una
        smax = self._snd_max
        ack = una + (((ack32 - una) + 0x80000000) & MASK) - 0x80000000
        if (
            plen > self._rcv_adv - rcv_nxt
            or not una - self._max_snd_wnd <= ack <= smax
            or (self._ts_on and (ts is None or ((ts[0] - self._ts_recent) & MASK) >= 0x80000000))
        ):
            return False
        sack = seg is not None and seg.sack_blocks
        if smax >= ack > una and not sack and self._plain_ack_state():
            # New data acknowledged (all in flight: a request/response peer's every
            # request; part of it: a bulk sender's every ACK), nothing SACKed, no
            # recovery, probe episode, FIN, ECN or spurious-loss check to follow: none
            # of the general ACK processing's other branches applies.
            how = 1
        elif (
            plen
            and ack == una
            and not self._in_recovery
            and not self._probe
            and not sack
            and not self._scoreboard.blocks
            and window << self._snd_wscale == self._snd_wnd
            and (seg is not None or self._ecn is None)
        ):
            # Data that acknowledges nothing new and keeps the window (a bulk
            # receiver's every segment): all the ACK processing would do is the window
            # update (and, with ECN, the CE mark: only from a parsed segment).
            how = 2
        elif seg is not None:
            how = 0
        else:
            return False  # (the first case has no ECN: _plain_ack_state)
        self._segs_in += 1
        ka_idle = self.config.keepalive_idle
        if ka_idle is not None and self._ka_at is not None:
            self._ka_probes = 0
            self._ka_at = now + ka_idle
        if how == 1:
            self._take_window(rcv_nxt, ack, window)
            self._rack_at = None
            self._on_new_ack(now, ts, ack)
        elif how == 2:
            # The window is unchanged; WL1 and WL2 move as the RFC's rule says (not
            # back, when an out-of-order segment moved WL1 beyond this one).
            self._take_window(rcv_nxt, ack, window)
            if seg is not None and self._ecn is not None:
                self._ecn_input(now, seg, una)
        else:
            assert seg is not None
            self._on_ack(now, seg, rcv_nxt, ack, plen)
        if ts is not None and self._ts_on and rcv_nxt <= self._last_ack_sent:
            self._ts_recent = ts[0]
            self._ts_recent_at = now
        if plen and self.state in _RECEIVING:
            if self._discard_input:
                self._lose_input()
                return True
            self._on_data(now, rcv_nxt, payload)
            if self._rcv_fin is not None and self._rcv_nxt == self._rcv_fin:
                self._on_fin(now)
        return True

    def handle_segment(self, now: float, seg: TCPRepr) -> None:
        """Process one received segment (already demultiplexed and checksum-verified)."""
        flags = seg.flags
        if flags & 0x37 == ACK and self.handle_next(
            now, seg.seq, seg.ack, seg.window, seg.payload, seg.timestamp, seg
        ):
            return
        self._segs_in += 1
        st = self.state
        if st == CLOSED:
            return
        ka_idle = self.config.keepalive_idle
        if ka_idle is not None and self._ka_at is not None:
            self._ka_probes = 0
            self._ka_at = now + ka_idle
        rcv_nxt = self._rcv_nxt
        if st is LAST_ACK and self._last_ack(seg, flags, rcv_nxt):
            return
        if st is SYN_RECEIVED and self._handshake_ack(now, seg, flags, rcv_nxt):
            return
        if st is ESTABLISHED and flags & FIN and self._peer_fin(now, seg, flags, rcv_nxt):
            return
        if st == SYN_SENT:
            self._on_syn_sent(now, seg)
            return
        seq = rcv_nxt + (((seg.seq - rcv_nxt) + 0x80000000) & MASK) - 0x80000000
        payload = seg.payload
        plen = len(payload)

        if st == SYN_RECEIVED and flags & SYN and seq == self._irs:
            # The peer retransmitted its SYN (our SYN-ACK was lost), or this is the
            # SYN-ACK of a simultaneous open.
            if flags & ACK and not flags & RST:
                ack = self._unwrap_ack(seg.ack)
                if self._snd_una < ack <= self._snd_max:
                    self._establish(now, seg, ack, seq)
                    self._ack_now = True
                    return
            if not flags & (ACK | RST):
                self._snd_nxt = self._iss  # resend the SYN-ACK
            return

        ts = seg.timestamp
        # PAWS (RFC 7323 5.3); a TS.Recent idle for 24 days is too old to judge by (5.5).
        if (
            self._ts_on
            and ts is not None
            and not flags & RST
            and ((ts[0] - self._ts_recent) & MASK) > HALF  # older than TS.Recent
            and now - self._ts_recent_at < _PAWS_IDLE
        ):
            self._count("dropped")
            self._ack_now = True
            return

        wnd = self._rcv_adv - rcv_nxt
        if wnd < 0:
            wnd = 0
        seglen = plen + (1 if flags & SYN else 0) + (1 if flags & FIN else 0)

        if flags & RST:
            # RFC 5961 3.2: exact match resets, in-window gets a challenge ACK.
            if seq == rcv_nxt:
                self._on_reset()
            elif rcv_nxt < seq < rcv_nxt + max(wnd, 1):
                self._challenge_ack(now)
            else:
                self._count("dropped")
            return

        # RFC 9293 3.10.7.4: with a zero receive window no segment is acceptable, "but
        # special allowance should be made to accept valid ACKs": the ACK and window of a
        # segment at the window's edge are taken, its data dropped (and answered with our
        # ACK, which says the window is still shut). Else, when both ends' windows are
        # shut with data in flight both ways, each end's ACKs ride on data the other
        # drops whole, and neither send buffer drains until retransmission timers,
        # backed off each round, happen to line up.
        edge_ack = not wnd and seq == rcv_nxt and plen and flags & ACK and not flags & SYN
        if edge_ack:
            self._count("dropped")
            self._ack_now = True
        elif not acceptable(seq, seglen, rcv_nxt, wnd):
            self._count("dropped")
            self._ack_now = True
            if plen and seq < rcv_nxt and self._sack_on:
                self._dsack = (seq, min(seq + plen, rcv_nxt))  # a duplicate: say so
            if st == TIME_WAIT and flags & FIN:
                self._close_at = now + self.config.time_wait
            return

        if flags & SYN:
            # RFC 5961 4: a SYN in a synchronized state gets a challenge ACK.
            self._challenge_ack(now)
            return

        if not flags & ACK:
            self._count("dropped")
            return

        ack = self._unwrap_ack(seg.ack)
        if st == SYN_RECEIVED:
            if not self._snd_una < ack <= self._snd_max:
                self._queue_ctl(TCPRepr(self.local_port, self.remote_port, seg.ack, 0, RST, 0))
                return
            self._establish(now, seg, ack, seq)
            st = self.state
        else:
            # RFC 5961 5.2: the ACK must be within the window of recently sent data.
            if ack > self._snd_max or ack < self._snd_una - self._max_snd_wnd:
                self._challenge_ack(now)
                return
            self._on_ack(now, seg, seq, ack, plen)
            st = self.state
            if st == CLOSED:
                return

        # Timestamp bookkeeping (RFC 7323 4.3): remember the peer's newest TSval.
        if (
            self._ts_on
            and ts is not None
            and seq <= self._last_ack_sent
            and ((ts[0] - self._ts_recent) & MASK) <= HALF  # not older than TS.Recent
        ):
            self._ts_recent = ts[0]
            self._ts_recent_at = now

        if edge_ack:
            return  # the data (and a FIN after it) lay beyond the window
        if plen and st in _RECEIVING:
            if self._discard_input and seq + plen > self._rcv_nxt:
                self._lose_input()
                return
            self._on_data(now, seq, payload)
        if flags & FIN and seq + plen <= self._rcv_adv and st in _RECEIVING:
            self._rcv_fin = seq + plen
        if self._rcv_fin is not None:
            if self._rcv_nxt == self._rcv_fin:
                self._on_fin(now)
            elif flags & FIN:
                self._ack_now = True  # FIN beyond a hole: say at once what is missing

    def _last_ack(self, seg: TCPRepr, flags: int, rcv_nxt: int) -> bool:
        """A passive close's last segment: the bare, in-order ACK of everything we sent,
        FIN included. It ends the connection, as the full path would (which would first
        sample the RTT, grow cwnd and arm timers, for a connection about to go); anything
        else (data, SACK, an ECN connection, an old timestamp, a waiting writer) goes
        that path; so its counters and events are the full path's. True: done."""
        smax = self._snd_max
        if (
            flags & 0x37 != ACK  # ACK without SYN/FIN/RST/URG (PSH allowed)
            or seg.payload
            or seg.sack_blocks
            or seg.seq != rcv_nxt & MASK
            or seg.ack != smax & MASK
            or smax <= self._fin_seq  # our FIN has not gone out yet
            or self._ecn is not None
            or self._want_writable
            or self._tlp_end is not None  # a probe's episode: its ACK may count a recovery
            or self._scoreboard.blocks
            or self._rcv_adv <= rcv_nxt  # a zero window: the full path judges it
        ):
            return False
        if self._ts_on:
            ts = seg.timestamp
            if ts is not None and ((ts[0] - self._ts_recent) & MASK) > HALF:
                return False  # PAWS: the full path drops it
        self._terminate(None)
        return True

    def _peer_fin(self, now: float, seg: TCPRepr, flags: int, rcv_nxt: int) -> bool:
        """A passive close's first segment: the peer's bare FIN, in order, acknowledging
        all we sent while nothing of ours is in flight, in an open window. CLOSE_WAIT and
        the end of stream, as the full path would do (its window update, TS.Recent,
        ``_on_fin``), without its acceptability and ACK walk, none of whose other
        branches applies then. Anything else (data, SACK, ECN, recovery or a probe, an
        old timestamp, a zero window) goes that path. True: done."""
        una = self._snd_una
        if (
            flags & 0x37 != ACK | FIN  # FIN+ACK without SYN/RST/URG (PSH allowed)
            or seg.payload
            or seg.sack_blocks
            or seg.seq != rcv_nxt & MASK
            or seg.ack != una & MASK
            or self._snd_max != una
            or self._rcv_adv <= rcv_nxt
            or self._fin_queued
            or self._ecn is not None
            or self._in_recovery
            or self._tlp_end is not None
            or self._scoreboard.blocks
        ):
            return False
        ts = seg.timestamp
        if self._ts_on and ts is not None and ((ts[0] - self._ts_recent) & MASK) > HALF:
            return False  # PAWS: the full path judges it
        self._take_window(rcv_nxt, una, seg.window)
        self._rack_at = None
        if ts is not None and self._ts_on and rcv_nxt <= self._last_ack_sent:
            self._ts_recent = ts[0]
            self._ts_recent_at = now
        self._rcv_fin = rcv_nxt
        self._on_fin(now)
        return True

    def _handshake_ack(self, now: float, seg: TCPRepr, flags: int, rcv_nxt: int) -> bool:
        """The handshake's ACK, in order, acknowledging all we sent, with or without data
        that fits the window: ESTABLISHED and the data taken, as the full path would do,
        without its acceptability walk. Anything else (an old timestamp, a FIN, a partial
        or bad ACK) goes that path. True: done."""
        payload = seg.payload
        smax = self._snd_max
        if (
            flags & 0x37 != ACK  # ACK without SYN/FIN/RST/URG (PSH allowed)
            or seg.seq != rcv_nxt & MASK
            or seg.ack != smax & MASK
            or smax == self._snd_una  # our SYN-ACK not sent yet: nothing to acknowledge
            or len(payload) > self._rcv_adv - rcv_nxt
        ):
            return False
        ts = seg.timestamp
        if self._ts_on and ts is not None and ((ts[0] - self._ts_recent) & MASK) > HALF:
            return False  # PAWS: the full path judges it
        self._establish(now, seg, smax, rcv_nxt)
        if ts is not None and self._ts_on and rcv_nxt <= self._last_ack_sent:
            self._ts_recent = ts[0]
            self._ts_recent_at = now
        if payload and self.state in _RECEIVING:
            if self._discard_input:
                self._lose_input()
                return True
            self._on_data(now, rcv_nxt, payload)
        return True

    def _unwrap_ack(self, ack32: int) -> int:
        una = self._snd_una
        return una + (((ack32 - una) + 0x80000000) & MASK) - 0x80000000

    def _on_syn_sent(self, now: float, seg: TCPRepr) -> None:
        flags = seg.flags
        ack = 0
        if flags & ACK:
            ack = self._unwrap_ack(seg.ack)
            if ack <= self._iss or ack > self._snd_max:
                if not flags & RST:
                    self._queue_ctl(TCPRepr(self.local_port, self.remote_port, seg.ack, 0, RST, 0))
                self._count("dropped")
                return
        if flags & RST:
            if flags & ACK:
                self._terminate(_EVT_REFUSED)
            return
        if not flags & SYN:
            return
        self._irs = seg.seq
        self._rcv_nxt = seg.seq + 1
        self._last_ack_sent = self._rcv_nxt
        self._negotiate(seg)
        self._ts_recent_at = now
        self._rcv_adv = self._rcv_nxt + min(self.config.recv_buffer, 65535)
        if flags & ACK:
            self._establish(now, seg, ack, seg.seq)
            self._ack_now = True
            if self._tfo is not None:
                self._fastopen_synack(seg, ack)
        else:
            # Simultaneous open (RFC 9293 figure 7): answer with SYN-ACK.
            self.state = SYN_RECEIVED
            self._snd_wnd = seg.window
            self._max_snd_wnd = seg.window
            self._snd_wl1 = seg.seq
            self._snd_nxt = self._iss

    def _fastopen_synack(self, seg: TCPRepr, ack: int) -> None:
        """RFC 7413 4.2.2: the SYN data the SYN-ACK acknowledged leaves the send buffer;
        what it did not goes again at once (the server ignored it, or had no cookie of
        ours); a cookie in the SYN-ACK is kept for the next connection."""
        tfo = self._tfo
        assert tfo is not None
        tfo.learnt = option_of(seg) or None
        tfo.acked = ack > self._iss + 1
        if self._snd_nxt > ack:
            self._snd_nxt = ack

    def _establish(self, now: float, seg: TCPRepr, ack: int, seq: int) -> None:
        self.state = ESTABLISHED
        self._snd_una = ack
        if self._snd_nxt < ack:
            self._snd_nxt = ack
        if self._rtt_seq is not None and ack >= self._rtt_seq:
            self._rtt.sample(now - self._rtt_time)
            self._rtt_seq = None
        self._rtt.reset_backoff()
        if self._retries:
            # Our SYN or SYN-ACK was lost: start with one segment (RFC 5681 3.1) and,
            # with no RTT sample, a 3 s timeout (RFC 6298 5.7), as Linux does. An
            # echoed timestamp times even the retransmitted one (RFC 7323 4.2).
            ts = seg.timestamp
            if self._ts_on and ts is not None and ts[1]:
                sample = ((int(now * 1000) + self._ts_offset - ts[1]) & MASK) / 1000.0
                if sample < 3600:
                    self._rtt.sample(sample)
            self._cc.cwnd = self._smss
            self._rtt.fall_back(SYN_LOSS_RTO)
        self._retries = 0
        # Data sent with the handshake (Fast Open, either side) may be acknowledged now, or
        # still be in flight.
        taken = ack - self._snd_buf_seq
        if taken > 0:
            self._sndbuf.consume(taken)
            self._snd_buf_seq += taken
        self._rtx_at = now + self._rtt.timeout() if self._snd_max > ack else None
        self._snd_wnd = seg.window << self._snd_wscale if not seg.flags & SYN else seg.window
        if self._snd_wnd > self._max_snd_wnd:
            self._max_snd_wnd = self._snd_wnd
        self._snd_wl1 = seq
        self._snd_wl2 = ack
        self._recover = ack
        self._high_rxt = ack
        self._event(_EVT_CONNECTED)
        if self.config.keepalive_idle is not None:
            self._ka_at = now + self.config.keepalive_idle
        if self._fin_queued:
            self.state = FIN_WAIT_1

    def _take_window(self, seq: int, ack: int, window: int) -> None:
        """The window update (RFC 9293 3.10.7.4) of an acceptable ACK from ``seq``."""
        if self._snd_wl1 < seq or (self._snd_wl1 == seq and self._snd_wl2 <= ack):
            wnd = window << self._snd_wscale
            self._snd_wnd = wnd
            if wnd > self._max_snd_wnd:
                self._max_snd_wnd = wnd
            self._snd_wl1 = seq
            self._snd_wl2 = ack
            if wnd:
                self._probe = False

    def _on_ack(self, now: float, seg: TCPRepr, seq: int, ack: int, plen: int) -> None:
        una = self._snd_una
        if ack > una and self._prior_cc is not None and self._ts_on:
            self._eifel(seg, una, ack)
        old_wnd = self._snd_wnd
        self._take_window(seq, ack, seg.window)
        sack_new = False
        sb = self._scoreboard
        # RFC 6937 DeliveredData needs the SACKed bytes before this ACK (-1: not measured);
        # PRR in recovery, window growth outside it.
        sacked0 = (
            sb.sacked_bytes()
            if self._sack_on and (self._in_recovery or seg.sack_blocks or sb.blocks)
            else -1
        )
        dsack = False
        dsack_right = 0
        holes = bool(sb.blocks)  # before this ACK's blocks: was data below RACK.fack missing?
        if self._sack_on and seg.sack_blocks:
            smax = self._snd_max
            blocks = seg.sack_blocks
            for i, (left32, right32) in enumerate(blocks):
                left = una + (((left32 - una) + 0x80000000) & MASK) - 0x80000000
                right = una + (((right32 - una) + 0x80000000) & MASK) - 0x80000000
                if i == 0 and left < right <= smax and self._is_dsack(left, right, ack, blocks):
                    dsack = True
                    dsack_right = right
                    self._on_dsack(now, left, right)
                elif una < left < right <= smax and sb.add(left, right):
                    sack_new = True

        if sb.blocks and self._sack_on:
            self._rack_detect(now)
        elif self._rack_at is not None:
            self._rack_at = None  # nothing SACKed: no hole for RACK's timer to watch
        if ack > una:
            self._on_new_ack(now, seg.timestamp, ack, sacked0, holes)
            if sb.blocks:
                self._maybe_enter_recovery(now)
        elif (
            ack == una
            and self._snd_max > una
            and plen == 0
            and not seg.flags & (SYN | FIN)
            and (self._snd_wnd == old_wnd or sack_new)
            and (sack_new or not dsack)  # a lone D-SACK reports a duplicate, not a hole
        ):
            self._on_dupack(now, sack_new)
            if sack_new and self._reo.seen and not self._in_recovery:
                # Reordering seen, RACK waits before it calls a hole lost: the SACKed
                # data was delivered, and the window grows by it (as Linux does on
                # forward progress once reordering is seen), not only on a cumulative
                # ACK that may come after the recovery and never credit it.
                rtt = self._rtt
                self._cc.on_ack(now, sb.sacked_bytes() - sacked0, rtt.srtt or rtt.rto)
        if self._in_recovery and self._reducing and sacked0 >= 0:
            self._prr_on_ack(self._snd_una - una + sb.sacked_bytes() - sacked0)
        if self._tlp_end is not None and ack >= self._tlp_end:
            self._tlp_on_ack(now, seg, ack, una, dsack_right)
        if self._in_recovery and ack == una:
            self._arm_tlp(now)  # a SACK in recovery: the probe timeout restarts

        st = self.state
        if self._fin_queued and self._snd_una > self._fin_seq:
            # Our FIN is acknowledged.
            if st == FIN_WAIT_1:
                self.state = FIN_WAIT_2
                self._close_at = now + self.config.fin_wait_2_timeout
            elif st == CLOSING:
                self._enter_time_wait(now)
            elif st == LAST_ACK:
                self._terminate(None)
        elif st == TIME_WAIT and seg.flags & FIN:
            self._close_at = now + self.config.time_wait
            self._ack_now = True
        if self._ecn is not None:
            self._ecn_input(now, seg, una)

    def _ecn_input(self, now: float, seg: TCPRepr, una: int) -> None:
        """RFC 3168 6.1.2-6.1.3 on an acceptable segment: a CE mark starts the echo (ACKed
        at once), CWR ends it; an ECE reduces the window as a loss would, once per window
        (the loss response already did, in recovery), and CWR goes out with new data.
        ``una``: SND.UNA before this ACK, so the reduction is from the flight it ended."""
        ecn = self._ecn
        assert ecn is not None
        if seg.ecn == CE:
            self._count("ce_received")
        if seg.flags & CWR:
            self._count("cwr_received")
        if ecn.on_input(seg):
            self._ack_now = True
        if ecn.should_reduce(seg, self._snd_una, self._snd_max) and not self._in_recovery:
            self._count("ecn_reductions")
            flight = self._snd_max - una  # as a loss's: no more than cwnd (RFC 5681 3.2)
            self._cc.on_loss(now, flight if flight < self._cc.cwnd else self._cc.cwnd)

    def _on_new_ack(
        self,
        now: float,
        ts: tuple[int, int] | None,
        ack: int,
        sacked0: int = -1,
        holes: bool = False,
    ) -> None:
        """An ACK of new data, ``ts`` its timestamp option; ``sacked0``: the bytes SACKed
        before it (-1: nothing was, and it brings no SACK), so that the window grows by
        what it delivered (RFC 6937 DeliveredData): SACKed data once, when SACKed, not
        again when ACKed; ``holes``: data was SACKed before this ACK, so what it
        acknowledges at SND.UNA lay in a hole below RACK.fack."""
        una = self._snd_una
        acked = ack - una
        self._snd_una = ack
        if self._snd_nxt < ack:
            self._snd_nxt = ack
        # Free acknowledged bytes (whole chunks drop off the front of the send buffer).
        buf_seq = self._snd_buf_seq
        n = ack - buf_seq
        if n > 0:
            sndbuf = self._sndbuf
            ln = sndbuf.size  # the attribute: len() would call __len__ in Python
            if n >= ln:
                sndbuf.clear()
                self._snd_buf_seq = buf_seq + ln
            else:
                sndbuf.consume(n)
                self._snd_buf_seq = ack
            if self._want_writable and sndbuf.size <= self.config.send_buffer // 2:
                self._want_writable = False
                self._event(_EVT_WRITABLE)
        sb = self._scoreboard
        if holes and not self._in_recovery and not sb.rxt and self._snd_nxt >= self._snd_max:
            # A hole filled by its first transmission: reordering (RFC 8985 6.2 step 2).
            # A hole only if SACKed before this ACK: an ACK that both acknowledges the
            # segment a delayed ACK held and SACKs the one after a loss fills nothing.
            self._reo.seen = True
        if sb.blocks or sb.rxt:
            sb.advance(ack)
        if sb.sent_end:
            sb.trim_sent(ack)
        # RTT sample: from the echoed timestamp, else the one timed segment (Karn).
        rtt = self._rtt
        sample = -1.0
        if self._ts_on and ts is not None and ts[1]:
            sample = ((int(now * 1000) + self._ts_offset - ts[1]) & MASK) / 1000.0
            if sample >= 3600:
                sample = -1.0
            self._rtt_seq = None
        elif self._rtt_seq is not None and ack >= self._rtt_seq:
            sample = now - self._rtt_time
            self._rtt_seq = None
        if sample >= 0.0:
            rtt.sample(sample)
            self._tlp_rtt = True
        self._reo.on_ack(ack, sample)
        rtt.backoff = 0
        self._retries = 0
        self._dupacks = 0
        if self._rto_recovery and ack >= self._recover:
            self._rto_recovery = False
            self._reo.on_recovery_end()
        if self._in_recovery:
            if ack >= self._recover:
                self._in_recovery = False
                self._reo.on_recovery_end()
                self._inflate = 0
                # Retransmissions above the ACK stay recorded (in flight, in the pipe):
                # forgotten, RACK would call their holes lost at once and send them
                # again, and the new recovery's ledger would hold only that needless
                # copy, which the ACK of the first one would "prove" spurious.
                if self._sack_on and self._reducing:
                    self._cc.cwnd = self._cc.ssthresh  # PRR leaves recovery at ssthresh
            elif self._sack_on:
                if self._high_rxt < ack:
                    self._high_rxt = ack
            else:
                # RFC 6582 partial ACK: retransmit the next hole, deflate.
                self._rexmit = True
                infl = self._inflate - acked
                if acked >= self._smss:
                    infl += self._smss
                self._inflate = max(infl, 0)
        else:
            self._inflate = 0
            cc = self._cc
            if cc.hystart is not None and cc.ssthresh == INITIAL_SSTHRESH:
                cc.hystart.on_ack(ack, self._snd_max, sample)
            if sacked0 >= 0:
                acked += self._scoreboard.sacked_bytes() - sacked0
            cc.on_ack(now, acked, rtt.srtt or rtt.rto)
        if self._high_rxt < ack:
            self._high_rxt = ack
        if self._snd_max > ack:
            self._rtx_at = now + rtt.timeout()
            self._arm_tlp(now)
        else:
            self._rtx_at = self._tlp_at = None  # nothing in flight (as _arm_tlp would say)

    def _arm_tlp(self, now: float) -> None:
        """Arm the probe timeout (RFC 8985 7.2) outside recovery, with nothing SACKed
        (else RACK's timer watches), no probe outstanding and an RTT sampled since the
        last: PTO = 2*SRTT (1 s without one), plus the peer's worst-case ACK delay when
        one segment is in flight, and never later than the RTO would fire.

        Beyond RFC 8985 (which arms it outside recovery only), also in SACK recovery
        when RACK has no timer pending: a retransmission lost with nothing sent after
        it, or a tail lost after a partial ACK, leaves RACK nothing delivered to compare
        with, and only the RTO would end the silence; the probe's SACK gives RACK that
        later delivery, so the loss costs a probe timeout instead of an RTO."""
        cfg = self.config
        if (
            not cfg.tail_loss_probe
            or not self._sack_on
            or self._tlp_end is not None
            or not self._tlp_rtt
            or self._snd_max <= self._snd_una
            or (
                self._rack_at is not None
                if self._in_recovery
                else self._snd_una < self._recover or bool(self._scoreboard.blocks)
            )
        ):
            self._tlp_at = None
            return
        srtt = self._rtt.srtt
        if srtt is None:
            pto = 1.0
        else:
            # As Linux since 4.13: 2*SRTT plus the peer's worst-case delayed ACK for a lone
            # segment, else plus two timer ticks (TLP_SLACK), so a sub-millisecond SRTT
            # does not probe at once; the 10 ms floor of earlier kernels cost a 2 ms path
            # five round trips per probe.
            pto = 2 * srtt
            if self._snd_max - self._snd_una <= self._smss:
                pto += cfg.tlp_max_ack_delay  # a lone segment may wait for a delayed ACK
            else:
                pto += TLP_SLACK
        t = now + pto
        r = self._rtx_at
        self._tlp_at = r if r is not None and r < t else t

    def _rto_after_probe(self, now: float, head_resent: bool) -> float:
        """When the RTO fires once a probe is sent (RFC 8985 7.3 re-arms it): outside
        recovery, one RTO after the head (the segment at SND.UNA) was last sent, now if
        the probe was the head again (``head_resent``), as Linux's ``tcp_rearm_rto``
        measures it while a probe is pending (``tcp_rto_delta_us``), at least a timer
        tick (1 ms) on; the probe does not put off the timeout the head has been waiting
        for. In recovery (where our probe goes beyond RFC 8985) the head's
        retransmission may be older than its RTO, so there one RTO from now."""
        timeout = self._rtt.timeout()
        if self._in_recovery or head_resent:
            return now + timeout
        una = self._snd_una
        sb = self._scoreboard
        sent = sb.sent_at(una)
        for s, e, _m, t in sb.rxt:
            if s <= una < e and t > sent:
                sent = t
        if sent == float("-inf"):
            return now + timeout  # no send time kept (none without SACK)
        at = sent + timeout
        tick = now + self._rtt.granularity
        return at if at > tick else tick

    def _tlp_on_ack(self, now: float, seg: TCPRepr, ack: int, una: int, dsack_right: int) -> None:
        """RFC 8985 7.4: did the probe repair a loss? An ACK at or beyond TLP.end_seq
        ends the episode; a retransmitted probe that the peer neither reported as a
        duplicate (D-SACK) nor answered with a plain duplicate ACK, while the ACK went
        beyond it, plugged a hole: the congestion response of a recovery is applied."""
        end = self._tlp_end
        assert end is not None
        if not self._tlp_rxt:
            self._tlp_end = None  # new data probed: RACK finds any loss
            return
        data_end = end - 1 if self._fin_queued and end > self._fin_seq else end
        if dsack_right >= data_end:
            self._tlp_end = None  # the original arrived too: no loss
        elif ack > end:
            self._tlp_end = None
            self._count("tlp_recoveries")
            if not self._in_recovery:
                self._cc.on_loss(now, self._cc.cwnd)  # as Linux: from cwnd
        elif ack == una and not seg.sack_blocks and not seg.payload:
            self._tlp_end = None  # a duplicate ACK without SACK: both arrived

    def _is_dsack(
        self, left: int, right: int, ack: int, blocks: tuple[tuple[int, int], ...]
    ) -> bool:
        """RFC 2883 4: the first block is a D-SACK when it lies below the cumulative ACK
        or inside the second block."""
        if right <= ack:
            return left >= self._snd_una - self._max_snd_wnd
        if len(blocks) < 2:
            return False
        una = self._snd_una
        l2 = una + (((blocks[1][0] - una) + 0x80000000) & MASK) - 0x80000000
        r2 = una + (((blocks[1][1] - una) + 0x80000000) & MASK) - 0x80000000
        return l2 <= left and right <= r2

    def _on_dsack(self, now: float, left: int, right: int) -> None:
        """A duplicate arrived at the peer. When duplicates cover all that this loss
        episode retransmitted, the retransmissions were spurious (RFC 3708): undo the
        congestion response (as RFC 4015's Eifel response, and Linux, do)."""
        self._count("dsacks_in")
        self._reo.on_dsack(self._snd_una, self._snd_max)
        ledger = self._ledger
        if ledger is None or not ledger.dsack(left, right) or self._prior_cc is None:
            return
        self._undo()

    def _undo(self) -> None:
        """The loss response proved needless: the controller's state before it back."""
        assert self._prior_cc is not None
        self._count("undos")
        if self._ledger is not None:
            self._ledger.close()
        self._cc.restore(self._prior_cc)
        self._prior_cc = None
        self._reducing = False
        if self._in_recovery:
            # Fast recovery ends here (as Linux's undo does): a hole found lost later is
            # a new loss, with a congestion response of its own.
            self._in_recovery = False
            self._recover = self._snd_una
            self._inflate = 0
            self._scoreboard.rxt.clear()

    def _eifel(self, seg: TCPRepr, una: int, ack: int) -> None:
        """RFC 3522 detection by timestamps (as Linux's undo): an ACK of everything this
        episode retransmitted that echoes a TSval older than its first retransmission
        was caused by an original, so the response is undone at once, without waiting a
        round trip for the D-SACK. Only when all retransmitted data lay in the hole at
        SND.UNA (nothing SACKed below its top): each piece of it then reached the
        receiver's left edge, where its retransmission would have set the echo."""
        ts = seg.timestamp
        ledger = self._ledger
        if ledger is None:
            return  # no loss episode yet: nothing to undo
        stamp = ledger.stamp
        if ts is None or stamp is None or not ts[1] or ((ts[1] - stamp) & MASK) <= HALF:
            return
        blocks = self._scoreboard.blocks
        top = blocks[0][0] if blocks and blocks[0][0] < ack else ack
        if ledger.within(una, top):
            self._count("undos_by_timestamp")
            self._undo()

    def _start_episode(self) -> None:
        """A loss response begins: remember the controller's state, to undo it if the
        retransmissions prove spurious."""
        self._prior_cc = self._cc.snapshot()
        if self._ledger is None:
            self._ledger = RetransmitLedger()
        self._ledger.start()

    def _prr_on_ack(self, delivered: int) -> None:
        """Proportional rate reduction (RFC 6937) sets cwnd for this ACK in SACK recovery.

        While the pipe is above ssthresh, data leaves in proportion to the data delivered
        (ssthresh/RecoverFS of it), so the reduction is spread over the round trip
        instead of silence then a burst; below ssthresh, slow-start reduction bound
        (PRR-SSRB) grows the pipe back to ssthresh by at most one MSS more than delivered.
        """
        cc = self._cc
        mss = self._smss
        self._prr_delivered += delivered
        pipe = self._scoreboard.pipe(self._snd_una, self._snd_max, mss)
        ss = cc.ssthresh
        if pipe > ss:
            sndcnt = -(-self._prr_delivered * ss // self._recover_fs) - self._prr_out
        else:
            limit = max(self._prr_delivered - self._prr_out, delivered) + mss
            sndcnt = min(ss - pipe, limit)
        cc.cwnd = pipe + (sndcnt if sndcnt > 0 else 0)

    def _on_dupack(self, now: float, sack_new: bool) -> None:
        self._dupacks += 1
        if self._in_recovery:
            if not self._sack_on:
                self._inflate += self._smss
            return
        if self._snd_una < self._recover:
            # RFC 6582 4.1: no new recovery until the old recovery point is passed.
            return
        sack = self._sack_on
        if (self._dupacks >= DUP_THRESH and not (sack and self._reo.seen)) or (
            sack and self._scoreboard.any_lost(self._snd_una, self._smss)
        ):
            self._enter_recovery(now)
        elif self._dupacks < DUP_THRESH:
            # Limited transmit (RFC 3042): each of the first two duplicate ACKs lets
            # one new segment out, so a small window still reaches three duplicates.
            self._inflate = self._dupacks * self._smss

    def _rack_detect(self, now: float) -> None:
        """RACK (RFC 8985 6.2): a hole sent before data the peer has, more than an RTT
        plus the reordering window ago, is lost, and so is a retransmission with data
        sent after it delivered; the timer waits for the next one to come due."""
        sb = self._scoreboard
        rtt = self._rtt
        reo = self._reo.window(rtt.srtt or 0.0, self._in_recovery, sb.sacked_bytes() // self._smss)
        sb.dupthresh = not self._reo.seen
        wait = rtt.latest + reo
        sb.rack_update(now - wait)
        pending = sb.rack_pending(self._snd_una)
        if sb.rxt and self._in_recovery:
            lost, sent = sb.detect_lost_retransmits(sb.rack_deadline)
            if lost:
                self._count("lost_retransmits", lost)
            if sent is not None and (pending is None or sent < pending):
                pending = sent
        self._rack_at = None if pending is None else pending + wait

    def _maybe_enter_recovery(self, now: float) -> None:
        """RACK found a loss on an ACK that was no duplicate, or on its timer."""
        if (
            not self._in_recovery
            and self._snd_una >= self._recover
            and self._snd_max > self._snd_una
            and self._scoreboard.any_lost(self._snd_una, self._smss)
        ):
            self._enter_recovery(now)

    def _enter_recovery(self, now: float) -> None:
        self._in_recovery = True
        self._tlp_at = None
        self._recover = self._snd_max
        # RecoverFS: what the recovery round trip will deliver, the pipe (RFC 9937), but
        # never below the window before the reduction (Linux's prior_cwnd): a pipe below
        # ssthresh (its segments lost, or SACKed) would make the proportional part send
        # more than is delivered, without bound.
        pipe = self._scoreboard.pipe(self._snd_una, self._snd_max, self._smss)
        self._recover_fs = max(pipe, self._cc.cwnd, 1)
        self._reducing = True
        self._prr_delivered = 0
        self._prr_out = 0
        self._count("fast_retransmits")
        self._start_episode()
        # FlightSize for the reduction (RFC 5681 3.2), without what went beyond cwnd
        # because the peer had it already (limited transmit, SACKed data).
        flight = self._snd_max - self._snd_una
        self._cc.on_loss(now, flight if flight < self._cc.cwnd else self._cc.cwnd)
        una = self._snd_una
        self._high_rxt = una
        # The first hole at once, unless its retransmission is in flight already (sent
        # in the recovery that just ended): then NextSeg finds what else is lost.
        self._rexmit = not any(s <= una < e for s, e, _m, _t in self._scoreboard.rxt)
        if not self._sack_on:
            self._inflate = DUP_THRESH * self._smss
        else:
            self._inflate = 0

    def _on_data(self, now: float, seq: int, payload: Buffer) -> None:
        if self._ack_now and (self._quickacks or self._ooo.ranges):
            # The sender is recovering: an ACK that is due goes out now, not merged with
            # the next segment's when the driver hands over a batch, so it gets one
            # (with its SACK blocks) per out-of-order or quick-ACKed segment.
            self._queue_ctl(self._make(ACK, self._ack_seq(), b"", now))
        rcv_nxt = self._rcv_nxt
        plen = len(payload)
        if seq < rcv_nxt:
            cut = rcv_nxt - seq
            if self._sack_on:
                self._dsack = (seq, rcv_nxt)
                self._ack_now = True
            payload = memoryview(payload)[cut:]
            plen -= cut
            seq = rcv_nxt
        right = self._rcv_adv
        if seq + plen > right:
            plen = right - seq
            if plen <= 0:
                return
            payload = memoryview(payload)[:plen]
        if seq == rcv_nxt:
            self._rcvbuf += payload
            rcv_nxt += plen
            ooo = self._ooo
            if ooo.ranges:
                while True:
                    ready = ooo.pop_ready(rcv_nxt)
                    if ready is None:
                        break
                    end, data = ready
                    self._rcvbuf += data
                    rcv_nxt = end
                self._ack_now = True  # filled (part of) a hole: ACK at once (RFC 5681 4.2)
                self._quickacks = QUICKACKS
            self._rcv_nxt = rcv_nxt
            if not self._readable_signalled:
                self._readable_signalled = True
                reader = self._reader
                if reader is None:
                    self._event(_EVT_DATA)
                elif self._reader_list is not None:
                    self._reader_list.append(reader)
                else:
                    reader()
            # Delayed ACK: at least every second full-sized segment (RFC 5681 4.2),
            # counted in bytes so that coalesced (GRO) segments count for what they hold.
            size = self._run_size or plen
            if size > self._rcv_mss:
                self._rcv_mss = min(size, self.config.mss)
            self._unacked_bytes += plen
            if self._ack_now:
                pass
            elif not self.config.delayed_ack or self._unacked_bytes >= 2 * self._rcv_mss:
                self._ack_now = True
            elif self._quickacks:
                self._quickacks -= 1
                self._ack_now = True
            elif self._ack_at is None:
                self._ack_at = now + self.config.delayed_ack_timeout
        else:
            if self._sack_on and self._ooo.holds(seq, seq + plen):
                self._dsack = (seq, seq + plen)
            self._ooo.add(seq, payload)
            self._ack_now = True  # out of order: duplicate ACK at once

    def _on_fin(self, now: float) -> None:
        self._rcv_nxt += 1
        if not self._eof_signalled:
            self._eof_signalled = True
            self._event(_EVT_EOF)
        st = self.state
        if st in (SYN_RECEIVED, ESTABLISHED):
            self.state = CLOSE_WAIT
            # A passive close: the application usually answers EndOfStream with its own
            # close, so the ACK of the FIN waits (as a delayed ACK, bounded by its timer)
            # to ride on our FIN: one segment instead of two (as Linux does).
            if self.config.delayed_ack:
                a = now + self.config.delayed_ack_timeout
                if self._ack_at is None or a < self._ack_at:
                    self._ack_at = a
                return
            self._ack_now = True
            return
        self._ack_now = True
        if st == FIN_WAIT_1:
            if self._fin_queued and self._snd_una > self._fin_seq:
                self._enter_time_wait(now)
            else:
                self.state = CLOSING
        elif st == FIN_WAIT_2:
            self._enter_time_wait(now)

    def _enter_time_wait(self, now: float) -> None:
        self.state = TIME_WAIT
        self._rtx_at = None
        self._ka_at = None
        self._tlp_at = None
        self._close_at = now + self.config.time_wait
        # Nothing is sent again but ACKs: a fresh (empty, deque-less) send buffer lets the
        # old one's chunk deque go, since a busy server holds many TIME_WAITs (2 MSL each).
        self._sndbuf = SendBuffer()
        self._ooo.clear()
        self._scoreboard.clear()

    def _on_reset(self) -> None:
        st = self.state
        self._terminate(None if st in (CLOSING, LAST_ACK, TIME_WAIT) else _EVT_RESET)

    def _challenge_ack(self, now: float) -> None:
        second = int(now)
        if second != self._challenge_second:
            self._challenge_second = second
            self._challenge_count = 0
        if self._challenge_count < self.config.challenge_ack_limit:
            self._challenge_count += 1
            self._count("challenge_acks")
            self._ack_now = True

    def _terminate(self, event: Event | None) -> None:
        if self.state == CLOSED:
            return
        self.state = CLOSED
        self._sndbuf.clear()
        self._rcvbuf = bytearray()
        self._ooo.clear()
        self._scoreboard.clear()
        self._rtx_at = None
        self._ack_at = None
        self._close_at = None
        self._ka_at = None
        self._tlp_at = None
        self._ack_now = False
        if event is not None:
            self._event(event)
        self._event(_EVT_CLOSED)

    # ------------------------------------------------------------------ output

    def _window_field(self, syn: bool) -> int:
        """The window to advertise, never shrinking the right edge, with receiver SWS."""
        cfg = self.config
        free = cfg.recv_buffer - len(self._rcvbuf)
        if free < 0:
            free = 0
        rcv_nxt = self._rcv_nxt
        cur = self._rcv_adv - rcv_nxt
        if cur < 0:
            cur = 0
        # Receiver SWS avoidance (RFC 9293 3.8.6.2.2): open only by a worthwhile amount.
        wnd = cur if free <= cur or free - cur < self._sws_open else free
        if syn:
            field = wnd if wnd < 65535 else 65535
            self._rcv_adv = rcv_nxt + field
            return field
        shift = self._rcv_wscale
        field = wnd >> shift
        if (field << shift) < cur:
            field += 1
        if field > 65535:
            field = 65535
        edge = rcv_nxt + (field << shift)
        if edge > self._rcv_adv:
            self._rcv_adv = edge
        return field

    def _tsval(self, now: float) -> int | None:
        """The TSval a segment sent now carries (None: no timestamps)."""
        return (int(now * 1000) + self._ts_offset) & MASK if self._ts_on else None

    def _fields(self, flags: int, now: float) -> tuple[int, int, tuple[int, int] | None]:
        """The ACK, window and timestamp fields of a segment with ``flags`` sent now, and
        sending's bookkeeping: an ACK owes no more ACK; the advertised edge; the count."""
        if flags & ACK:
            self._ack_now = False
            self._ack_at = None
            self._unacked_bytes = 0
            self._last_ack_sent = rcv_nxt = self._rcv_nxt
            ack = rcv_nxt & MASK
        else:
            ack = 0
        window = self._window_field(flags & SYN != 0)
        self._segs_out += 1
        if self._ts_on:
            return ack, window, ((int(now * 1000) + self._ts_offset) & MASK, self._ts_recent)
        return ack, window, None

    def _make(self, flags: int, seq: int, payload: Buffer, now: float = 0.0) -> TCPRepr:
        ack, window, ts = self._fields(flags, now)
        if flags & SYN:
            cfg = self.config
            return handshake_segment(
                self.local_port,
                self.remote_port,
                seq & MASK,
                ack,
                flags,
                window,
                cfg.mss,
                self._rcv_wscale
                if (cfg.window_scaling and (self._ws_on or not flags & ACK))
                else None,
                cfg.sack and (self._sack_on or not flags & ACK),
                ts,
            )
        sack: tuple[tuple[int, int], ...] = ()
        if self._sack_on and (self._ooo.ranges or self._dsack is not None):
            limit = 3 if self._ts_on else 4
            wanted = len(self._ooo.ranges) + (self._dsack is not None)
            if wanted > limit:
                wanted = limit
            # The option comes out of the segment's MSS (RFC 9293 3.7.1: the data and
            # every option within it; 4 bytes and 8 a block): beside a full segment's data
            # no block fits, and a segment with them would exceed the path's MTU, which
            # the IP layer drops (DF) without a word. Both ends with a hole each then lost
            # every data segment they sent, retransmissions included: a stall until the
            # connection timed out. Fewer blocks, or none, go with the data (RFC 2018
            # allows it); all of them (a D-SACK kept for it) on a pure ACK after the data,
            # in the same output. (A segment without data has its 40 bytes of options.)
            fit = (self._smss - len(payload) - 4) // 8 if payload else limit
            if fit < wanted:
                self._ack_now = True
                limit = fit
            if limit > 0:
                blocks = self._ooo.blocks(limit)
                dup = self._dsack
                if dup is not None:
                    # RFC 2883: the duplicate first, once; the range holding it (the most
                    # recently changed) follows when it is above RCV.NXT.
                    self._dsack = None
                    self._count("dsacks_out")
                    blocks = [dup, *blocks[: limit - 1]]
                sack = tuple((s & MASK, e & MASK) for s, e in blocks)
        return plain_segment(
            self.local_port, self.remote_port, seq & MASK, ack, flags, window, payload, sack, ts
        )

    def quiet(self) -> bool:
        """Whether :meth:`segments_to_send` would give nothing now and change nothing:
        an established connection (or one the peer closed, whose walk is the same) with
        no control segment, ACK, retransmission, probe or unsent data due (what its walk
        checks first)."""
        return self.poll_at(True) != -1.0

    def _queue_ctl(self, seg: TCPRepr) -> None:
        """Queue control segment ``seg`` for the next :meth:`segments_to_send`."""
        out = self._ctl_out
        if out is None:
            self._ctl_out = [seg]
        else:
            out.append(seg)

    def segments_to_send(self, now: float) -> list[TCPRepr]:
        """Everything the connection wants to send now (may be empty)."""
        out = self._ctl_out
        if out:
            self._ctl_out = None
        else:
            out = []
        st = self.state
        if st == CLOSED:
            return out
        smax0 = self._snd_max
        if st in (SYN_SENT, SYN_RECEIVED):
            if self._snd_nxt == self._iss:
                if st == SYN_SENT:
                    seg = self._make(SYN, self._iss, b"", now)
                    # The SYN's timestamp: echo nothing yet.
                else:
                    seg = self._make(SYN | ACK, self._iss, b"", now)
                if st == SYN_SENT and self.config.timestamps:
                    seg = seg._replace(timestamp=((int(now * 1000) + self._ts_offset) & MASK, 0))
                if self._ecn is not None or self._tfo is not None:
                    seg = self._syn_extras(seg, st)
                out.append(seg)
                if self._snd_max == self._iss and self._retries == 0:
                    self._rtt_seq = self._iss + 1
                    self._rtt_time = now
                else:
                    self._retransmits += 1
                end = self._iss + 1 + len(seg.payload)  # Fast Open data after the SYN
                self._snd_nxt = end
                if self._snd_max < end:
                    self._snd_max = end
                if self._rtx_at is None:
                    self._rtx_at = now + self._rtt.timeout()
            if st == SYN_RECEIVED and self._tfo is not None and self._tfo.acked:
                self._send_early(now, out)
        elif st in _SENDING:
            # Most calls (after an ACK, a read) find nothing new to send and no control
            # segment queued: skip the walk, which would send nothing and arm nothing.
            fin_end = self._snd_buf_seq + self._sndbuf.size + self._fin_queued
            nxt = self._snd_nxt
            if self._rexmit or self._tlp_probe or self._in_recovery:
                self._send_data(now, out)
            elif nxt < fin_end:
                if nxt == self._fin_seq == self._snd_max and self._fin_queued:
                    self._send_fin(now, out)
                else:
                    self._send_data(now, out)
            elif out:
                self._send_data(now, out)
        if self._ack_now and st != SYN_SENT:
            out.append(self._make(ACK, self._ack_seq(), b"", now))
        if self._ecn is not None and out:
            self._ecn.mark(out, smax0, self._snd_wnd > 0)
        return out

    def poll_transmit(self, now: float) -> list[TCPRepr]:
        """:meth:`segments_to_send` by its sans-I/O name: a method, not an alias in the class
        body, which the compiled build (mypyc) cannot take."""
        return self.segments_to_send(now)

    def _syn_extras(self, seg: TCPRepr, st: State) -> TCPRepr:
        """What ECN (RFC 3168 6.1.1) and Fast Open (RFC 7413) add to our SYN or SYN-ACK."""
        if self._ecn is not None:
            if st == SYN_SENT and self._retries:
                # RFC 3168 6.1.1.1: a SYN lost once is retried without ECN setup, in case
                # a middlebox drops those (as Linux does).
                self._ecn = None
            else:
                seg = seg._replace(flags=seg.flags | (ECE | CWR if st == SYN_SENT else ECE))
        tfo = self._tfo
        if tfo is None:
            return seg
        if st != SYN_SENT:
            return with_option(seg, tfo.cookie) if tfo.cookie else seg
        seg = with_option(seg, tfo.cookie)
        if tfo.cookie and not self._retries:
            # Data rides the first SYN only, within the server's MSS and ours, options
            # counted: a retried SYN goes bare, the data follows the handshake.
            cfg = self.config
            room = min(tfo.mss or cfg.default_mss, cfg.mss) - seg.options_len()
            n = min(self._sndbuf.size, room)
            if n > 0:
                seg = seg._replace(payload=self._sndbuf.slice(0, n))
                tfo.syn_data = n
        return seg

    def _send_early(self, now: float, out: list[TCPRepr]) -> None:
        """RFC 7413 4.2.3: a server that took the SYN's data may answer before the
        handshake completes (as Linux does), so the reply comes a round trip sooner; its
        FIN still waits for ESTABLISHED (RFC 9293 3.10.4)."""
        fin = self._fin_queued
        self._fin_queued = False
        # The SYN-ACK in flight is no runt of data: Nagle has nothing to wait for.
        self._push_upto = self._snd_buf_seq + self._sndbuf.size
        try:
            self._send_data(now, out)
        finally:
            self._fin_queued = fin

    @property
    def fastopen(self) -> FastOpen | None:
        """The Fast Open state of the handshake (None: not used)."""
        return self._tfo

    def _emit_range(
        self,
        now: float,
        start: int,
        end: int,
        out: list[TCPRepr],
        burst: list[TCPRepr] | None = None,
    ) -> None:
        """Send bytes [start, end) from the send buffer, with FIN if it ends the stream.

        ``burst`` (a one-element cache) lets a run of data segments share the ACK
        fields: they cannot change while segments are being emitted in one call.
        """
        flags = ACK
        fin = self._fin_queued and end >= self._fin_seq and self._fin_seq >= start
        if fin:
            end = self._fin_seq
            flags |= FIN
        off = start - self._snd_buf_seq
        payload = self._sndbuf.slice(off, end - start) if end > start else b""
        if payload and end == self._snd_buf_seq + self._sndbuf.size:
            flags |= PSH
        if burst is None:
            out.append(self._make(flags, start, payload, now))
        elif not burst:
            seg = self._make(flags, start, payload, now)
            burst.append(seg)
            out.append(seg)
        else:
            p = burst[0]
            self._segs_out += 1
            # The tuple built directly: TCPRepr(...) would run the NamedTuple's generated
            # __new__, a large share of this per-segment path.
            out.append(
                plain_segment(
                    p.src_port,
                    p.dst_port,
                    start & MASK,
                    p.ack,
                    flags,
                    p.window,
                    payload,
                    p.sack_blocks,
                    p.timestamp,
                )
            )

    def _retransmit(self, now: float, start: int, end: int, out: list[TCPRepr]) -> None:
        self._retransmits += 1
        if self._ledger is not None:
            self._ledger.retransmitted(start, end, self._tsval(now))
        if self._rtt_seq is not None and start < self._rtt_seq:
            self._rtt_seq = None
        self._emit_range(now, start, end, out)
        if self._rtx_at is None:
            self._rtx_at = now + self._rtt.timeout()

    def _send_fin(self, now: float, out: list[TCPRepr]) -> None:
        """The FIN, first sent, after every byte went out: what :meth:`_send_data` would do
        there (its walk sends a bare FIN whatever the windows, then arms the timers), without
        the walk: a connection's close sends one."""
        nxt = self._snd_nxt
        out.append(self._make(ACK | FIN, nxt, b"", now))
        end = nxt + 1
        if self._rtt_seq is None and not self._ts_on:
            self._rtt_seq = end
            self._rtt_time = now
        self._snd_max = self._snd_nxt = end
        self._probe = False
        if self._rtx_at is None:
            self._rtx_at = now + self._rtt.timeout()
        self._arm_tlp(now)
        if self._sack_on:
            self._scoreboard.record_sent(end, now)

    def _send_data(self, now: float, out: list[TCPRepr]) -> None:
        smax0 = self._snd_max
        self._send_data_inner(now, out)
        if self._snd_max > smax0 and self._sack_on:
            self._scoreboard.record_sent(self._snd_max, now)
        self._cwnd_use(now, smax0)

    def _cwnd_use(self, now: float, smax0: int) -> None:
        """Tell the controller how full cwnd is after new data went out, or while new
        data waits on a full cwnd: its growth depends on it (``CongestionControl.on_send``).
        Full: less than a segment of cwnd left for what is in flight (the pipe, with
        SACKed data)."""
        una = self._snd_una
        smax = self._snd_max
        mss = self._smss
        cc = self._cc
        if self._sack_on and self._scoreboard.blocks:
            flight = self._scoreboard.pipe(una, smax, mss)
        else:
            flight = self._snd_nxt - una
        full = flight + mss > cc.cwnd + self._inflate
        if smax > smax0 or (full and self._snd_buf_seq + self._sndbuf.size > smax):
            cc.on_send(now, una, smax, full)

    def _send_data_inner(self, now: float, out: list[TCPRepr]) -> None:
        mss = self._smss
        smax0 = self._snd_max
        rxt0 = self._retransmits
        data_end = self._snd_buf_seq + self._sndbuf.size
        fin_end = data_end + 1 if self._fin_queued else data_end
        cc = self._cc
        if self._rexmit:
            self._rexmit = False
            una = self._snd_una
            sb = self._scoreboard
            if self._sack_on and sb.blocks:
                end = min(una + mss, sb.blocks[0][0])
            else:
                end = min(una + mss, self._snd_max)
            if end > una:
                self._retransmit(now, una, min(end, fin_end), out)
                self._prr_out += end - una
                if self._high_rxt < end:
                    self._high_rxt = end
                if self._sack_on:
                    sb.record_rxt(una, end, self._snd_max, now)
        probed = self._tlp_probe
        if probed:
            self._tlp_probe = False
            self._send_probe(now, out, data_end, fin_end)
        sack_recovery = self._in_recovery and self._sack_on
        burst: list[TCPRepr] = []
        while True:
            nxt = self._snd_nxt
            if sack_recovery:
                pipe = self._scoreboard.pipe(self._snd_una, self._snd_max, mss)
                if cc.cwnd - pipe < mss:
                    break
                hole = self._scoreboard.next_seg(self._snd_una, mss)
                if hole is None and (
                    nxt >= fin_end or (self._snd_una + self._snd_wnd <= nxt and nxt < data_end)
                ):
                    # No new data can go (RFC 6675 NextSeg rule 2 fails): rules 3 and 4.
                    hole = self._next_seg_rule3_4()
                if hole is not None:
                    self._retransmit(now, hole[0], hole[1], out)
                    self._prr_out += hole[1] - hole[0]
                    self._scoreboard.record_rxt(hole[0], hole[1], self._snd_max, now)
                    continue
                room = mss
            else:
                room = cc.cwnd + self._inflate - (nxt - self._snd_una)
                if self._scoreboard.blocks and self._sack_on and not self._rto_recovery:
                    # SACKed data has left the network: outside recovery too, what may
                    # go is cwnd less the pipe (as Linux's packets in flight), so the
                    # sender keeps the ACK clock while RACK waits out its window.
                    free = cc.cwnd - self._scoreboard.pipe(self._snd_una, self._snd_max, mss)
                    if free > room:
                        room = free
            if nxt >= fin_end:
                break
            if nxt < self._snd_max and self._scoreboard.blocks and not sack_recovery:
                # Resending after a timeout: skip what the peer has SACKed.
                for left, right in self._scoreboard.blocks:
                    if left <= nxt < right:
                        nxt = self._snd_nxt = right
                        break
                if nxt >= fin_end:
                    break
            wnd_room = self._snd_una + self._snd_wnd - nxt
            if wnd_room < room:
                room = wnd_room
            avail = data_end - nxt
            if room <= 0:
                if self._probe and nxt == self._snd_una:
                    # The persist timer (RFC 9293 3.8.6.1): the probe carries an old
                    # sequence number, not a new byte past the shut window (the RFC
                    # allows either; Linux sends this one). A byte sent there would be
                    # dropped, yet move SND.NXT past the window's edge: when the window
                    # opened, sending would go on after it, a byte short of a segment
                    # for the loss window of a timeout (sender SWS avoidance then held
                    # it back until the next, backed-off, timeout), unless SND.NXT were
                    # moved back first.
                    out.append(self._old_probe(now))
                    self._count("window_probes")
                    self._probe = False
                    break
                if avail <= 0 and nxt == data_end:
                    room = 0  # only FIN is left: it needs no window
                else:
                    break
            n = min(avail, self._seg_max, room)
            if nxt < self._snd_max and self._scoreboard.blocks and not sack_recovery:
                for left, _right in self._scoreboard.blocks:
                    if left > nxt:
                        n = min(n, left - nxt)
                        break
            if n > mss and (
                n < avail or not (self._nodelay or self._push_upto >= data_end or self._fin_queued)
            ):
                # A TSO burst is whole segments: a runt at the end of the data goes only
                # where Nagle lets a runt go alone (below), as Linux splits a TSO burst.
                n -= n % mss
            if n < 0:
                n = 0
            if n < mss and n < avail:
                # Window- or cwnd-limited to a runt: wait, unless nothing is in flight.
                if nxt > self._snd_una and n < self._max_snd_wnd // 2 and not self._probe:
                    break
            elif (
                0 < n == avail < mss
                and nxt > self._snd_una
                and not self._nodelay
                and self._push_upto < data_end
                and not self._fin_queued
            ):
                # Nagle (RFC 9293 3.7.4): one runt in flight at a time.
                break
            if n == 0 and not (self._fin_queued and nxt == data_end):
                break
            end = nxt + n
            if sack_recovery:
                self._prr_out += n
            self._emit_range(now, nxt, end, out, burst)
            if self._fin_queued and end == data_end:
                end += 1
            if end > self._snd_max:
                if self._rtt_seq is None and nxt >= self._snd_max and not self._ts_on:
                    self._rtt_seq = min(end, nxt + mss)  # a burst's first segment
                    self._rtt_time = now
                self._snd_max = end
            else:
                self._retransmits += 1
                if self._ledger is not None:
                    self._ledger.retransmitted(nxt, end, self._tsval(now))
            self._snd_nxt = end
            self._probe = False
            if self._rtx_at is None:
                self._rtx_at = now + self._rtt.timeout()
        if sack_recovery and self._retransmits != rxt0:
            # The holes just resent need RACK's timer no more; their retransmissions may.
            self._rack_detect(now)
        if not probed and (self._snd_max > smax0 or (sack_recovery and out)):
            self._arm_tlp(now)  # RFC 8985 7.2: new data (not a probe) went out
        if self._snd_nxt == self._snd_una and self._snd_nxt < data_end and self._rtx_at is None:
            # Data waits on a zero window: arm the persist timer.
            self._rtx_at = now + self._rtt.timeout()

    def _send_probe(self, now: float, out: list[TCPRepr], data_end: int, fin_end: int) -> None:
        """RFC 8985 7.3: a new segment beyond cwnd if the peer's window allows, else the
        highest-sequence segment again; either way its ACK (with SACK) shows a tail loss."""
        mss = self._smss
        nxt = self._snd_nxt
        wnd_room = self._snd_una + self._snd_wnd - nxt
        if nxt == self._snd_max and nxt < data_end and wnd_room > 0:
            end = nxt + min(data_end - nxt, mss, wnd_room)
            self._emit_range(now, nxt, end, out)
            if self._fin_queued and end == data_end:
                end += 1
            self._snd_nxt = self._snd_max = end
            self._tlp_rxt = False
            head_resent = False
        elif self._snd_max > self._snd_una:
            top = self._snd_max
            blocks = self._scoreboard.blocks
            if blocks and blocks[-1][1] >= top and blocks[-1][0] > self._snd_una:
                # In recovery the tail may be SACKed: the highest segment not yet
                # delivered is the one worth resending.
                top = blocks[-1][0]
            start = max(self._snd_una, min(data_end, top) - mss)
            self._retransmit(now, start, min(top, fin_end), out)
            self._tlp_rxt = True
            head_resent = start == self._snd_una
        else:
            return
        self._rtx_at = self._rto_after_probe(now, head_resent)
        self._count("tail_loss_probes")
        self._tlp_end = self._snd_max
        self._tlp_rtt = False

    def _next_seg_rule3_4(self) -> tuple[int, int] | None:
        """RFC 6675 NextSeg when no new data can be sent: rule 3, a range below the
        highest SACKed byte never retransmitted though not yet lost; else rule 4, once
        per recovery, a rescue retransmission of the highest outstanding unSACKed
        segment (HighRxt unchanged), so a lost tail is not left to the RTO."""
        sb = self._scoreboard
        mss = self._smss
        una = self._snd_una
        hole = sb.next_seg(una, mss, rule3=True)
        if hole is not None:
            return hole
        if self._rescue is not None and self._rescue >= una:
            return None
        top = self._snd_max
        if sb.blocks and sb.blocks[-1][1] >= top:
            return None  # the tail arrived: its holes are rule 1 and 3's
        data_end = self._snd_buf_seq + self._sndbuf.size
        stop = min(top, data_end + 1 if self._fin_queued else data_end)
        start = max(una, min(stop, data_end) - mss)
        if stop <= start:
            return None
        for s0, e0, _m, _t in sb.rxt:
            if s0 <= start and stop <= e0:
                return None  # already retransmitted and not known lost
        self._rescue = self._recover
        self._count("rescue_retransmits")
        return start, stop

    # ------------------------------------------------------------------ introspection

    @property
    def snd_una(self) -> int:
        return self._snd_una & MASK

    @property
    def snd_nxt(self) -> int:
        return self._snd_nxt & MASK

    @property
    def rcv_nxt(self) -> int:
        return self._rcv_nxt & MASK

    @property
    def cwnd(self) -> int:
        return self._cc.cwnd

    @property
    def ssthresh(self) -> int:
        return self._cc.ssthresh

    @property
    def rto(self) -> float:
        return self._rtt.timeout()

    @property
    def mss(self) -> int:
        """Payload bytes per segment we send (after the peer's MSS and options)."""
        return self._smss

    @property
    def send_window(self) -> int:
        return self._snd_wnd

    def __repr__(self) -> str:
        return (
            f"Connection({self.local_port}->{self.remote_port} {self.state.name} "
            f"una={self.snd_una} nxt={self.snd_nxt} rcv={self.rcv_nxt})"
        )
