"""IPv4 identification values that tell an observer nothing about our other traffic.

Why: one global counter lets anyone who can make us send two packets learn how many we
sent in between, to anyone (the "idle scan"; RFC 7739, RFC 6274). As
RFC 7739 5.3 describes, a keyed hash of the destination picks one counter of a table and
a second keyed hash an offset: successive packets to one destination still get distinct
IDs (which reassembly needs), but packets to others move a counter that destination
almost never shares. TCP segments carry DF (RFC 6864 4.1: the ID of such an atomic
datagram is not used) and take the next of a per-connection counter started here, as
Linux does.
"""

from __future__ import annotations

import hashlib
import random
import sys
from array import array

__all__ = ["IpIdGenerator"]

_TABLE = 2048
_CACHE = 4096
_BIG_ENDIAN = sys.byteorder == "big"


class IpIdGenerator:
    """Per-destination hashed IPv4 IDs (sans-I/O: the caller gives the generator)."""

    __slots__ = ("_cache", "_key", "_table")

    def __init__(self, rng: random.Random) -> None:
        self._key = rng.randbytes(16)
        # Unsigned 16-bit counters in one array: 4 KiB a stack where a list of ints took
        # 72 KiB (36 MB at 500 hosts). The same draws: ``getrandbits(16)`` is the top
        # half of one 32-bit word, and one call for all the words gives them in order,
        # the first in the lowest bits.
        words = array("H", rng.getrandbits(32 * _TABLE).to_bytes(4 * _TABLE, "little"))
        if _BIG_ENDIAN:
            words.byteswap()
        self._table = words[1::2]
        # By destination: table index << 16 | offset, one int (a tuple of two ints held
        # three objects, ~110 bytes, for each destination a host talks to).
        self._cache: dict[int, int] = {}

    def _slot(self, dst: int) -> int:
        """``table index << 16 | offset`` for ``dst``: one keyed hash, then cached."""
        c = self._cache.get(dst)
        if c is None:
            d = hashlib.blake2s(dst.to_bytes(4, "big"), key=self._key, digest_size=8).digest()
            h = int.from_bytes(d, "big")
            if len(self._cache) >= _CACHE:
                self._cache.clear()
            c = self._cache[dst] = ((h >> 16) % _TABLE) << 16 | (h & 0xFFFF)
        return c

    def next(self, dst: int) -> int:
        """The ID of the next packet to ``dst`` (an IPv4 address as an int)."""
        c = self._slot(dst)
        slot = c >> 16
        table = self._table
        n = table[slot] = (table[slot] + 1) & 0xFFFF
        return (n + c) & 0xFFFF  # the offset is c's low 16 bits
