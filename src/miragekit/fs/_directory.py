"""A directory held in memory: its slots, where they live on disk, and a name index.

The index maps case-folded long names (and 8.3 aliases) to entries, so lookups and the
uniqueness checks of a create cost O(1) however large the directory grows.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ._dirent import DELETED, SLOT, Entry, exact_short, lookup_key


@dataclass(slots=True, eq=False)
class Directory:
    """A directory held in memory: its slots, where they live, and a name index."""

    cluster: int  # first cluster; 0 for the fixed FAT12/16 root
    clusters: list[int]
    fixed: tuple[int, int] | None  # (first sector, sectors) of a fixed root
    data: bytearray
    end: int
    deleted: int
    index: dict[str, Entry] = field(default_factory=dict)
    shorts: dict[bytes, Entry] = field(default_factory=dict)
    hints: dict[str, int] = field(default_factory=dict)
    first_free: int = 0  # no free slot lies before this one

    def add(self, e: Entry) -> None:
        self.index[lookup_key(e.name)] = e
        self.shorts[e.short] = e

    def remove(self, e: Entry) -> None:
        self.index.pop(lookup_key(e.name), None)
        if self.shorts.get(e.short) is e:
            del self.shorts[e.short]

    def find(self, name: str) -> Entry | None:
        e = self.index.get(lookup_key(name))
        if e is None:
            short = exact_short(name)
            if short is not None:
                e = self.shorts.get(short)
        return e

    @property
    def nslots(self) -> int:
        return len(self.data) // SLOT

    def free_run(self, k: int) -> int | None:
        """The first slot of ``k`` free slots in a row, or ``None``."""
        if self.end + k <= self.nslots and self.deleted == 0:
            return self.end
        run = 0
        data = self.data
        end = self.end
        seen = -1
        for i in range(self.first_free, self.nslots):
            if i >= end or data[i * SLOT] == DELETED:
                if seen < 0:
                    seen = i
                run += 1
                if run == k:
                    self.first_free = seen
                    return i - k + 1
            else:
                run = 0
        self.first_free = seen if seen >= 0 else self.nslots
        return None

    def freed(self, lo: int, hi: int) -> None:
        """Slots ``lo..hi-1`` were just marked deleted."""
        self.deleted += hi - lo
        self.first_free = min(self.first_free, lo)
