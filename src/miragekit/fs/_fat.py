"""The file allocation table, cached in memory and written through sector by sector.

:class:`Fat` decodes 12-, 16- and 32-bit entries over one ``bytearray`` holding the first
FAT copy. Every change marks the sectors it touched; the filesystem then writes those
sectors to every copy, in the order it chooses, so that both copies stay equal and a
chain is never linked before its clusters are.
"""

from __future__ import annotations

import itertools
from array import array

FREE = 0


class Fat:
    """An in-memory FAT of ``bits`` (12/16/32) with ``cluster_count`` data clusters."""

    def __init__(self, bits: int, raw: bytearray, cluster_count: int, sector_size: int) -> None:
        if bits not in (12, 16, 32):
            raise ValueError(f"bits must be 12, 16 or 32, got {bits}")
        self.bits = bits
        self.raw = raw
        self.cluster_count = cluster_count
        self.sector_size = sector_size
        self.limit = cluster_count + 2  # valid clusters are 2 .. limit-1
        self.eoc = {12: 0xFFF, 16: 0xFFFF, 32: 0x0FFFFFFF}[bits]
        self.eoc_min = {12: 0xFF8, 16: 0xFFF8, 32: 0x0FFFFFF8}[bits]
        self.bad = {12: 0xFF7, 16: 0xFFF7, 32: 0x0FFFFFF7}[bits]
        self._dirty: set[int] = set()
        self._words: memoryview | None = None
        if bits == 16:
            self._words = memoryview(raw)[: len(raw) & ~1].cast("H")
        elif bits == 32:
            self._words = memoryview(raw)[: len(raw) & ~3].cast("I")
        if self._words is not None:
            vals = self._words[2 : self.limit].tolist()
            if bits == 16:
                self.free_count = vals.count(0)
            else:
                self.free_count = sum(1 for v in vals if not v & 0x0FFFFFFF)
        else:
            self.free_count = sum(1 for c in range(2, self.limit) if self.get(c) == FREE)
        self.next_free = 2

    # --- entries -----------------------------------------------------------------------

    def get(self, cluster: int) -> int:
        w = self._words
        if w is not None:
            v: int = w[cluster]
            return v & 0x0FFFFFFF if self.bits == 32 else v
        off = cluster + (cluster >> 1)
        v = self.raw[off] | (self.raw[off + 1] << 8)
        return v >> 4 if cluster & 1 else v & 0xFFF

    def set(self, cluster: int, value: int) -> None:
        """Set one entry (in memory) and mark its sector(s) dirty; keeps ``free_count``."""
        old = self.get(cluster)
        if (old == FREE) != (value == FREE):
            self.free_count += 1 if value == FREE else -1
        w = self._words
        ss = self.sector_size
        if w is not None:
            if self.bits == 32:
                w[cluster] = (w[cluster] & 0xF0000000) | (value & 0x0FFFFFFF)
                self._dirty.add(cluster * 4 // ss)
            else:
                w[cluster] = value
                self._dirty.add(cluster * 2 // ss)
            return
        off = cluster + (cluster >> 1)
        raw = self.raw
        if cluster & 1:
            raw[off] = (raw[off] & 0x0F) | ((value << 4) & 0xF0)
            raw[off + 1] = (value >> 4) & 0xFF
        else:
            raw[off] = value & 0xFF
            raw[off + 1] = (raw[off + 1] & 0xF0) | ((value >> 8) & 0x0F)
        self._dirty.add(off // ss)
        self._dirty.add((off + 1) // ss)

    def is_eoc(self, value: int) -> bool:
        return value >= self.eoc_min

    # --- chains ------------------------------------------------------------------------

    def chain(self, first: int) -> list[int]:
        """The clusters of the chain starting at ``first``; raises ``ValueError`` if broken."""
        out: list[int] = []
        if first == 0:
            return out
        c = first
        limit = self.limit
        w = self._words
        while True:
            if c < 2 or c >= limit:
                raise ValueError(f"chain from cluster {first} reaches invalid cluster {c}")
            run = self._run_length(c) if w is not None else 0
            out.extend(range(c, c + run + 1))
            if len(out) > self.cluster_count:
                raise ValueError(f"chain from cluster {first} loops")
            c += run
            nxt = self.get(c)
            if nxt >= self.eoc_min:
                return out
            if nxt == FREE or nxt == self.bad:
                raise ValueError(f"chain from cluster {first} reaches a free or bad cluster")
            c = nxt

    def _run_length(self, c: int) -> int:
        """How many entries from ``c`` on point to the next cluster (compared in bulk)."""
        w = self._words
        assert w is not None
        limit = self.limit - 1
        run, step = 0, 16
        while c + run < limit:
            hi = min(c + run + step, limit)
            seg = w[c + run : hi].tolist()
            exp = range(c + run + 1, hi + 1)
            if seg == list(exp):
                run = hi - c
                step *= 4
                continue
            for a, b in zip(seg, exp, strict=True):
                if a != b:
                    break
                run += 1
            break
        return run

    def find_free(self, n: int) -> list[int] | None:
        """``n`` free clusters (not yet taken), as contiguous as possible; ``None`` if full."""
        if n <= 0:
            return []
        if n > self.free_count:
            return None
        limit = self.limit
        start = self.next_free if 2 <= self.next_free < limit else 2
        run = self._zero_run(start, n)
        if run is not None:
            return list(range(run, run + n))
        out: list[int] = []
        w = self._words
        c = start
        wrapped = False
        while len(out) < n:
            if c >= limit:
                if wrapped:
                    return None
                c, wrapped = 2, True
            if wrapped and c >= start:
                return None
            if (w[c] & 0x0FFFFFFF if w is not None else self.get(c)) == FREE:
                out.append(c)
            c += 1
        return out

    def _zero_run(self, start: int, n: int) -> int | None:
        """The first cluster of ``n`` free clusters in a row from ``start`` (16/32-bit FATs)."""
        w = self._words
        if w is None:
            return None
        size = 2 if self.bits == 16 else 4
        pattern = bytes(size * n)
        raw = self.raw
        pos = start * size
        end = self.limit * size
        while True:
            i = raw.find(pattern, pos, end)
            if i < 0:
                return None
            if i % size == 0:
                return i // size
            pos = i + (size - i % size)

    def link(self, clusters: list[int]) -> None:
        """Chain free ``clusters`` together, the last one ending the chain."""
        if not clusters:
            return
        n = len(clusters)
        c0 = clusters[0]
        w = self._words
        if (
            w is not None
            and n > 1
            and clusters[-1] - c0 == n - 1
            and clusters == list(range(c0, c0 + n))
        ):
            # One contiguous run: one slice assignment instead of n entry updates.
            code = "H" if self.bits == 16 else "I"
            if self.bits == 32:
                vals = [
                    (old & 0xF0000000) | nxt
                    for old, nxt in zip(
                        w[c0 : c0 + n - 1].tolist(), range(c0 + 1, c0 + n), strict=True
                    )
                ]
            else:
                vals = list(range(c0 + 1, c0 + n))
            self.free_count -= n - 1  # they were all free
            w[c0 : c0 + n - 1] = array(code, vals)
            size = 2 if self.bits == 16 else 4
            ss = self.sector_size
            self._dirty.update(range(c0 * size // ss, (c0 + n - 1) * size // ss + 1))
        else:
            for a, b in itertools.pairwise(clusters):
                self.set(a, b)
        self.set(clusters[-1], self.eoc)
        self.next_free = clusters[-1] + 1

    # --- dirty sectors -----------------------------------------------------------------

    def take_dirty(self) -> list[tuple[int, int]]:
        """Runs ``(first sector, count)`` of changed FAT sectors, and forget them."""
        runs: list[tuple[int, int]] = []
        for s in sorted(self._dirty):
            if runs and runs[-1][0] + runs[-1][1] == s:
                runs[-1] = (runs[-1][0], runs[-1][1] + 1)
            else:
                runs.append((s, 1))
        self._dirty.clear()
        return runs


def cluster_runs(clusters: list[int], lo: int, hi: int) -> list[tuple[int, int]]:
    """Split ``clusters[lo:hi]`` into runs ``(index, length)`` of consecutive clusters."""
    out: list[tuple[int, int]] = []
    stack = [(lo, hi)]
    while stack:
        a, b = stack.pop()
        c = clusters[a]
        if clusters[b - 1] - c == b - a - 1 and clusters[a:b] == list(range(c, c + b - a)):
            if out and out[-1][0] + out[-1][1] == a and clusters[a - 1] + 1 == c:
                out[-1] = (out[-1][0], out[-1][1] + b - a)
            else:
                out.append((a, b - a))
        else:
            m = (a + b) // 2
            stack.append((m, b))
            stack.append((a, m))
    return out
