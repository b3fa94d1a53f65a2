"""Retransmission timeout estimation (RFC 6298) with exponential backoff."""

from __future__ import annotations

__all__ = ["RttEstimator"]


class RttEstimator:
    """SRTT/RTTVAR/RTO from RTT samples; ``timeout()`` includes the current backoff.

    Karn's rule (no samples from retransmitted segments) is the caller's job: it only
    feeds samples from timestamps or from segments sent once.
    """

    __slots__ = (
        "_base",
        "backoff",
        "granularity",
        "latest",
        "max_rto",
        "min_rto",
        "rttvar",
        "srtt",
    )

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
        self.latest = 0.0  # the last sample (RACK.rtt)
        self.rttvar = 0.0
        self.min_rto = min_rto
        self.max_rto = max_rto
        self.granularity = granularity
        # Comparisons, not min(max()): one estimator per connection.
        base = initial_rto if initial_rto > min_rto else min_rto
        self._base = base if base < max_rto else max_rto
        self.backoff = 0

    def sample(self, rtt: float) -> None:
        """Fold in one measurement (seconds), RFC 6298 2.2 and 2.3.

        Called for nearly every ACK (timestamps), so written out without helper calls.
        """
        if rtt < 0.0:
            rtt = 0.0
        self.latest = rtt
        srtt = self.srtt
        if srtt is None:
            srtt = rtt
            rttvar = rtt / 2
        else:
            d = srtt - rtt
            rttvar = 0.75 * self.rttvar + 0.25 * (d if d >= 0.0 else -d)
            srtt = 0.875 * srtt + 0.125 * rtt
        self.srtt = srtt
        self.rttvar = rttvar
        v = 4 * rttvar
        rto = srtt + (v if v > self.granularity else self.granularity)
        if rto < self.min_rto:
            rto = self.min_rto
        if rto > self.max_rto:
            rto = self.max_rto
        self._base = rto

    @property
    def rto(self) -> float:
        """The timeout without backoff."""
        return self._base

    def timeout(self) -> float:
        """The timeout to arm now: RTO doubled once per unanswered expiry (RFC 6298 5.5)."""
        t = self._base * (1 << self.backoff) if self.backoff else self._base
        return t if t < self.max_rto else self.max_rto  # min() costs a call per ACK

    def on_expiry(self) -> None:
        if self._base * (1 << self.backoff) < self.max_rto:
            self.backoff += 1

    def fall_back(self, rto: float) -> None:
        """Take ``rto`` while there is no sample yet (RFC 6298 5.7, after a lost SYN)."""
        if self.srtt is None:
            self._base = min(max(rto, self.min_rto), self.max_rto)

    def reset_backoff(self) -> None:
        self.backoff = 0
