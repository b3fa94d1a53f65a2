"""CLOCK: wall-clock time and its UTC breakdown.

The time source is a parameter so a simulation can hand in its virtual clock; the
breakdown is pure arithmetic on that value (no local time zone, never daylight saving).
"""

from __future__ import annotations

import math
import time as _time
from collections.abc import Callable

from . import v1


class Clock:
    """The CLOCK device; ``Clock(source)`` reads ``source()`` instead of the host clock."""

    def __init__(self, source: Callable[[], float] | None = None) -> None:
        self._source: Callable[[], float] = _time.time if source is None else source

    def time(self) -> float:
        """Seconds since 1970-01-01 00:00:00 UTC."""
        return float(self._source())

    def gmtime(self, t: float) -> v1.Tm:
        """``t`` broken down in UTC, with the seed's conventions (year - 1900, Sunday 0)."""
        if not isinstance(t, int | float) or isinstance(t, bool):
            raise TypeError(f"t must be a number, got {type(t).__name__}")
        if not math.isfinite(t):
            raise ValueError(f"t must be finite, got {t}")
        try:
            s = _time.gmtime(math.floor(t))
        except (OverflowError, OSError) as e:
            raise ValueError(f"t is out of the representable range: {t}") from e
        return v1.Tm(
            tm_sec=s.tm_sec,
            tm_min=s.tm_min,
            tm_hour=s.tm_hour,
            tm_mday=s.tm_mday,
            tm_mon=s.tm_mon - 1,
            tm_year=s.tm_year - 1900,
            tm_wday=(s.tm_wday + 1) % 7,
            tm_yday=s.tm_yday - 1,
            tm_isdst=False,
        )


_check: type[v1.Clock] = Clock

__all__ = ["Clock"]
