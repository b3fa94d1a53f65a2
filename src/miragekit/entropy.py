"""ENTROPY: environmental entropy pushed to one registered handler.

:class:`Entropy` reads the operating system's source (``os.urandom``, i.e. ``getrandom``
on Linux); :class:`SeededEntropy` derives a reproducible stream from a seed, for
simulations. Both deliver a buffer to the handler as soon as it is registered and then
every ``interval`` seconds on the running event loop (so a simulated loop drives it in
virtual time), until :meth:`disconnect`.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
from collections.abc import Callable
from typing import Self

from . import v1
from .result import EntropyError, Error, NoEntropyDevice, Ok

SOURCE_OS = 0
"""The source id of the operating system's entropy."""

SOURCE_SEEDED = 1
"""The source id of :class:`SeededEntropy` (simulated entropy)."""

DEFAULT_SIZE = 32
DEFAULT_INTERVAL = 10.0


class _Pusher:
    """The delivery machinery shared by both providers: one handler, a periodic timer."""

    def __init__(
        self, name: str, read: Callable[[int], bytes], source: int, size: int, interval: float
    ) -> None:
        if size <= 0:
            raise ValueError(f"size must be > 0, got {size}")
        if not interval > 0:
            raise ValueError(f"interval must be > 0, got {interval}")
        self._name = name
        self._read = read
        self._source = source
        self._size = size
        self._interval = interval
        self._handler: v1.EntropyHandler | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._connected = True

    def id(self) -> str:
        return self._name

    @property
    def connected(self) -> bool:
        return self._connected

    async def handler(self, h: v1.EntropyHandler) -> None:
        """Register ``h`` as the single handler (replacing any earlier one) and feed it."""
        if not callable(h):
            raise TypeError(f"h must be callable, got {type(h).__name__}")
        self._handler = h
        if not self._connected:
            return
        self._deliver()
        if self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(self._interval, self._tick)

    async def disconnect(self) -> None:
        """Stop delivering; the handler is never called again."""
        self._connected = False
        self._handler = None
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _tick(self) -> None:
        self._timer = None
        if not self._connected:
            return
        self._deliver()
        self._timer = asyncio.get_running_loop().call_later(self._interval, self._tick)

    def _deliver(self) -> None:
        h = self._handler
        if h is None:
            return
        try:
            data = self._read(self._size)
        except OSError:
            return  # a transient failure of the source: skip this round
        h(self._source, memoryview(data))


class Entropy(_Pusher):
    """The ENTROPY device over the operating system's entropy source."""

    def __init__(
        self,
        name: str,
        *,
        read: Callable[[int], bytes] = os.urandom,
        size: int = DEFAULT_SIZE,
        interval: float = DEFAULT_INTERVAL,
    ) -> None:
        super().__init__(name, read, SOURCE_OS, size, interval)

    @classmethod
    async def connect(
        cls,
        id: str,
        *,
        read: Callable[[int], bytes] = os.urandom,
        size: int = DEFAULT_SIZE,
        interval: float = DEFAULT_INTERVAL,
    ) -> Ok[Self] | Error[EntropyError]:
        """Connect, probing the source; ``Error(NoEntropyDevice)`` if it does not work."""
        try:
            probe = read(1)
        except (OSError, NotImplementedError) as e:
            return Error(NoEntropyDevice(f"operating-system entropy unavailable: {e}"))
        if len(probe) != 1:
            return Error(NoEntropyDevice("operating-system entropy returned no bytes"))
        return Ok(cls(id, read=read, size=size, interval=interval))


class SeededEntropy(_Pusher):
    """An ENTROPY device whose bytes are SHA-256 of (seed, counter): reproducible runs."""

    def __init__(
        self,
        name: str,
        *,
        seed: int | bytes = 0,
        size: int = DEFAULT_SIZE,
        interval: float = DEFAULT_INTERVAL,
    ) -> None:
        if isinstance(seed, int):
            if seed < 0:
                raise ValueError(f"seed must be >= 0, got {seed}")
            seed = seed.to_bytes(max(1, (seed.bit_length() + 7) // 8), "big")
        self._seed = bytes(seed)
        self._counter = 0
        super().__init__(name, self._stream, SOURCE_SEEDED, size, interval)

    @classmethod
    async def connect(
        cls,
        id: str,
        *,
        seed: int | bytes = 0,
        size: int = DEFAULT_SIZE,
        interval: float = DEFAULT_INTERVAL,
    ) -> Ok[Self] | Error[EntropyError]:
        return Ok(cls(id, seed=seed, size=size, interval=interval))

    def _stream(self, n: int) -> bytes:
        out = bytearray()
        while len(out) < n:
            block = hashlib.sha256(
                len(self._seed).to_bytes(4, "big") + self._seed + self._counter.to_bytes(8, "big")
            ).digest()
            self._counter += 1
            out += block
        return bytes(out[:n])


_check: type[v1.Entropy] = Entropy
_check_seeded: type[v1.Entropy] = SeededEntropy

__all__ = [
    "DEFAULT_INTERVAL",
    "DEFAULT_SIZE",
    "SOURCE_OS",
    "SOURCE_SEEDED",
    "Entropy",
    "SeededEntropy",
]
