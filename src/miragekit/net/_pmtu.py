"""IPv4 path-MTU discovery (RFC 1191): what ICMP "fragmentation needed" taught us, per
destination, sans-I/O.

Why here and not in TCP: the estimate belongs to the path, so every connection to the
destination (and the next one) starts from it. Only a decrease is believed (RFC 1191
6.1), never below :data:`MIN_PMTU`; an entry is forgotten after :data:`PMTU_TIMEOUT`
so that a path that grew back is used again (RFC 1191 6.3 suggests ten minutes). A router
that reports no MTU (the old RFC 792 message) gets the next plateau below the quoted
packet's length (RFC 1191 7.1).
"""

from __future__ import annotations

from typing import Final

MIN_PMTU: Final = 576
"""The floor: TCP's minimum segment (536 bytes, RFC 9293 3.7.1) plus 40 bytes of
headers; a report below it is taken as this (Linux's floor, ``min_pmtu``, is 552)."""
PMTU_TIMEOUT: Final = 600.0
_PLATEAUS: Final = (65535, 32000, 17914, 8166, 4352, 2002, 1492, 1006, 508, 296, 68)
_MAX_ENTRIES: Final = 1024


class PathMtu:
    """The path MTU estimates of one IPv4 layer, by destination (int)."""

    __slots__ = ("_entries",)

    def __init__(self) -> None:
        self._entries: dict[int, tuple[int, float]] = {}

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, dst: int, link_mtu: int, now: float) -> int:
        """The MTU to use towards ``dst``: the learnt estimate, or the link's."""
        e = self._entries.get(dst)
        if e is None:
            return link_mtu
        if e[1] <= now:
            del self._entries[dst]
            return link_mtu
        return min(e[0], link_mtu)

    def lowered(self, dst: int, mtu: int, quoted_len: int, link_mtu: int, now: float) -> int | None:
        """The estimate a "fragmentation needed" about a packet of ``quoted_len`` bytes
        to ``dst`` with next-hop MTU ``mtu`` (0: not reported) would give, or None when
        it changes nothing (not a decrease). Kept only by :meth:`set`, once the
        transport found that the message quotes a packet of its own."""
        if mtu == 0:
            mtu = next((p for p in _PLATEAUS if p < quoted_len), 68)
        mtu = max(mtu, MIN_PMTU)
        if mtu >= self.get(dst, link_mtu, now) or mtu >= quoted_len:
            return None
        return mtu

    def set(self, dst: int, mtu: int, now: float) -> None:
        entries = self._entries
        if dst not in entries and len(entries) >= _MAX_ENTRIES:
            del entries[next(iter(entries))]
        entries[dst] = (mtu, now + PMTU_TIMEOUT)
