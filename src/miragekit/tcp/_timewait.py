"""TIME-WAIT as a small record: what a closed connection still owes for 2 MSL.

A server that closes first (HTTP with ``Connection: close``) holds every connection for
2 MSL (RFC 9293 3.6.1) after its application is done with it. Kept as a whole
:class:`~miragekit.tcp.Connection` that is ten-odd live objects per connection, and at
thousands of connections a second the garbage collector's full passes walk all of them.
So once a connection settles in TIME_WAIT the endpoint keeps only a :class:`TimeWait`:
the numbers the state still needs (RCV.NXT and SND.NXT to judge and answer segments, the
window last advertised, TS.Recent for PAWS and RFC 6191 reuse, RFC 7323, the pending
D-SACK, the ECN echo, the challenge-ACK budget, RFC 5961) and the expiry. It answers
every segment exactly as the connection did in TIME_WAIT; the endpoint builds the
ACKs it owes (:meth:`TimeWait.ack`) when it sends.
"""

from __future__ import annotations

from typing import Final

from ..wire.tcp import ACK, CWR, ECE, FIN, RST, SYN, TCPRepr, plain_segment
from ._ecn import CE
from .seqnum import HALF, MASK, acceptable

__all__ = ["ACK_OWED", "ENDED", "NOTHING", "TimeWait", "newer_syn"]

NOTHING: Final = 0
"""The segment is dropped without an answer."""
ACK_OWED: Final = 1
"""An ACK is owed (one per ``segments_to_send``, however many segments asked)."""
ENDED: Final = 2
"""An exact RST: TIME-WAIT ends now, silently."""

_PAWS_IDLE: Final = 24 * 86400.0  # RFC 7323 5.5: a TS.Recent this old judges nothing


def newer_syn(syn: TCPRepr, rcv_nxt: int, ts_recent: int | None) -> bool:
    """May this SYN start a new incarnation of a 4-tuple in TIME-WAIT?

    RFC 1122 4.2.2.13 / RFC 6191: yes when its sequence number is beyond the old
    connection's, or (``ts_recent`` not None: timestamps were on) its TSval is newer."""
    if syn.flags & (SYN | ACK | RST) != SYN:
        return False
    ts = syn.timestamp
    if ts_recent is not None and ts is not None:
        return ((ts[0] - ts_recent) & MASK) - 1 < 0x7FFFFFFF
    return 0 < ((syn.seq - rcv_nxt) & MASK) < 0x80000000


