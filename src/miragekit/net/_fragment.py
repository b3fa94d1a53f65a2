"""Fragment reassembly for IPv4 (RFC 791, RFC 815 ideas) and IPv6 (RFC 8200 4.5),
sans-I/O, with hard limits.

Limits bound what a peer can make us hold: datagrams in progress, bytes buffered in
total, fragments per datagram, and time (``timeout``). Overlapping fragments drop the
whole datagram (as RFC 5722 does for IPv6; no legitimate sender produces them).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from ..wire import checksum

Key = tuple[bytes, bytes, int, int]
"""(source, destination, protocol, identification); IPv6 has no protocol in it (0)."""
Finish = Callable[[bytearray, int], None]
"""Fix up a reassembled packet's header in place, given the header's length."""


def finish_ipv4(out: bytearray, hl: int) -> None:
    """Total length, no fragment fields, the header checksum."""
    out[2:4] = len(out).to_bytes(2, "big")
    out[6:8] = b"\0\0"
    out[10:12] = b"\0\0"
    out[10:12] = checksum(memoryview(out)[:hl]).to_bytes(2, "big")


def finish_ipv6(out: bytearray, hl: int) -> None:
    """The payload length (the header passed in already names the next header)."""
    out[4:6] = (len(out) - 40).to_bytes(2, "big")


@dataclass(slots=True)
class ReassemblyConfig:
    max_datagrams: int = 64
    max_bytes: int = 4 * 1024 * 1024
    max_fragments: int = 64
    timeout: float = 30.0


@dataclass(slots=True)
class ReassemblyCounters:
    fragments: int = 0
    reassembled: int = 0
    timed_out: int = 0
    dropped_bad: int = 0  # inconsistent lengths or offsets
    dropped_overlap: int = 0
    dropped_limit: int = 0  # a limit evicted or refused a datagram


@dataclass(slots=True)
class _Datagram:
    deadline: float
    header: bytes | None = None  # the IP header of the offset-0 fragment
    total: int | None = None  # payload length, known from the last fragment
    size: int = 0
    parts: dict[int, bytes] = field(default_factory=dict)


class Reassembler:
    def __init__(
        self,
        *,
        wake: Callable[[float], None] = lambda when: None,
        config: ReassemblyConfig | None = None,
        max_len: int = 65535,
        finish: Finish = finish_ipv4,
        on_timeout: Callable[[Key, bytes, bytes], None] | None = None,
    ) -> None:
        """``max_len``: the largest reassembled packet, header included (65535 for IPv4,
        65575 for IPv6 whose payload length leaves out the fixed header); ``finish``
        fixes the header up; ``on_timeout(key, header, first)`` hears of a datagram that
        timed out after its first fragment came (for ICMP time exceeded)."""
        self.config = config or ReassemblyConfig()
        self._max_len = max_len
        self._finish = finish
        self._on_timeout = on_timeout
        self.counters = ReassemblyCounters()
        self._wake = wake
        self._datagrams: dict[Key, _Datagram] = {}
        self._bytes = 0

    @property
    def bytes_held(self) -> int:
        return self._bytes

    def __len__(self) -> int:
        return len(self._datagrams)

    def _drop(self, key: Key) -> None:
        d = self._datagrams.pop(key)
        self._bytes -= d.size

    def add(
        self,
        key: Key,
        header: memoryview,
        offset: int,
        more: bool,
        data: memoryview,
        now: float,
    ) -> bytearray | None:
        """Add one fragment; return the whole packet (header + payload) once complete."""
        c, cfg = self.counters, self.config
        c.fragments += 1
        n = len(data)
        end = offset + n
        if (more and (n == 0 or n % 8)) or end > self._max_len - len(header):
            c.dropped_bad += 1
            if key in self._datagrams:
                self._drop(key)
            return None
        d = self._datagrams.get(key)
        if d is None:
            while len(self._datagrams) >= cfg.max_datagrams:
                self._drop(next(iter(self._datagrams)))
                c.dropped_limit += 1
            d = self._datagrams[key] = _Datagram(deadline=now + cfg.timeout)
            self._wake(d.deadline)
        if offset in d.parts and len(d.parts[offset]) == n:
            return None  # an exact duplicate
        for o, p in d.parts.items():
            if o < end and offset < o + len(p):
                c.dropped_overlap += 1
                self._drop(key)
                return None
        if (d.total is not None and (end > d.total or (not more and end != d.total))) or (
            not more and any(o + len(p) > end for o, p in d.parts.items())
        ):
            c.dropped_bad += 1
            self._drop(key)
            return None
        if len(d.parts) >= cfg.max_fragments:
            c.dropped_limit += 1
            self._drop(key)
            return None
        while self._bytes + n > cfg.max_bytes and self._datagrams:
            victim = next(iter(self._datagrams))
            self._drop(victim)
            c.dropped_limit += 1
            if victim == key:
                return None
        d.parts[offset] = bytes(data)
        d.size += n
        self._bytes += n
        if not more:
            d.total = end
        if offset == 0:
            d.header = bytes(header)
        if d.header is None or d.total is None or d.size != d.total:
            return None
        # Complete: no overlaps and sizes add up, so the parts tile [0, total).
        self._drop(key)
        hl = len(d.header)
        out = bytearray(hl + d.total)
        out[:hl] = d.header
        for o, p in d.parts.items():
            out[hl + o : hl + o + len(p)] = p
        self._finish(out, hl)
        c.reassembled += 1
        return out

    def poll_at(self) -> float | None:
        if not self._datagrams:
            return None
        return min(d.deadline for d in self._datagrams.values())

    def handle_timer(self, now: float) -> None:
        for key in [k for k, d in self._datagrams.items() if d.deadline <= now]:
            d = self._datagrams[key]
            self._drop(key)
            self.counters.timed_out += 1
            if self._on_timeout is not None and d.header is not None:
                self._on_timeout(key, d.header, d.parts[0])
