"""Explicit Congestion Notification for one connection (RFC 3168 6.1).

Why a router's mark instead of a drop: the sender slows down as for a loss, but nothing
has to be sent again. The connection negotiates ECN in the handshake (ECE and CWR on the
SYN, ECE alone on the SYN-ACK) and then holds one :class:`Ecn`: as a receiver it echoes
ECE on every ACK after a CE-marked segment until a segment with CWR arrives; as a
sender it marks new data ECT(0) (never SYNs, pure ACKs, retransmissions or window
probes), and on ECE reduces the window as for a loss, at most once per window of data,
then sets CWR on the next new data segment.
"""

from __future__ import annotations

from typing import Final

from ..wire.tcp import ACK, CWR, ECE, RST, SYN, TCPRepr
from .seqnum import MASK

__all__ = ["CE", "ECN_MODES", "ECT0", "Ecn", "syn_requests_ecn", "synack_agrees"]

ECT0: Final = 2
"""ECN-Capable Transport(0): the codepoint our data segments carry."""
CE: Final = 3
"""Congestion Experienced: set by a router instead of dropping."""
ECN_MODES: Final = ("off", "accept", "on")
"""``Config.ecn``: never; only when the peer asks (Linux's default, tcp_ecn=2); also ask."""

_tuple_new = tuple.__new__


def syn_requests_ecn(seg: TCPRepr) -> bool:
    """An ECN-setup SYN carries both ECE and CWR (RFC 3168 6.1.1)."""
    return seg.flags & (ECE | CWR) == ECE | CWR


def synack_agrees(seg: TCPRepr) -> bool:
    """An ECN-setup SYN-ACK carries ECE without CWR (RFC 3168 6.1.1)."""
    return seg.flags & (ECE | CWR) == ECE


class Ecn:
    """ECN state of a connection that negotiated it."""

    __slots__ = ("cwr", "echo", "recover")

    def __init__(self) -> None:
        self.echo = False  # a CE mark arrived: ECE on every ACK until CWR does
        self.cwr = False  # the window was reduced: CWR on the next new data segment
        self.recover = -1  # snd.max at the last reduction: no other before it is acked

    def on_input(self, seg: TCPRepr) -> bool:
        """The receiver's side of one acceptable segment; True when it starts an echo
        (the caller ACKs at once, so the sender hears of the mark a round trip early)."""
        if seg.flags & CWR:
            self.echo = False
        if seg.ecn == CE and not self.echo:
            self.echo = True
            return True
        return False

    def should_reduce(self, seg: TCPRepr, snd_una: int, snd_max: int) -> bool:
        """The sender's side: an ECE on an ACK beyond the last reduction's window asks for
        a new reduction (RFC 3168 6.1.2); the caller reduces, and CWR goes out next."""
        if not seg.flags & ECE or seg.flags & SYN or snd_una <= self.recover:
            return False
        self.recover = snd_max
        self.cwr = True
        return True

    def mark(self, out: list[TCPRepr], snd_max0: int, window_open: bool) -> None:
        """Set ECE, CWR and the ECT(0) codepoint on the segments of one
        ``segments_to_send`` call (in place). ``snd_max0``: SND.MAX before the call, so
        segments from below it are retransmissions."""
        echo = self.echo
        base = snd_max0 & MASK
        for i, seg in enumerate(out):
            flags = seg[4]
            if flags & (SYN | RST):
                continue
            f = flags | ECE if echo and flags & ACK else flags
            ect = 0
            if seg[6] and window_open and (seg[2] - base) & MASK < 0x80000000:
                ect = ECT0
                if self.cwr:
                    self.cwr = False
                    f |= CWR
            if f != flags or ect:
                out[i] = _tuple_new(TCPRepr, (*seg[:4], f, *seg[5:14], ect))
