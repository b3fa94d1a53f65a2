"""Micro-benchmark of the sans-I/O TCP core: bulk transfer between two Connections in memory.

No loss, no I/O: the segments one connection emits are handed straight to the other
(optionally serialized to bytes with the checksum and parsed back, as a stack would).
Times are CPU seconds of this process (time.process_time), so that other load on the
machine does not distort the comparison.
The reference beside it is the cost floor: the same bytes pushed through a plain
``bytearray`` ring buffer in Python, in the same segment-sized pieces.

Run: .venv/bin/python bench/tcp_core.py [--mb N]
Writes bench/results/tcp_core.json.
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import json
import os
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

from miragekit.macaddr import MacAddr
from miragekit.net import TCP
from miragekit.net._ipstack import IPv4Stack
from miragekit.result import Ok
from miragekit.tcp import Config, Connection, State
from miragekit.wire.tcp import TCPRepr

A = bytes([10, 0, 0, 1])
B = bytes([10, 0, 0, 2])


def ring_floor(data: bytes, mss: int, ring_size: int = 256 * 1024) -> tuple[float, int]:
    """Copy ``data`` through a bytearray ring in ``mss`` pieces; returns (seconds, pieces)."""
    ring = bytearray(ring_size)
    head = tail = 0  # absolute counters
    view = memoryview(data)
    total = len(data)
    off = 0
    out = bytearray()
    pieces = 0
    t0 = time.process_time()
    while off < total or tail < head:
        # Writer: fill the free space.
        while off < total and head - tail < ring_size:
            n = min(ring_size - (head - tail), total - off, 65536)
            pos = head % ring_size
            first = min(n, ring_size - pos)
            ring[pos : pos + first] = view[off : off + first]
            if first < n:
                ring[0 : n - first] = view[off + first : off + n]
            head += n
            off += n
        # Reader: take it out in segment-sized pieces, into a receive buffer.
        while tail < head:
            n = min(mss, head - tail)
            pos = tail % ring_size
            if pos + n <= ring_size:
                out += ring[pos : pos + n]
            else:
                out += ring[pos:] + ring[: n - (ring_size - pos)]
            tail += n
            pieces += 1
        if len(out) >= 1 << 20:
            out.clear()
    return time.process_time() - t0, pieces


def tcp_transfer(data: bytes, cfg: Config, serialize: bool) -> tuple[float, int]:
    """Bulk ``data`` from a to b; returns (seconds, segments processed by both sides)."""
    now = 0.0
    a = Connection.connect(cfg, 40000, 80, 0xFFFF_0000, now)
    syn = a.segments_to_send(now)[0]
    b = Connection.accept(cfg, syn, 0x7FFF_0000, now)
    view = memoryview(data)
    total = len(data)
    off = 0
    received = 0
    segments = 0
    closed = False
    t0 = time.process_time()
    pending_ab: list[TCPRepr] = []
    pending_ba: list[TCPRepr] = b.segments_to_send(now)
    while True:
        now += 0.00001
        if off < total:
            off += a.send(view[off : off + 262144])
        elif not closed and a.state == State.ESTABLISHED:
            a.close()
            closed = True
        for seg in pending_ba:
            if serialize:
                seg = TCPRepr.parse(seg.to_bytes(B, A), B, A)
            a.handle_segment(now, seg)
        segments += len(pending_ba)
        pending_ab = a.segments_to_send(now)
        for seg in pending_ab:
            if serialize:
                seg = TCPRepr.parse(seg.to_bytes(A, B), A, B)
            b.handle_segment(now, seg)
        segments += len(pending_ab)
        got = b.receive()
        received += len(got)
        if b.at_eof and b.state == State.CLOSE_WAIT:
            b.close()
        pending_ba = b.segments_to_send(now)
        if not pending_ab and not pending_ba:
            t = min((x for x in (a.poll_at(), b.poll_at()) if x is not None), default=None)
            if t is None:
                break
            now = max(now, t)
            a.handle_timer(now)
            b.handle_timer(now)
            pending_ba = b.segments_to_send(now)
            if b.state == State.CLOSED and a.state in (State.TIME_WAIT, State.CLOSED):
                break
    elapsed = time.process_time() - t0
    if received != total:
        raise SystemExit(f"transfer incomplete: {received} of {total}")
    return elapsed, segments


class MemLink:
    """A FrameLink joined to a peer in memory: frames are copied (as a device would) and
    delivered in one batch per event-loop turn, as a TAP reader delivers what it read."""

    mtu = 1500

    def __init__(self, mac: str) -> None:
        self._mac = MacAddr(mac)
        self.peer: MemLink | None = None
        self._receiver: Callable[[memoryview], None] | None = None
        self._pending: list[bytes] = []
        self._scheduled = False

    def mac(self) -> MacAddr:
        return self._mac

    def set_receiver(self, fn: Callable[[memoryview], None] | None) -> None:
        self._receiver = fn

    def send(self, frame: Any) -> None:
        peer = self.peer
        assert peer is not None
        peer._pending.append(bytes(frame))
        if not peer._scheduled:
            peer._scheduled = True
            asyncio.get_running_loop().call_soon(peer._deliver)

    def sendv(self, bufs: Sequence[Any]) -> None:
        self.send(b"".join(bufs))

    def _deliver(self) -> None:
        self._scheduled = False
        frames, self._pending = self._pending, []
        fn = self._receiver
        if fn is not None:
            for f in frames:
                fn(memoryview(f))


async def _driver_transfer(data: bytes) -> tuple[float, int]:
    la, lb = MemLink("02:00:00:00:00:01"), MemLink("02:00:00:00:00:02")
    la.peer, lb.peer = lb, la
    sa = await IPv4Stack.connect(la, cidr="10.0.0.1/24")  # type: ignore[arg-type]
    sb = await IPv4Stack.connect(lb, cidr="10.0.0.2/24")  # type: ignore[arg-type]
    ta, tb = TCP(sa.ipv4), TCP(sb.ipv4)
    done: asyncio.Future[int] = asyncio.get_running_loop().create_future()

    async def sink(flow: Any) -> None:
        n = 0
        while isinstance(r := await flow.read(), Ok):
            n += len(r.value)
        done.set_result(n)

    tb.listen(5001, sink)
    r = await ta.create_connection((ipaddress.IPv4Address("10.0.0.2"), 5001))
    assert isinstance(r, Ok), r
    flow = r.value
    view = memoryview(data)
    t0 = time.process_time()
    for off in range(0, len(data), 1 << 20):
        assert await flow.write(view[off : off + (1 << 20)]) == Ok(None)
    await flow.close()
    n = await done
    elapsed = time.process_time() - t0
    assert n == len(data), (n, len(data))
    segs = sa.ipv4.counters.tx_packets + sb.ipv4.counters.tx_packets
    await ta.disconnect()
    await tb.disconnect()
    return elapsed, segs


def driver_transfer(data: bytes) -> tuple[float, int]:
    """Bulk ``data`` through two full stacks (TCP driver, IPv4, Ethernet, checksums) over
    an in-memory link; returns (CPU seconds, frames sent by both)."""
    return asyncio.run(_driver_transfer(data))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--mb", type=int, default=64, help="megabytes to move per run")
    ap.add_argument("--repeat", type=int, default=3, help="runs per case; the best is kept")
    ap.add_argument("--driver-only", action="store_true", help="only the driver-path row")
    args = ap.parse_args()
    size = args.mb * 1_000_000
    data = os.urandom(size)
    rows = []
    if not args.driver_only:
        for mss in (1460, 65495 - 40):
            buf = max(256 * 1024, 4 * mss)
            cfg = Config(mss=mss, send_buffer=buf * 4, recv_buffer=buf * 4)
            floor_s, pieces = min(ring_floor(data, mss - 12) for _ in range(args.repeat))
            rows.append(
                {
                    "case": f"bytearray ring floor, {mss - 12} B pieces",
                    "mss": mss,
                    "MB_per_s": size / floor_s / 1e6,
                    "segments_per_s": pieces / floor_s,
                    "seconds": floor_s,
                }
            )
            for serialize in (False, True):
                secs, segs = min(tcp_transfer(data, cfg, serialize) for _ in range(args.repeat))
                rows.append(
                    {
                        "case": "TCP a->b"
                        + (" + wire bytes/checksum" if serialize else " (Repr objects)"),
                        "mss": mss,
                        "MB_per_s": size / secs / 1e6,
                        "segments_per_s": segs / secs,
                        "seconds": secs,
                    }
                )
        # MSS 1460 with TCP segmentation offload: 64 KB bursts that a device would cut.
        cfg = Config(mss=1460, tso_max=65000, send_buffer=1 << 21, recv_buffer=1 << 21)
        secs, segs = min(tcp_transfer(data, cfg, False) for _ in range(args.repeat))
        rows.append(
            {
                "case": "TCP a->b, MSS 1460 + TSO/GRO 64 KB bursts",
                "mss": 1460,
                "MB_per_s": size / secs / 1e6,
                "segments_per_s": segs / secs,
                "seconds": secs,
            }
        )
    secs, segs = min(driver_transfer(data) for _ in range(args.repeat))
    n_data = size / 1448
    rows.append(
        {
            "case": "TCP a->b, full driver path, in-memory link",
            "mss": 1460,
            "MB_per_s": size / secs / 1e6,
            "segments_per_s": segs / secs,
            "us_per_data_segment": secs / n_data * 1e6,
            "seconds": secs,
        }
    )
    print(f"{'case':48} {'MSS':>6} {'MB/s':>9} {'segments/s':>11}")
    for r in rows:
        print(f"{r['case']:48} {r['mss']:>6} {r['MB_per_s']:>9.1f} {r['segments_per_s']:>11.0f}")
    print(f"driver path: {rows[-1]['us_per_data_segment']:.2f} CPU us per data segment (both ends)")
    out = Path(__file__).resolve().parent / "results" / "tcp_core.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(
        json.dumps({"megabytes": args.mb, "python": sys.version, "rows": rows}, indent=2)
    )
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
