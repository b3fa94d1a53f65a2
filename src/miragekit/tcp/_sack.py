"""The sender's SACK scoreboard and loss-recovery helpers (RFC 2018, RFC 6675).

Sequence numbers here are the connection's unbounded ints, so plain comparisons hold.
The scoreboard is a sorted list of disjoint ``[left, right)`` ranges the peer reported;
everything below ``snd_una`` is dropped as the cumulative ACK advances. Holes between
ranges are where loss is suspected; ``pipe`` and ``next_seg`` follow RFC 6675 at range
granularity (a hole is lost as a whole once enough is SACKed above it).
"""

from __future__ import annotations

from bisect import bisect_right
from typing import Final

__all__ = ["DUP_THRESH", "MAX_BLOCKS", "RetransmitLedger", "Scoreboard"]

DUP_THRESH: Final = 3
# A peer cannot make the scoreboard (and the linear scans over it) grow without bound.
MAX_BLOCKS: Final = 64
_NEVER: Final = float("-inf")  # one float for every connection's scoreboard, not two parses each


class Scoreboard:
    """SACKed ranges, retransmissions, and when data was first sent (for RACK).

    ``rack_xmit`` is RACK.xmit_ts (RFC 8985): the latest first-send time of data the
    peer has received; ``rack_deadline`` is now - RTT - reordering window. A hole first
    sent before ``rack_xmit`` and no later than ``rack_deadline`` is lost, as is one with
    DupThresh SACKed above it (RFC 6675).
    """

    __slots__ = (
        "blocks",
        "dupthresh",
        "rack_deadline",
        "rack_xmit",
        "rxt",
        "sent_end",
        "sent_time",
    )

    def __init__(self) -> None:
        self.blocks: list[list[int]] = []
        # [start, end, snd_max when retransmitted, when retransmitted]
        self.rxt: list[tuple[int, int, int, float]] = []
        # Data first sent, in order: bytes below sent_end[i] (and above sent_end[i-1])
        # left at sent_time[i]; one entry per send call.
        self.sent_end: list[int] = []
        self.sent_time: list[float] = []
        self.rack_xmit = _NEVER
        self.rack_deadline = _NEVER
        # DupThresh counting too, until reordering is seen (then RACK's clock alone).
        self.dupthresh = True

    def __bool__(self) -> bool:
        return bool(self.blocks)

    def clear(self) -> None:
        self.blocks.clear()
        self.rxt.clear()

    def record_sent(self, end: int, now: float) -> None:
        """New data up to ``end`` left at ``now``."""
        if self.sent_time and self.sent_time[-1] == now:
            self.sent_end[-1] = end
        else:
            self.sent_end.append(end)
            self.sent_time.append(now)

    def trim_sent(self, snd_una: int) -> None:
        """Forget the send times of data ``snd_una`` acknowledges."""
        if self.sent_end and self.sent_end[-1] <= snd_una:
            self.sent_end.clear()  # all of it: the usual ACK of a request/response exchange
            self.sent_time.clear()
            return
        i = bisect_right(self.sent_end, snd_una)
        if i:
            del self.sent_end[:i]
            del self.sent_time[:i]

    def sent_at(self, seq: int) -> float:
        """When the byte ``seq`` was first sent (-inf if unknown: before the record)."""
        i = bisect_right(self.sent_end, seq)
        if i < len(self.sent_time):
            return self.sent_time[i]
        return self.sent_time[-1] if self.sent_time else float("-inf")

    def rack_update(self, deadline: float) -> None:
        """After an ACK: RACK.xmit_ts from the highest byte SACKed, and the deadline
        (a microsecond late, so that a timer armed for the deadline finds it past)."""
        deadline += 1e-6
        if self.blocks:
            t = self.sent_at(self.blocks[-1][1] - 1)
            if t > self.rack_xmit:
                self.rack_xmit = t
        self.rack_deadline = deadline

    def rack_lost(self, start: int) -> bool:
        # A hole lies below the highest SACKed byte: sent no later than it, in the same
        # send call at the latest (RACK's tie-break by sequence number).
        if not self.sent_time:
            return False  # no send times (RACK needs them): DupThresh alone
        t = self.sent_at(start)
        return t <= self.rack_xmit and t <= self.rack_deadline

    def rack_pending(self, snd_una: int) -> float | None:
        """The first-send time of the earliest hole RACK will call lost once its time
        comes (sent before delivered data, not yet past the deadline); else None."""
        start = snd_una
        for left, right in self.blocks:
            if left > start and not any(s <= start < e for s, e, _m, _t in self.rxt):
                # (a hole already resent is lost already: detect_lost_retransmits
                # watches its retransmission)
                t = self.sent_at(start)
                if t <= self.rack_xmit and t > self.rack_deadline:
                    return t
            start = right
        return None

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
        if self.rxt:
            self.rxt = [r for r in self.rxt if r[1] > snd_una]
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

    def any_lost(self, snd_una: int, mss: int) -> bool:
        """Whether some hole is lost, by DupThresh or by RACK's clock."""
        return any(lost for _a, _b, lost in self._holes(snd_una, mss))

    def _holes(self, snd_una: int, mss: int) -> list[tuple[int, int, bool]]:
        """Holes below the highest SACKed byte, each with whether it is lost."""
        out: list[tuple[int, int, bool]] = []
        above_count = len(self.blocks)
        above_bytes = self.sacked_bytes()
        start = snd_una
        for left, right in self.blocks:
            if left > start:
                lost = (
                    self.dupthresh
                    and (above_count >= DUP_THRESH or above_bytes > (DUP_THRESH - 1) * mss)
                ) or self.rack_lost(start)
                out.append((start, left, lost))
            above_count -= 1
            above_bytes -= right - left
            start = right
        return out

    def record_rxt(self, start: int, end: int, mark: int, now: float = 0.0) -> None:
        """Remember that [start, end) was retransmitted at ``now`` while SND.MAX was
        ``mark``."""
        rxt = self.rxt
        if rxt:
            s0, e0, m0, t0 = rxt[-1]
            if e0 == start and m0 == mark and t0 == now:
                # A hole resent segment by segment in one go: one range, so that the
                # bound below never forgets a retransmission of the same burst (which
                # NextSeg would then choose again, and again).
                rxt[-1] = (s0, end, mark, now)
                return
        if len(rxt) >= MAX_BLOCKS:
            del rxt[0]
        rxt.append((start, end, mark, now))

    def _sacked_within(self, a: int, b: int) -> int:
        n = 0
        for left, right in self.blocks:
            if right <= a:
                continue
            if left >= b:
                break
            n += min(b, right) - max(a, left)
        return n

    def detect_lost_retransmits(self, deadline: float) -> tuple[int, float | None]:
        """Forget retransmissions that were lost, so they count as lost again.

        RACK (RFC 8985 6.2) for a retransmission: it is lost when the peer has data sent
        after it (SACKed beyond the SND.MAX of its sending) while it is still missing,
        and it left no later than ``deadline`` (now - RACK.rtt - reordering window).
        Returns how many were lost, and the send time of the earliest one that will be
        once its time comes (for the RACK timer), or None.
        """
        if not self.rxt or not self.blocks:
            return 0, None
        highest = self.blocks[-1][1]
        keep = []
        lost = 0
        pending: float | None = None
        for r in self.rxt:
            start, end, mark, t = r
            if highest > mark and self._sacked_within(start, end) < end - start:
                if t <= deadline:
                    lost += 1
                    continue
                if pending is None or t < pending:
                    pending = t
            keep.append(r)
        self.rxt = keep
        return lost, pending

    def _retransmitted(self, a: int, b: int) -> int:
        """Bytes of [a, b) retransmitted and not SACKed since."""
        n = 0
        for start, end, _mark, _t in self.rxt:
            lo = max(a, start)
            hi = min(b, end)
            if hi > lo:
                n += hi - lo - self._sacked_within(lo, hi)
        return n

    def pipe(self, snd_una: int, snd_max: int, mss: int) -> int:
        """RFC 6675 pipe: bytes believed in flight."""
        if not self.blocks:
            return snd_max - snd_una + self._retransmitted(snd_una, snd_max)
        pipe = 0
        for a, b, lost in self._holes(snd_una, mss):
            if not lost:
                pipe += b - a
            pipe += self._retransmitted(a, b)
        tail = self.blocks[-1][1]
        if snd_max > tail:
            pipe += snd_max - tail
        return pipe

    def next_seg(self, snd_una: int, mss: int, rule3: bool = False) -> tuple[int, int] | None:
        """RFC 6675 NextSeg rule 1: the first lost range not retransmitted (or whose
        retransmission was found lost); with ``rule3``, rule 3: the first such range in
        any hole below the highest SACKed byte, lost or not (when no new data can go)."""
        for a, b, lost in self._holes(snd_una, mss):
            if not lost and not rule3:
                continue
            s = a
            moved = True
            while moved:
                moved = False
                for start, end, _mark, _t in self.rxt:
                    if start <= s < end:
                        s = end
                        moved = True
            # A later retransmitted range may start inside [s, s + mss).
            if s < b:
                stop = min(b, s + mss)
                for start, _end, _mark, _t in self.rxt:
                    if s < start < stop:
                        stop = start
                return s, stop
        return None


