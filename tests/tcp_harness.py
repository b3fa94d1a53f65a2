"""Test harness: two sans-I/O TCP connections over a simulated wire on a manual clock.

The wire serialises every segment to bytes (checksum filled over an IPv4 pseudo-header),
then may drop, duplicate, delay (reorder) or corrupt it, all from one seeded RNG; the
receiver parses with checksum verification, so corruption is caught where a stack
would catch it. Time only moves when the loop jumps to the next delivery or timer.
"""

from __future__ import annotations

import hashlib
import heapq
import random
from dataclasses import dataclass, field

from miragekit.tcp import Config, Connection, State
from miragekit.wire.tcp import TCPParseError, TCPRepr

ADDR_A = bytes([10, 0, 0, 1])
ADDR_B = bytes([10, 0, 0, 2])


def state(conn: Connection) -> State:
    """The state, read through a call so that mypy does not narrow it across steps."""
    return conn.state


@dataclass
class WireModel:
    loss: float = 0.0
    duplicate: float = 0.0
    reorder: float = 0.0
    corrupt: float = 0.0
    delay: float = 0.005
    reorder_delay: float = 0.004
    rate: float = 100e6  # bytes per second on each direction
    serialize: bool = True
    tso_split: int = 0  # >0: cut larger data segments into this size, as a TSO device does


@dataclass
class Stats:
    sent: int = 0
    dropped: int = 0
    duplicated: int = 0
    reordered: int = 0
    corrupted: int = 0
    bad_checksum: int = 0
    delivered: int = 0
    extra: dict[str, int] = field(default_factory=dict)


class Harness:
    """Connections ``a`` (client) and ``b`` (server) joined by a ``WireModel``."""

    def __init__(
        self,
        cfg_a: Config,
        cfg_b: Config,
        model: WireModel,
        seed: int = 1,
        iss_a: int = 0xFFFF_F000,
        iss_b: int = 0xFFFF_FF00,
    ) -> None:
        self.rng = random.Random(seed)
        self.model = model
        self.now = 0.0
        self.stats = Stats()
        self.a = Connection.connect(cfg_a, 40000, 80, iss_a, self.now)
        self.cfg_b = cfg_b
        self.iss_b = iss_b
        self.b: Connection | None = None
        self._heap: list[tuple[float, int, int, bytes | TCPRepr]] = []
        self._n = 0
        self._link_free = [0.0, 0.0]
        self.blackhole = False

    def conns(self) -> list[Connection]:
        return [self.a] if self.b is None else [self.a, self.b]

    def _transmit(self, direction: int, seg: TCPRepr) -> None:
        m = self.model
        cut = m.tso_split
        if cut and len(seg.payload) > cut:
            payload = bytes(seg.payload)
            last = len(payload) - cut
            for off in range(0, len(payload), cut):
                flags = seg.flags if off >= last else seg.flags & ~0x09  # FIN/PSH on the last
                piece = seg._replace(
                    seq=(seg.seq + off) & 0xFFFFFFFF, flags=flags, payload=payload[off : off + cut]
                )
                self._transmit_one(direction, piece)
            return
        self._transmit_one(direction, seg)

    def _transmit_one(self, direction: int, seg: TCPRepr) -> None:
        m = self.model
        st = self.stats
        st.sent += 1
        if self.blackhole:
            st.dropped += 1
            return
        rng = self.rng
        if m.loss and rng.random() < m.loss:
            st.dropped += 1
            return
        src, dst = (ADDR_A, ADDR_B) if direction == 0 else (ADDR_B, ADDR_A)
        data: bytes | TCPRepr
        size = 40 + len(seg.payload)
        if m.serialize:
            raw = seg.to_bytes(src, dst)
            if m.corrupt and rng.random() < m.corrupt:
                st.corrupted += 1
                i = rng.randrange(len(raw))
                raw[i] ^= 1 << rng.randrange(8)
            data = bytes(raw)
        else:
            data = seg._replace(payload=bytes(seg.payload))
        depart = max(self.now, self._link_free[direction]) + size / m.rate
        self._link_free[direction] = depart
        when = depart + m.delay
        if m.reorder and rng.random() < m.reorder:
            st.reordered += 1
            when += rng.random() * m.reorder_delay
        copies = 2 if m.duplicate and rng.random() < m.duplicate else 1
        if copies == 2:
            st.duplicated += 1
        for c in range(copies):
            self._n += 1
            heapq.heappush(self._heap, (when + c * 0.0001, self._n, direction, data))

    def _deliver(self, direction: int, data: bytes | TCPRepr) -> None:
        src, dst = (ADDR_A, ADDR_B) if direction == 0 else (ADDR_B, ADDR_A)
        if isinstance(data, TCPRepr):
            seg = data
        else:
            try:
                seg = TCPRepr.parse(data, src, dst)
            except TCPParseError:
                self.stats.bad_checksum += 1
                return
        self.stats.delivered += 1
        if direction == 0:
            if self.b is None:
                if seg.flags & 0x02 and not seg.flags & 0x10:
                    self.b = Connection.accept(self.cfg_b, seg, self.iss_b, self.now)
                return
            self.b.handle_segment(self.now, seg)
        else:
            self.a.handle_segment(self.now, seg)

    def flush(self) -> None:
        for seg in self.a.segments_to_send(self.now):
            self._transmit(0, seg)
        if self.b is not None:
            for seg in self.b.segments_to_send(self.now):
                self._transmit(1, seg)

    def step(self) -> bool:
        """Advance to the next event; False when nothing is left to happen."""
        self.flush()
        t: float | None = self._heap[0][0] if self._heap else None
        for c in self.conns():
            p = c.poll_at()
            if p is not None and (t is None or p < t):
                t = p
        if t is None:
            return False
        if t > self.now:
            self.now = t
        heap = self._heap
        while heap and heap[0][0] <= self.now:
            _, _, direction, data = heapq.heappop(heap)
            self._deliver(direction, data)
        for c in self.conns():
            p = c.poll_at()
            if p is not None and p <= self.now:
                c.handle_timer(self.now)
        return True


def bulk_transfer(
    h: Harness, size: int, seed: int = 7, time_limit: float = 3600.0, chunk: int = 65536
) -> tuple[str, str, float]:
    """Send ``size`` seeded-random bytes a -> b, close; returns (sha sent, sha received, t)."""
    rng = random.Random(seed)
    src = rng.randbytes(size)
    sent_hash = hashlib.sha256(src).hexdigest()
    got = hashlib.sha256()
    view = memoryview(src)
    off = 0
    closed = False
    received = 0
    while h.now < time_limit:
        a = h.a
        if off < size and a.state in (State.ESTABLISHED, State.SYN_SENT):
            off += a.send(view[off : off + chunk])
        if off >= size and not closed and a.state == State.ESTABLISHED:
            a.close()
            closed = True
        b = h.b
        if b is not None:
            data = b.receive()
            if data:
                got.update(data)
                received += len(data)
            if b.at_eof and b.state == State.CLOSE_WAIT:
                b.close()
        if a.state == State.CLOSED and (b is None or b.state == State.CLOSED):
            break
        if a.state == State.TIME_WAIT and b is not None and b.state == State.CLOSED:
            break
        if not h.step():
            break
    return sent_hash, got.hexdigest(), h.now
