"""NewReno window rules (RFC 5681 with RFC 3465 byte counting); recovery is in the connection."""

from __future__ import annotations

from ._base import INITIAL_SSTHRESH, CongestionControl

__all__ = ["NewReno"]


_OWN = ("_acc",)


class NewReno(CongestionControl):
    __slots__ = _OWN
    undo_fields = (*CongestionControl.undo_fields, *_OWN)

    def __init__(self, mss: int) -> None:
        # CongestionControl.__init__, inlined (one controller per connection).
        self.mss = mss
        two = 2 * mss if 2 * mss > 14600 else 14600
        self.cwnd = 10 * mss if 10 * mss < two else two
        self.ssthresh = INITIAL_SSTHRESH
        self.hystart = None
        self.used_full = False
        self.used_max = 0
        self.used_end = 0
        self.used_smax = 0
        self._acc = 0

    def on_ack(self, now: float, acked: int, srtt: float) -> None:
        if self.cwnd < self.ssthresh:
            self.slow_start(acked)
            return
        # Congestion avoidance: one SMSS per window of bytes acknowledged, counting only
        # ACKs of a window that filled cwnd.
        if not self.used_full:
            return
        self._acc += acked
        if self._acc >= self.cwnd:
            self._acc -= self.cwnd
            self.cwnd += self.mss

    def on_loss(self, now: float, flight: int) -> None:
        self.ssthresh = max(flight // 2, 2 * self.mss)
        self.cwnd = self.ssthresh
        self._acc = 0

    def on_rto(self, now: float, flight: int) -> None:
        self.ssthresh = max(flight // 2, 2 * self.mss)
        self.cwnd = self.mss
        self._acc = 0
