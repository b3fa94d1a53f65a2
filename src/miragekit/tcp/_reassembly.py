"""Out-of-order receive data, and the SACK blocks that report it (RFC 2018).

Ranges are disjoint and kept sorted; data is appended in place when a segment extends a
range (the common case while a hole is open), so a burst after one loss costs linear,
not quadratic, copying. ``stamp`` orders ranges by the most recent change, since RFC 2018
wants the block holding the latest segment reported first.
"""

from __future__ import annotations

from typing import Final

from ..v1 import Buffer

__all__ = ["MAX_RANGES", "Reassembler"]

# Holes bound the work per segment (the scans are linear) and defeat tiny-fragment floods.
MAX_RANGES: Final = 64


class _Range:
    __slots__ = ("data", "end", "stamp", "start")

    def __init__(self, start: int, end: int, data: bytearray, stamp: int) -> None:
        self.start = start
        self.end = end
        self.data = data
        self.stamp = stamp


class Reassembler:
    __slots__ = ("_clock", "dropped", "held", "ranges")

    def __init__(self) -> None:
        self.ranges: list[_Range] = []
        self._clock = 0
        self.held = 0
        self.dropped = 0

    def __bool__(self) -> bool:
        return bool(self.ranges)

    def clear(self) -> None:
        self.ranges.clear()
        self.held = 0

    def add(self, start: int, data: Buffer) -> None:
        end = start + len(data)
        if end <= start:
            return
        self._clock += 1
        ranges = self.ranges
        n = len(ranges)
        i = 0
        while i < n and ranges[i].end < start:
            i += 1
        j = i
        while j < n and ranges[j].start <= end:
            j += 1
        if i == j:
            if n >= MAX_RANGES:
                # Too fragmented (or an attack): drop it, the peer will resend.
                self.dropped += 1
                return
            ranges.insert(i, _Range(start, end, bytearray(data), self._clock))
            self.held += end - start
            return
        first = ranges[i]
        if j == i + 1 and first.start <= start:
            if end <= first.end:
                first.stamp = self._clock  # a duplicate
                return
            # Extends one range on the right: append the new tail in place.
            first.data += memoryview(data)[first.end - start :]
            self.held += end - first.end
            first.end = end
            first.stamp = self._clock
            return
        lo = min(start, first.start)
        hi = max(end, ranges[j - 1].end)
        merged = bytearray(hi - lo)
        merged[start - lo : end - lo] = data
        old = 0
        for r in ranges[i:j]:
            merged[r.start - lo : r.end - lo] = r.data
            old += r.end - r.start
        ranges[i:j] = [_Range(lo, hi, merged, self._clock)]
        self.held += (hi - lo) - old

    def holds(self, start: int, end: int) -> bool:
        """Whether [start, end) is already held whole (its arrival is a duplicate)."""
        for r in self.ranges:
            if r.start <= start and end <= r.end:
                return True
            if r.start > start:
                break
        return False

    def pop_ready(self, rcv_nxt: int) -> tuple[int, bytearray] | None:
        """``(end, data)`` of the first range if it starts at or before ``rcv_nxt``."""
        ranges = self.ranges
        while ranges:
            first = ranges[0]
            if first.start > rcv_nxt:
                return None
            del ranges[0]
            self.held -= first.end - first.start
            if first.end <= rcv_nxt:
                continue
            data = first.data
            if first.start < rcv_nxt:
                del data[: rcv_nxt - first.start]
            return first.end, data
        return None

    def blocks(self, limit: int) -> list[tuple[int, int]]:
        """Up to ``limit`` ranges as ``(start, end)``, the most recently changed first."""
        if not self.ranges:
            return []
        order = sorted(self.ranges, key=lambda r: r.stamp, reverse=True)
        return [(r.start, r.end) for r in order[:limit]]