class TimeWait:
    """One 4-tuple in TIME-WAIT (sequence numbers unwrapped, as in the connection)."""

    __slots__ = (
        "challenge_count",
        "challenge_second",
        "dsack",
        "ecn_echo",
        "expires",
        "last_ack_sent",
        "max_snd_wnd",
        "rcv_nxt",
        "rcv_wnd",
        "sack_on",
        "snd_nxt",
        "ts_offset",
        "ts_recent",
        "ts_recent_at",
        "window",
    )

    def __init__(
        self,
        rcv_nxt: int,
        snd_nxt: int,
        *,
        expires: float,
        window: int,
        rcv_wnd: int,
        max_snd_wnd: int,
        last_ack_sent: int,
        ts_recent: int | None,
        ts_recent_at: float,
        ts_offset: int,
        sack_on: bool,
        ecn_echo: bool | None,
        challenge_second: int,
        challenge_count: int,
    ) -> None:
        self.rcv_nxt = rcv_nxt
        self.snd_nxt = snd_nxt  # = SND.UNA = SND.MAX: our FIN is acknowledged
        self.expires = expires
        self.window = window  # the window field of our ACKs (it no longer changes)
        self.rcv_wnd = rcv_wnd  # RCV.WND, for the acceptability test
        self.max_snd_wnd = max_snd_wnd  # how old an ACK may be (RFC 5961 5.2)
        self.last_ack_sent = last_ack_sent
        self.ts_recent = ts_recent  # None: timestamps are off
        self.ts_recent_at = ts_recent_at
        self.ts_offset = ts_offset
        self.sack_on = sack_on
        self.dsack: tuple[int, int] | None = None
        self.ecn_echo = ecn_echo  # None: ECN was not negotiated
        self.challenge_second = challenge_second
        self.challenge_count = challenge_count

    def accepts_new_syn(self, syn: TCPRepr) -> bool:
        return newer_syn(syn, self.rcv_nxt, self.ts_recent)

    def icmp_matches(self, seq: int) -> bool:
        """An ICMP error quoting ``seq`` names a segment of ours not yet acknowledged
        (RFC 5927 4.1): here only the sequence number of our ACKs."""
        return seq == self.snd_nxt & MASK

    def segment(self, now: float, seg: TCPRepr, time_wait: float, challenge_limit: int) -> int:
        """Judge one segment as RFC 9293 3.10.7.4 does in TIME-WAIT: :data:`NOTHING`,
        :data:`ACK_OWED` or :data:`ENDED`. A retransmitted FIN restarts the 2 MSL."""
        flags = seg.flags
        rcv_nxt = self.rcv_nxt
        seq = rcv_nxt + (((seg.seq - rcv_nxt) + 0x80000000) & MASK) - 0x80000000
        plen = len(seg.payload)
        ts = seg.timestamp
        ts_recent = self.ts_recent
        if (
            ts_recent is not None
            and ts is not None
            and not flags & RST
            and ((ts[0] - ts_recent) & MASK) > HALF  # PAWS (RFC 7323 5.3)
            and now - self.ts_recent_at < _PAWS_IDLE
        ):
            return ACK_OWED
        wnd = self.rcv_wnd
        if flags & RST:
            # RFC 5961 3.2: an exact match ends it, one in the window is challenged.
            if seq == rcv_nxt:
                return ENDED
            if rcv_nxt < seq < rcv_nxt + max(wnd, 1):
                return self._challenge(now, challenge_limit)
            return NOTHING
        seglen = plen + (1 if flags & SYN else 0) + (1 if flags & FIN else 0)
        if not acceptable(seq, seglen, rcv_nxt, wnd):
            if plen and seq < rcv_nxt and self.sack_on:
                self.dsack = (seq, min(seq + plen, rcv_nxt))  # a duplicate: say so
            if flags & FIN:
                self.expires = now + time_wait  # the peer lost our ACK of its FIN
            return ACK_OWED
        if flags & SYN:
            return self._challenge(now, challenge_limit)  # RFC 5961 4
        if not flags & ACK:
            return NOTHING
        snd = self.snd_nxt
        ack = snd + (((seg.ack - snd) + 0x80000000) & MASK) - 0x80000000
        if ack > snd or ack < snd - self.max_snd_wnd:
            return self._challenge(now, challenge_limit)  # RFC 5961 5.2
        owed = False
        echo = self.ecn_echo
        if echo is not None:
            # RFC 3168 6.1.3: a CE mark starts the echo (ACKed at once), CWR ends it.
            if flags & CWR:
                self.ecn_echo = echo = False
            if seg.ecn == CE and not echo:
                self.ecn_echo = owed = True
        if (
            ts_recent is not None
            and ts is not None
            and seq <= self.last_ack_sent
            and ((ts[0] - ts_recent) & MASK) <= HALF
        ):
            self.ts_recent = ts[0]
            self.ts_recent_at = now
        # Data after the peer's FIN is not taken; a FIN beyond it is ACKed.
        return ACK_OWED if owed or flags & FIN else NOTHING

    def _challenge(self, now: float, limit: int) -> int:
        """A challenge ACK, at most ``limit`` a second (RFC 5961 7)."""
        second = int(now)
        if second != self.challenge_second:
            self.challenge_second = second
            self.challenge_count = 0
        if self.challenge_count < limit:
            self.challenge_count += 1
            return ACK_OWED
        return NOTHING

    def ack(self, now: float, local_port: int, remote_port: int) -> TCPRepr:
        """The ACK owed: SND.NXT, RCV.NXT, the last window, TS and a pending D-SACK."""
        rcv_nxt = self.rcv_nxt
        self.last_ack_sent = rcv_nxt
        ts_recent = self.ts_recent
        ts = None if ts_recent is None else ((int(now * 1000) + self.ts_offset) & MASK, ts_recent)
        sack: tuple[tuple[int, int], ...] = ()
        dup = self.dsack
        if dup is not None:
            self.dsack = None
            sack = ((dup[0] & MASK, dup[1] & MASK),)
        return plain_segment(
            local_port,
            remote_port,
            self.snd_nxt & MASK,
            rcv_nxt & MASK,
            ACK | ECE if self.ecn_echo else ACK,
            self.window,
            b"",
            sack,
            ts,
        )
