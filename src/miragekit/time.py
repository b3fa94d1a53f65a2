"""TIME on asyncio: sleeping for cooperative tasks.

:meth:`Time.sleep` asks the *running* event loop to wake it up, so the same code sleeps
in real time under a normal loop and in virtual time under a simulated one.
"""

from __future__ import annotations

import asyncio
import math

from . import v1


class Time:
    """The TIME device: ``await Time().sleep(seconds)``."""

    async def sleep(self, seconds: float) -> None:
        """Suspend the calling task for ``seconds`` (``0`` just yields to other tasks)."""
        if not isinstance(seconds, int | float) or isinstance(seconds, bool):
            raise TypeError(f"seconds must be a number, got {type(seconds).__name__}")
        if math.isnan(seconds) or seconds < 0:
            raise ValueError(f"seconds must be >= 0, got {seconds}")
        await asyncio.sleep(seconds)


_check: type[v1.Time] = Time

__all__ = ["Time"]