class RetransmitLedger:
    """What one loss episode retransmitted, to tell whether every retransmission was
    needless (RFC 3708 detection by D-SACK, RFC 2883 4.2, or RFC 3522 by timestamps).

    The receiver reports each duplicate it got in a D-SACK block; when duplicates cover
    every byte retransmitted since the episode began, the originals had all arrived
    (reordering or a delay, not loss), and the congestion response can be undone.
    Ranges are cut, not counted, so a range D-SACKed twice (a network duplicate) counts
    once, and a D-SACK of data never retransmitted counts for nothing. ``stamp`` is the
    TSval of the episode's first retransmission (None: none yet, or no timestamps).
    """

    __slots__ = ("open", "ranges", "stamp")

    def __init__(self) -> None:
        self.ranges: list[list[int]] = []
        self.open = False
        self.stamp: int | None = None

    def start(self) -> None:
        self.ranges.clear()
        self.open = True
        self.stamp = None

    def close(self) -> None:
        self.ranges.clear()
        self.open = False

    def retransmitted(self, start: int, end: int, stamp: int | None = None) -> None:
        if not self.open or end <= start:
            return
        if len(self.ranges) >= MAX_BLOCKS:
            self.close()  # too much to follow: this episode cannot be undone
            return
        if not self.ranges and self.stamp is None:
            self.stamp = stamp
        self.ranges.append([start, end])

    def within(self, left: int, right: int) -> bool:
        """Whether every byte retransmitted and not yet D-SACKed lies in [left, right)."""
        return bool(self.ranges) and all(left <= s and e <= right for s, e in self.ranges)

    def dsack(self, left: int, right: int) -> bool:
        """Cut a duplicate out of the retransmitted ranges; True when this empties them
        (the episode's retransmissions were all spurious)."""
        if not self.open or not self.ranges:
            return False
        cut = False
        keep: list[list[int]] = []
        for start, end in self.ranges:
            if right <= start or left >= end:
                keep.append([start, end])
                continue
            cut = True
            if start < left:
                keep.append([start, left])
            if right < end:
                keep.append([right, end])
        self.ranges = keep
        return cut and not keep
