"""What a connection in TIME-WAIT costs the server that closed first, in memory.

Two endpoints in one process (sans-I/O, segments handed across as parsed by a stack):
``--conns`` connections, each opened, 1 byte each way, closed by the server first, so
the server holds every one in TIME-WAIT (2 MSL). Measured on the server's side: live
objects the garbage collector tracks per TIME-WAIT (``gc.get_objects``), traced bytes
per TIME-WAIT (tracemalloc), and the time of one full ``gc.collect()`` with all of them
held, the pass whose pauses showed as HTTP p99 latency. The reference, in the same run:
the same endpoint keeping each whole ``Connection`` in TIME_WAIT, as it did before
``tcp/_timewait.py`` (``Connection.time_wait_record`` made to decline).

Run: .venv/bin/python bench/tcp_time_wait.py [--conns 20000]
Prints a table and writes bench/results/tcp_time_wait.json.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import sys
import time
import tracemalloc
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

from miragekit.tcp import Config, Connection, TCPEndpoint  # noqa: E402

B = bytes([10, 0, 0, 2])  # the server; clients are 10.0.1.x, 10,000 connections each


def _pump(eps: dict[bytes, TCPEndpoint], now: float) -> None:
    while True:
        moved = False
        for ep in eps.values():
            for src, dst, seg in ep.segments_to_send(now):
                eps[dst].handle_segment(now, src, dst, seg)
                moved = True
        if not moved:
            return


def _server_closes_first(n: int) -> dict[str, Any]:
    """Open and close ``n`` connections, the server first; measure what it holds."""
    cfg = Config()
    client = TCPEndpoint(cfg, secret=b"c" * 16)
    server = TCPEndpoint(cfg, secret=b"s" * 16)
    eps = {B: server} | {bytes([10, 0, 1, k]): client for k in range(n // 10000 + 1)}
    server.listen(80, backlog=1024)
    gc.collect()
    objects0 = len(gc.get_objects())
    tracemalloc.start()
    bytes0 = tracemalloc.get_traced_memory()[0]
    now = 0.0
    i = 0
    while i < n:
        a = bytes([10, 0, 1, i // 10000])
        conns = [client.connect(now, a, B, 80) for _ in range(min(256, n - i, 10000 - i % 10000))]
        _pump(eps, now)
        for c in conns:
            c.send(b"x")
            client.wake(c)
        _pump(eps, now)
        while (s := server.accept(80)) is not None:
            s.receive()
            s.send(b"y")
            s.close()
            server.wake(s)
        _pump(eps, now)
        for c in conns:
            c.receive()
            c.close()
            client.wake(c)
        _pump(eps, now)
        for ep in eps.values():
            for c in ep.take_active():
                c.take_events()
        now += 0.001
        i += len(conns)
    del conns, s, c
    for ep in eps.values():
        ep.handle_timer(now)  # as a driver does: drops the timer entries of the gone
        ep.poll_at()
    gc.collect()
    held = len(server.connections) + len(server.time_wait)
    assert held == n and not client.connections, (held, len(client.connections))
    traced = tracemalloc.get_traced_memory()[0] - bytes0
    tracemalloc.stop()
    gc.collect()
    objects = len(gc.get_objects()) - objects0
    best = float("inf")
    for _ in range(5):
        t0 = time.perf_counter()
        gc.collect()
        best = min(best, time.perf_counter() - t0)
    return {
        "time_wait": held,
        "gc_objects_per_time_wait": objects / n,
        "traced_bytes_per_time_wait": traced / n,
        "full_collect_ms": best * 1000,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--conns", type=int, default=20000, help="connections left in TIME-WAIT")
    args = ap.parse_args()
    if args.conns < 1:
        sys.exit("--conns: must be at least 1")
    load = os.getloadavg()
    rows: dict[str, dict[str, Any]] = {}
    keep = Connection.time_wait_record
    try:
        Connection.time_wait_record = lambda self: None  # type: ignore[method-assign]
        rows["reference: whole Connection in TIME_WAIT"] = _server_closes_first(args.conns)
    finally:
        Connection.time_wait_record = keep  # type: ignore[method-assign]
    rows["TimeWait record (tcp/_timewait.py)"] = _server_closes_first(args.conns)
    print(f"Server closing first: {args.conns} connections held in TIME-WAIT")
    print(f"{'server keeps':42} {'gc objects each':>16} {'bytes each':>11} {'full gc ms':>11}")
    for name, r in rows.items():
        print(f"{name:42} {r['gc_objects_per_time_wait']:16.1f} "
              f"{r['traced_bytes_per_time_wait']:11.0f} {r['full_collect_ms']:11.1f}")  # fmt: skip
    print(f"load average (1, 5, 15 min) at start {load}")
    out = ROOT / "bench" / "results" / "tcp_time_wait.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"rows": rows, "loadavg": load, "args": vars(args)}, indent=2) + "\n")
    print(f"wrote {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
