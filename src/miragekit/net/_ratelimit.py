"""A token bucket, for ICMP errors (RFC 1812 4.3.2.8, RFC 4443 2.4(f)), sans-I/O."""

from __future__ import annotations


class TokenBucket:
    """Allows ``burst`` events at once and ``rate`` per second on average."""

    __slots__ = ("_burst", "_last", "_rate", "_tokens")

    def __init__(self, rate: float, burst: int) -> None:
        self._rate = rate
        self._burst = float(burst)
        self._tokens = float(burst)
        self._last = 0.0

    def allow(self, now: float) -> bool:
        """Take one token if there is one (refilled up to ``now``)."""
        self._tokens = min(self._burst, self._tokens + (now - self._last) * self._rate)
        self._last = now
        if self._tokens < 1.0:
            return False
        self._tokens -= 1.0
        return True
