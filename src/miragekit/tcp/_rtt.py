"""Retransmission timeout estimation (RFC 6298) with exponential backoff."""

from __future__ import annotations

__all__ = ["RttEstimator"]


class RttEstimator:
    """SRTT/RTTVAR/RTO from RTT samples; ``timeout()`` includes the current backoff.

    Karn's rule (no samples from retransmitted segments) is the caller's job: it only
    feeds samples from timestamps or from segments sent once.
    """

    __slots__ = ("_base", "backoff", "granularity", "max_rto", "min_rto", "rttvar", "srtt")

    def __init__(
        self,
        initial_rto: float = 1.0,
        min_rto: float = 0.2,
        max_rto: float = 60.0,
        granularity: float = 0.001,
    ) -> None:
        if not 0 < min_rto <= max_rto:
            raise ValueError("min_rto/max_rto: need 0 < min_rto <= max_rto")
        self.srtt: float | None = None
        self.rttvar = 0.0
        self.min_rto = min_rto
        self.max_rto = max_rto
        self.granularity = granularity
        self._base = min(max(initial_rto, min_rto), max_rto)
        self.backoff = 0

    def sample(self, rtt: float) -> None:
        """Fold in one measurement (seconds), RFC 6298 2.2 and 2.3."""
        rtt = max(rtt, 0.0)
        srtt = self.srtt
        if srtt is None:
            self.srtt = rtt
            self.rttvar = rtt / 2
        else:
            self.rttvar = 0.75 * self.rttvar + 0.25 * abs(srtt - rtt)
            self.srtt = 0.875 * srtt + 0.125 * rtt
        assert self.srtt is not None
        rto = self.srtt + max(self.granularity, 4 * self.rttvar)
        self._base = min(max(rto, self.min_rto), self.max_rto)

    @property
    def rto(self) -> float:
        """The timeout without backoff."""
        return self._base

    def timeout(self) -> float:
        """The timeout to arm now: RTO doubled once per unanswered expiry (RFC 6298 5.5)."""
        return min(self._base * (1 << self.backoff), self.max_rto)

    def on_expiry(self) -> None:
        if self._base * (1 << self.backoff) < self.max_rto:
            self.backoff += 1

    def reset_backoff(self) -> None:
        self.backoff = 0
