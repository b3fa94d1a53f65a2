"""A bounded cache of answers that honours TTLs, with negative entries (RFC 2308).

Sans-I/O: the caller passes ``now`` (the loop's clock, virtual in a simulation). The
cache is bounded both in entries and in bytes of record data, so a hostile server
cannot grow it without limit; the least recently used entries go first.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

from dns.rdata import Rdata

Key = tuple[str, int]  # (lower-case name with trailing dot, rdtype)


@dataclass(frozen=True, slots=True)
class Entry:
    """Records or a negative answer, until ``expires``; ``size`` counts their bytes."""

    records: tuple[Rdata, ...]
    nxdomain: bool  # with no records: NXDOMAIN (True) or NODATA (False)
    expires: float
    size: int


class Cache:
    MAX_TTL = 86400.0  # a day, whatever the server says
    MAX_NEGATIVE_TTL = 900.0  # RFC 2308 section 5 suggests one to three hours at most

    def __init__(self, max_entries: int = 1024, max_bytes: int = 1 << 20) -> None:
        if max_entries < 1 or max_bytes < 1:
            raise ValueError("the DNS cache needs room for at least one entry")
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self._d: OrderedDict[Key, Entry] = OrderedDict()
        self._bytes = 0
        self.hits = 0
        self.misses = 0
        self.evictions = 0

    def __len__(self) -> int:
        return len(self._d)

    @property
    def bytes(self) -> int:
        return self._bytes

    def get(self, key: Key, now: float, *, count_miss: bool = True) -> Entry | None:
        e = self._d.get(key)
        if e is None or e.expires <= now:
            if e is not None:
                self._drop(key)
            self.misses += count_miss
            return None
        self._d.move_to_end(key)
        self.hits += 1
        return e

    def put(self, key: Key, records: tuple[Rdata, ...], ttl: float, now: float) -> None:
        size = 64 + len(key[0]) + sum(len(r.to_wire() or b"") for r in records)
        expires = now + min(max(ttl, 0.0), self.MAX_TTL)
        self._store(key, Entry(records, False, expires, size))

    def put_negative(self, key: Key, nxdomain: bool, ttl: float, now: float) -> None:
        ttl = min(max(ttl, 0.0), self.MAX_NEGATIVE_TTL)
        self._store(key, Entry((), nxdomain, now + ttl, 64 + len(key[0])))

    def _store(self, key: Key, e: Entry) -> None:
        if e.size > self.max_bytes:
            return  # larger than the whole cache: not kept
        if key in self._d:
            self._drop(key)
        self._d[key] = e
        self._bytes += e.size
        while len(self._d) > self.max_entries or self._bytes > self.max_bytes:
            old, _ = next(iter(self._d.items()))
            self._drop(old)
            self.evictions += 1

    def _drop(self, key: Key) -> None:
        e = self._d.pop(key)
        self._bytes -= e.size
