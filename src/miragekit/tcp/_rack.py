"""RACK's reordering window (RFC 8985 6.2): how long a hole may wait before it is lost.

A hole below data the peer has already received is lost once it was sent more than one
RTT plus the reordering window before now. The window is zero until reordering has been
seen (then losses are found as fast as three duplicate ACKs would), a quarter of the
minimum RTT after, widened by that much for each round trip in which a D-SACK showed a
retransmission was needless, never beyond SRTT, and narrowed back after 16 recoveries
without D-SACK.
"""

from __future__ import annotations

__all__ = ["ReorderWindow"]

PERSIST = 16


class ReorderWindow:
    __slots__ = ("_dsack_round", "_mult", "_persist", "min_rtt", "seen")

    def __init__(self) -> None:
        self.min_rtt: float | None = None
        self.seen = False  # RACK.reordering_seen
        self._mult = 1
        self._persist = 0
        self._dsack_round = -1.0

    def sample(self, rtt: float) -> None:
        if self.min_rtt is None or rtt < self.min_rtt:
            self.min_rtt = rtt

    def on_dsack(self, now: float, srtt: float) -> None:
        """RFC 8985 6.2 step 4: one step wider per round trip with a D-SACK."""
        self.seen = True
        if now >= self._dsack_round:
            self._mult += 1
            self._dsack_round = now + srtt
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
