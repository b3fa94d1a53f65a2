"""RACK's reordering window (RFC 8985 6.2): how long a hole may wait before it is lost.

A hole below data the peer has already received is lost once it was sent more than one
RTT plus the reordering window before now. The window is zero until reordering has been
seen (then losses are found as fast as three duplicate ACKs would), a quarter of the
minimum RTT after, widened by that much (RACK.reo_wnd_mult) for each round trip in which a
D-SACK showed a retransmission was needless (a round ends when SND.UNA passes the SND.NXT
of the D-SACK that opened it), never beyond SRTT, and narrowed back to one step after 16
recoveries (RACK.reo_wnd_persist) without D-SACK.
"""

from __future__ import annotations

from typing import Final

__all__ = ["ReorderWindow"]

PERSIST: Final = 16


class ReorderWindow:
    __slots__ = ("_dsack_round", "_mult", "_persist", "min_rtt", "seen")
    # RACK.dsack_round (SND.NXT when the round began; None: no round open),
    # RACK.reo_wnd_mult, RACK.reo_wnd_persist.

    def __init__(self) -> None:
        self.min_rtt: float | None = None
        self.seen = False  # RACK.reordering_seen
        self._mult = 1
        self._persist = 0
        self._dsack_round: int | None = None

    def sample(self, rtt: float) -> None:
        if self.min_rtt is None or rtt < self.min_rtt:
            self.min_rtt = rtt

    @property
    def mult(self) -> int:
        return self._mult

    def on_ack(self, snd_una: int, rtt: float = -1.0) -> None:
        """RFC 8985 6.2 step 4: the D-SACK round ends once SND.UNA reaches its end; ``rtt``
        the ACK's RTT sample (negative: none), as :meth:`sample` takes it (one call per
        ACK instead of two)."""
        if rtt >= 0.0 and (self.min_rtt is None or rtt < self.min_rtt):
            self.min_rtt = rtt
        r = self._dsack_round
        if r is not None and snd_una >= r:
            self._dsack_round = None

    def on_dsack(self, snd_una: int, snd_nxt: int) -> None:
        """RFC 8985 6.2 step 4: one step wider per round trip with a D-SACK."""
        self.seen = True
        self.on_ack(snd_una)
        if self._dsack_round is None:
            self._mult += 1
            self._dsack_round = snd_nxt
            self._persist = PERSIST

    def on_recovery_end(self) -> None:
        if self._persist > 0:
            self._persist -= 1
            if self._persist == 0:
                self._mult = 1

    def window(self, srtt: float, in_recovery: bool, sacked_segments: int) -> float:
        if not self.seen and (in_recovery or sacked_segments >= 3):
            return 0.0
        base = (self.min_rtt or 0.0) / 4 * self._mult
        return base if base < srtt else srtt
