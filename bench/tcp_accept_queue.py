"""What it costs the endpoint to drop a connection that waits in a long accept queue.

A server whose application accepts slowly holds established connections in its
listener's accept queue; each that the peer resets before it is accepted leaves the
table and the queue. Two endpoints in one process (sans-I/O, segments handed across as
parsed): ``--queued`` connections established and left in the queue, then ``--resets``
of them reset by the client (in rounds, when there are more resets than waiting), timed on the server's side (CPU time of the
``handle_segment`` + ``segments_to_send`` that takes each RST and removes the
connection). The reference, in the same run: the same with only 16 waiting. With a
removal that scans the queues, the long queue's row grows with its length; found by
key, both rows are the same.

Run: .venv/bin/python bench/tcp_accept_queue.py [--queued 20000] [--resets 2000]
Prints a table and writes bench/results/tcp_accept_queue.json.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

from tcp_time_wait import _pump  # noqa: E402  (the same in-memory wire)

from miragekit.tcp import Config, Connection, TCPEndpoint  # noqa: E402

SERVER = bytes([10, 0, 0, 2])


def _resets_with_queue(queued: int, resets: int) -> dict[str, Any]:
    """``resets`` resets, each of a connection among ``queued`` waiting (in rounds of at
    most ``queued``)."""
    cpu = 0.0
    done = 0
    while done < resets:
        n = min(queued, resets - done)
        cpu += _one_round(queued, n)
        done += n
    return {
        "queued": queued,
        "resets": resets,
        "cpu_seconds": cpu,
        "us_per_reset": cpu / resets * 1e6,
    }


def _one_round(queued: int, resets: int) -> float:
    cfg = Config()
    client = TCPEndpoint(cfg, secret=b"c" * 16)
    server = TCPEndpoint(cfg, secret=b"s" * 16)
    n = queued
    eps = {SERVER: server} | {bytes([10, 0, 1, k]): client for k in range(n // 10000 + 1)}
    server.listen(80, backlog=n + 1)
    conns: list[Connection] = []
    for i in range(n):
        conns.append(client.connect(0.0, bytes([10, 0, 1, i // 10000]), SERVER, 80))
        if len(conns) % 256 == 0:
            _pump(eps, 0.0)
    _pump(eps, 0.0)
    assert server.backlog_len(80) == n
    # The newest are reset: a scan of the queue from its front would pass every other.
    victims = conns[-resets:]
    cpu = 0.0
    for c in victims:
        c.abort()
        client.wake(c)
        ((src, dst, rst),) = client.segments_to_send(0.0)
        t0 = time.process_time()
        server.handle_segment(0.0, src, dst, rst)
        server.segments_to_send(0.0)
        cpu += time.process_time() - t0
    assert server.backlog_len(80) == queued - resets
    return cpu


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--queued", type=int, default=20000, help="connections waiting")
    ap.add_argument("--resets", type=int, default=2000, help="of them reset by the peer")
    args = ap.parse_args()
    if not 0 < args.resets <= args.queued or args.queued < 16:
        sys.exit("need 0 < --resets <= --queued and --queued >= 16")
    rows = {
        "reference: 16 waiting": _resets_with_queue(16, args.resets),
        f"{args.queued} waiting": _resets_with_queue(args.queued, args.resets),
    }
    print("A reset connection leaving the accept queue (server CPU per reset)")
    print(f"{'accept queue':24} {'resets':>7} {'us per reset':>13}")
    for name, r in rows.items():
        print(f"{name:24} {r['resets']:7d} {r['us_per_reset']:13.2f}")
    load = os.getloadavg()
    print(f"load average (1, 5, 15 min) {load}")
    out = ROOT / "bench" / "results" / "tcp_accept_queue.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"rows": rows, "loadavg": load, "args": vars(args)}, indent=2) + "\n")
    print(f"wrote {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
