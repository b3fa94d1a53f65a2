"""The sender's SACK scoreboard and loss-recovery helpers (RFC 2018, RFC 6675).

Sequence numbers here are the connection's unbounded ints, so plain comparisons hold.
The scoreboard is a sorted list of disjoint ``[left, right)`` ranges the peer reported;
everything below ``snd_una`` is dropped as the cumulative ACK advances. Holes between
ranges are where loss is suspected; ``pipe`` and ``next_seg`` follow RFC 6675 at range
granularity (a hole is lost as a whole once enough is SACKed above it).
"""

from __future__ import annotations

__all__ = ["DUP_THRESH", "MAX_BLOCKS", "Scoreboard"]

DUP_THRESH = 3
# A peer cannot make the scoreboard (and the linear scans over it) grow without bound.
MAX_BLOCKS = 64


class Scoreboard:
    __slots__ = ("blocks",)

    def __init__(self) -> None:
        self.blocks: list[list[int]] = []

    def __bool__(self) -> bool:
        return bool(self.blocks)

    def clear(self) -> None:
        self.blocks.clear()

    def add(self, left: int, right: int) -> bool:
        """Record one SACK block; returns whether it told us anything new."""
        if right <= left:
            return False
        blocks = self.blocks
        i = 0
        n = len(blocks)
        while i < n and blocks[i][1] < left:
            i += 1
        j = i
        while j < n and blocks[j][0] <= right:
            j += 1
        if i == j:
            if n >= MAX_BLOCKS:
                return False  # keep the scoreboard small; losing detail is safe
            blocks.insert(i, [left, right])
            return True
        lo = min(left, blocks[i][0])
        hi = max(right, blocks[j - 1][1])
        changed = j - i > 1 or lo != blocks[i][0] or hi != blocks[i][1]
        blocks[i:j] = [[lo, hi]]
        return changed

    def advance(self, snd_una: int) -> None:
        blocks = self.blocks
        while blocks and blocks[0][1] <= snd_una:
            del blocks[0]
        if blocks and blocks[0][0] < snd_una:
            blocks[0][0] = snd_una

    def sacked_bytes(self) -> int:
        return sum(right - left for left, right in self.blocks)

    def is_lost(self, seq: int, mss: int) -> bool:
        """RFC 6675 IsLost: DupThresh ranges, or more than (DupThresh-1)*MSS bytes, above seq."""
        count = 0
        total = 0
        for left, right in reversed(self.blocks):
            if right <= seq:
                break
            count += 1
            total += right - max(left, seq + 1)
        return count >= DUP_THRESH or total > (DUP_THRESH - 1) * mss

    def _holes(self, snd_una: int, mss: int) -> list[tuple[int, int, bool]]:
        """Holes below the highest SACKed byte, each with whether it is lost."""
        out: list[tuple[int, int, bool]] = []
        above_count = len(self.blocks)
        above_bytes = self.sacked_bytes()
        start = snd_una
        for left, right in self.blocks:
            if left > start:
                lost = above_count >= DUP_THRESH or above_bytes > (DUP_THRESH - 1) * mss
                out.append((start, left, lost))
            above_count -= 1
            above_bytes -= right - left
            start = right
        return out

    def pipe(self, snd_una: int, snd_max: int, high_rxt: int, mss: int) -> int:
        """RFC 6675 pipe: bytes believed in flight."""
        if not self.blocks:
            return snd_max - snd_una + max(0, high_rxt - snd_una)
        pipe = 0
        for a, b, lost in self._holes(snd_una, mss):
            if not lost:
                pipe += b - a
            if high_rxt > a:
                pipe += min(b, high_rxt) - a
        tail = self.blocks[-1][1]
        if snd_max > tail:
            pipe += snd_max - tail
        return pipe

    def next_seg(self, snd_una: int, high_rxt: int, mss: int) -> tuple[int, int] | None:
        """RFC 6675 NextSeg rule 1: the first lost, not yet retransmitted, range."""
        for a, b, lost in self._holes(snd_una, mss):
            if not lost:
                continue
            s = max(a, high_rxt)
            if s < b:
                return s, min(b, s + mss)
        return None
