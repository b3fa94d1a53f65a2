"""RANDOM: a seedable pseudo-random generator with the seed's exact bounds.

``Random(seed=n)`` replays the same sequence on every run (for simulations and tests);
``Random()`` and :meth:`Random.self_init` seed from the operating system.
"""

from __future__ import annotations

import builtins
import os
import random as _random

from . import v1

INT_LIMIT = 1 << 30
"""``int bound`` requires ``0 < bound < 2**30`` (OCaml's ``Random.int``)."""

INT32_LIMIT = 1 << 31
"""``int32 bound`` requires ``0 < bound < 2**31`` (a positive OCaml ``int32``)."""


def _check_bound(bound: builtins.int, limit: builtins.int) -> None:
    if not isinstance(bound, builtins.int) or isinstance(bound, bool):
        raise TypeError(f"bound must be an int, got {type(bound).__name__}")
    if not 0 < bound < limit:
        raise ValueError(f"bound must satisfy 0 < bound < {limit}, got {bound}")


class Random:
    """The RANDOM device over :class:`random.Random` (not for cryptography)."""

    def __init__(self, seed: builtins.int | None = None) -> None:
        self._rng = _random.Random()
        if seed is None:
            self.self_init()
        else:
            self._rng.seed(seed, version=2)

    def self_init(self) -> None:
        """Reseed from the operating system's entropy."""
        self._rng.seed(os.urandom(32), version=2)

    def int(self, bound: builtins.int) -> builtins.int:
        """A value in ``[0, bound)``; ``0 < bound < 2**30``."""
        _check_bound(bound, INT_LIMIT)
        return self._rng.randrange(bound)

    def int32(self, bound: builtins.int) -> builtins.int:
        """A value in ``[0, bound)``; ``0 < bound < 2**31``."""
        _check_bound(bound, INT32_LIMIT)
        return self._rng.randrange(bound)


_check: type[v1.Random] = Random

__all__ = ["INT32_LIMIT", "INT_LIMIT", "Random"]
