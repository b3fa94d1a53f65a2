"""CUBIC (RFC 9438): a cubic window growth function of the time since the last loss."""

from __future__ import annotations

from typing import Final

from ._base import CongestionControl

__all__ = ["Cubic"]

C: Final = 0.4
BETA: Final = 0.7
ALPHA: Final = 3 * (1 - BETA) / (1 + BETA)
_OWN = ("_acc", "_epoch", "_k", "_prior", "_stamp", "_w_est", "_w_max")


class Cubic(CongestionControl):
    """Windows are tracked in segments (floats) internally, exposed in bytes."""

    __slots__ = _OWN
    undo_fields = (*CongestionControl.undo_fields, *_OWN)

    def __init__(self, mss: int) -> None:
        # The base class's, called directly: super() costs an object per connection.
        CongestionControl.__init__(self, mss)
        self._epoch: float | None = None
        self._k = 0.0
        self._w_max = 0.0
        self._w_est = 0.0
        self._prior = 0.0  # cwnd_prior: the window when ssthresh was last set, segments
        self._acc = 0
        # When t was last brought up to date: time since then that the flow spends
        # application-limited (ACKs of a window that never filled cwnd) or idle (nothing
        # in flight) moves the epoch on instead, so t leaves it out (RFC 9438 5.8).
        self._stamp = 0.0

    watches_idle = True

    def went_idle(self, now: float) -> None:
        if self._epoch is not None:
            self._epoch += now - self._stamp
            self._stamp = now

    def on_ack(self, now: float, acked: int, srtt: float) -> None:
        mss = self.mss
        if self.cwnd < self.ssthresh:
            self.slow_start(acked)
            return
        if not self.used_full:
            if self._epoch is not None:
                self._epoch += now - self._stamp
            self._stamp = now
            return
        self._stamp = now
        cwnd = self.cwnd / mss
        if self._epoch is None:
            self._epoch = now
            if cwnd < self._w_max:
                self._k = ((self._w_max - cwnd) / C) ** (1 / 3)
            else:
                self._k = 0.0
                self._w_max = cwnd
            self._w_est = cwnd
        t = now - self._epoch
        target = C * (t + srtt - self._k) ** 3 + self._w_max
        target = min(max(target, cwnd), 1.5 * cwnd)
        # Reno-friendly estimate (RFC 9438 4.3), growing as fast as Reno (alpha 1) once it
        # is back at the window of the last reduction.
        alpha = 1.0 if self._w_est >= self._prior else ALPHA
        self._w_est += alpha * (acked / mss) / cwnd
        w_cubic_now = C * (t - self._k) ** 3 + self._w_max
        if w_cubic_now < self._w_est:
            new = max(self._w_est, cwnd)
        else:
            new = cwnd + (target - cwnd) * (acked / mss) / cwnd
        self.cwnd = max(int(new * mss), self.cwnd)

    def _reduce(self, now: float) -> None:
        cwnd = self.cwnd / self.mss
        self._prior = cwnd
        # Fast convergence (RFC 9438 4.7).
        if cwnd < self._w_max:
            self._w_max = cwnd * (1 + BETA) / 2
        else:
            self._w_max = cwnd
        self.ssthresh = max(int(self.cwnd * BETA), 2 * self.mss)
        self._epoch = None

    def on_loss(self, now: float, flight: int) -> None:
        self._reduce(now)
        self.cwnd = self.ssthresh

    def on_rto(self, now: float, flight: int) -> None:
        self._reduce(now)
        self.cwnd = self.mss
