"""A server's TCP work per connection, phase by phase, in memory (sans-I/O).

One listening ``TCPEndpoint`` and a scripted peer play the connection of
``bench/tcp_conns.py`` (the peer opens, sends 1 byte, reads the echo, closes first): the
SYN, the handshake's ACK and the accept, the byte and its echo, the peer's ACK of it, its
FIN and the server's close, the ACK of the server's FIN. Each phase's CPU time
(``time.process_time``, best of ``--repeat`` rounds of ``--conns``) is the endpoint's and
its connection's alone: no parsing, no frames, no event loop, none of the peer's work.
That part of a connection's cost is the one the TCP core decides, and it stays put when
other work loads the machine.

The reference, in the same run: the same phases measured on another checkout's code
(``--before PATH``, the ``src`` directory of, say, the commit before a change), rounds
alternating between the two. Without it the table has one column.

Run: .venv/bin/python bench/tcp_conn_phases.py [--conns 10000] [--repeat 7] [--before PATH]
Prints a table and writes bench/results/tcp_conn_phases.json.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent

PHASES = ("SYN", "ACK, accept", "data, echo", "ACK of the echo", "FIN, close", "last ACK")

# Run in a child with PYTHONPATH set to the code measured: the phases of `n`
# connections, `rounds` times; prints the per-round totals per phase as JSON.
CHILD = r"""
import gc, json, sys, time
from miragekit.tcp import Config, TCPEndpoint
from miragekit.wire.tcp import ACK, FIN, PSH, SYN, TCPRepr

A, B = bytes([10, 0, 0, 1]), bytes([10, 0, 0, 2])
n, rounds = int(sys.argv[1]), int(sys.argv[2])
ep = TCPEndpoint(Config(), secret=b"0123456789abcdef")
ep.listen(7, 1024)
clock = time.process_time


def one_round(count, now, acc):
    for i in range(count):
        port = 10000 + i % 50000
        now += 0.0001
        syn = TCPRepr(port, 7, 1000, 0, SYN, 64240, b"", 1460, 7, True, (), (5, 0))
        t0 = clock()
        ep.handle_segment(now, B, A, syn)
        ((_, _, synack),) = ep.segments_to_send(now)
        t1 = clock()
        iss, tse = synack.seq, synack.timestamp[0]
        segs = [
            TCPRepr(port, 7, 1001, iss + 1, ACK, 502, b"", None, None, False, (), (6, tse)),
            TCPRepr(port, 7, 1001, iss + 1, ACK | PSH, 502, b"x", None, None, False, (), (6, tse)),
            TCPRepr(port, 7, 1002, iss + 2, ACK, 502, b"", None, None, False, (), (7, tse)),
            TCPRepr(port, 7, 1002, iss + 2, ACK | FIN, 502, b"", None, None, False, (), (7, tse)),
            TCPRepr(port, 7, 1003, iss + 3, ACK, 502, b"", None, None, False, (), (8, tse)),
        ]
        t2 = clock()
        ep.handle_segment(now, B, A, segs[0])
        ep.segments_to_send(now)
        conn = ep.accept(7)
        conn.take_events()
        t3 = clock()
        ep.handle_segment(now, B, A, segs[1])
        conn.take_events()
        conn.send(conn.receive())
        ep.wake(conn)
        ep.segments_to_send(now)
        t4 = clock()
        ep.handle_segment(now, B, A, segs[2])
        ep.segments_to_send(now)
        t5 = clock()
        ep.handle_segment(now, B, A, segs[3])
        conn.take_events()
        conn.receive()
        conn.close()
        ep.wake(conn)
        ep.segments_to_send(now)
        t6 = clock()
        ep.handle_segment(now, B, A, segs[4])
        ep.segments_to_send(now)
        t7 = clock()
        conn.take_events()
        for k, dt in enumerate((t1 - t0, t3 - t2, t4 - t3, t5 - t4, t6 - t5, t7 - t6)):
            acc[k] += dt
    assert not ep.connections, "every connection must be gone"
    return now


gc.disable()
now = one_round(2000, 1.0, [0.0] * 6)  # warm up
out = []
for _ in range(rounds):
    acc = [0.0] * 6
    now = one_round(n, now, acc)
    out.append(acc)
    print(json.dumps(acc), flush=True)
"""


def _measure(src: Path, conns: int) -> list[float]:
    env = {**os.environ, "PYTHONPATH": str(src)}
    p = subprocess.run(
        [sys.executable, "-c", CHILD, str(conns), "1"],
        env=env, capture_output=True, text=True, check=True, timeout=600,
    )  # fmt: skip
    return [float(x) for x in json.loads(p.stdout.splitlines()[-1])]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--conns", type=int, default=10000, help="connections per round")
    ap.add_argument("--repeat", type=int, default=7, help="rounds (the best counts)")
    ap.add_argument("--before", type=Path, help="another checkout's src directory")
    args = ap.parse_args()
    if args.conns < 1 or args.repeat < 1:
        sys.exit("need --conns >= 1 and --repeat >= 1")
    codes = {"this checkout": ROOT / "src"}
    if args.before is not None:
        if not (args.before / "miragekit" / "tcp").is_dir():
            sys.exit(f"--before: {args.before} holds no miragekit/tcp")
        codes = {"before": args.before.resolve(), **codes}
    load_start = os.getloadavg()
    best: dict[str, list[float]] = {}
    for _ in range(args.repeat):  # alternate: both see the same load
        for name, src in codes.items():
            r = _measure(src, args.conns)
            best[name] = (
                r if name not in best else [min(a, b) for a, b in zip(best[name], r, strict=True)]
            )
    per = {name: [v / args.conns * 1e6 for v in r] for name, r in best.items()}
    print(f"Server CPU per connection by phase, in memory, µs (best of {args.repeat} x "
          f"{args.conns} connections)")  # fmt: skip
    print(f"{'phase':18}" + "".join(f"{name:>16}" for name in per))
    for k, phase in enumerate(PHASES):
        print(f"{phase:18}" + "".join(f"{r[k]:16.2f}" for r in per.values()))
    print(f"{'total':18}" + "".join(f"{sum(r):16.2f}" for r in per.values()))
    load = {"start": load_start, "end": os.getloadavg()}
    print(f"load average (1, 5, 15 min) at start {load['start']}, at end {load['end']}")
    out = ROOT / "bench" / "results" / "tcp_conn_phases.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    rows: dict[str, Any] = {
        name: dict(zip(PHASES, r, strict=True)) | {"total": sum(r)} for name, r in per.items()
    }
    out.write_text(json.dumps({"us_per_connection": rows, "loadavg": load,
                               "args": {k: str(v) for k, v in vars(args).items()}},
                              indent=2) + "\n")  # fmt: skip
    print(f"wrote {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
