"""The interface every congestion controller implements."""

from __future__ import annotations

import copy

from .hystart import HyStart

__all__ = ["INITIAL_SSTHRESH", "CongestionControl", "initial_window"]

INITIAL_SSTHRESH = 1 << 62


def initial_window(mss: int) -> int:
    """RFC 6928: min(10*MSS, max(2*MSS, 14600))."""
    return min(10 * mss, max(2 * mss, 14600))


class CongestionControl:
    __slots__ = ("cwnd", "hystart", "mss", "ssthresh")

    def __init__(self, mss: int) -> None:
        self.mss = mss
        # initial_window, inlined: one controller per connection, made at its SYN.
        self.cwnd = min(10 * mss, max(2 * mss, 14600))
        self.ssthresh = INITIAL_SSTHRESH
        # HyStart++ (RFC 9406) for the initial slow start, when enabled.
        self.hystart: HyStart | None = None

    def slow_start(self, acked: int) -> None:
        """Slow start's growth: RFC 3465 byte counting (L = 2), or HyStart++'s rule in
        the initial slow start, which ends it once CSS has run its rounds."""
        hs = self.hystart
        if hs is None or self.ssthresh != INITIAL_SSTHRESH:
            self.cwnd += min(acked, 2 * self.mss)
            return
        self.cwnd += hs.increase(acked, self.mss)
        if hs.done:
            self.ssthresh = self.cwnd

    def set_mss(self, mss: int) -> None:
        """Called once the MSS is negotiated, before any data is sent."""
        self.mss = mss
        self.cwnd = min(10 * mss, max(2 * mss, 14600))

    def snapshot(self) -> CongestionControl:
        """A copy of the state before a loss response, for ``restore`` if it proves
        spurious."""
        return copy.copy(self)

    def restore(self, snap: CongestionControl) -> None:
        """Undo a loss response (RFC 4015, RFC 3708): every field from ``snap``, with
        cwnd never below what it has become since."""
        cwnd = self.cwnd
        for cls in type(self).__mro__:
            for name in cls.__dict__.get("__slots__", ()):
                setattr(self, name, getattr(snap, name))
        if self.cwnd < cwnd:
            self.cwnd = cwnd

    def on_ack(self, now: float, acked: int, srtt: float) -> None:
        raise NotImplementedError

    def on_loss(self, now: float, flight: int) -> None:
        raise NotImplementedError

    def on_rto(self, now: float, flight: int) -> None:
        raise NotImplementedError
