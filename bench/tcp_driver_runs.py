"""How often the TCP driver runs, who asked for each run, and how many runs found
nothing to do: counted, not timed (other load on the machine does not move it).

Run: ``python bench/tcp_driver_runs.py [--hosts 50] [--conns 980] [--seconds 30]
[--rounds 300] [--before DIR]``. Two workloads, each in a process of its own:

* ``sim``: bench/sim_cluster.py's ``sim.Network`` echo cluster (1% loss), per echo;
* ``reqresp``: bench/tcp_reqresp_steps.py's in-process request/response over a
  TAP stand-in (16 connections), per request: the difference between a run of
  ``--rounds`` rounds and one of 100 rounds, so set-up and warm-up cancel out.

The driver (``miragekit.net._tcp.TCP``) is counted by wrapping its methods in the
worker process; nothing in the tree changes. A run is one ``TCP._flush``; its cause is
whoever scheduled it: frame input (``_frame_input``, ``_receive_packed``, a held
ACK), the device's end of batch running that flush at once (``batch``), a flow's
``send_now`` (``write``), ``_poke`` (the application called into a connection),
``_schedule_flush`` (connect, ICMP, a timer due now), the re-flush after a run that
woke tasks (``served``), the driver's timer (``timer``). An idle run sent no frame,
delivered no event and accepted no connection. Timer fires are split by whether any
connection's timer was really due (else its deadline had moved later or it was gone).
``--before DIR``: the same counts for ``DIR/src`` beside this tree's.
Writes bench/results/tcp_driver_runs.json.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


def install() -> collections.Counter[str]:
    """Wrap the driver's methods; the counter they fill."""
    from miragekit.net import _tcp
    from miragekit.tcp import _conn

    tcp_cls: Any = _tcp.TCP
    flow_cls: Any = _tcp.TCPFlow
    c: collections.Counter[str] = collections.Counter()
    causes: dict[Any, str] = {}
    direct: list[str] = []  # the cause of a _flush called directly (batch, timer)
    run: list[list[int]] = []  # per _flush in progress: [frames, events]

    def scheduling(cls: Any, name: str, label: str) -> None:
        orig = getattr(cls, name)

        def wrapped(self: Any, *a: Any, **k: Any) -> Any:
            tcp = self if cls is tcp_cls else self._tcp
            before = tcp._flush_handle
            r = orig(self, *a, **k)
            after = tcp._flush_handle
            if after is not None and after is not before and after not in causes:
                causes[after] = label
            return r

        setattr(cls, name, wrapped)

    for name, label in (
        ("_frame_input", "frame input"),
        ("_receive_packed", "frame input"),
        ("_hold_ack", "frame input"),
        ("_poke", "_poke"),
        ("_schedule_flush", "_schedule_flush"),
    ):
        scheduling(tcp_cls, name, label)
    scheduling(flow_cls, "send_now", "write")

    flush = tcp_cls._flush

    def _flush(self: Any, own: bool = False) -> None:
        h = self._flush_handle
        if direct:
            cause = direct.pop()
            if cause == "batch":
                cause = "batch (" + causes.pop(h, "?") + ")"
            elif h is not None:  # the timer's run does what the pending one would
                c["timer runs with a flush still pending"] += 1
        else:
            cause = causes.pop(h, "?")
        # Flows told of data since the last run began (TCP._told): this run serves them.
        run.append([0, len(self._told)])
        flush(self, own)
        frames, events = run.pop()
        # Scheduled during the run (the driver's own handle may be queued again: its
        # cause was taken above).
        if self._flush_handle is not None:
            causes.setdefault(self._flush_handle, "served")
        c["runs"] += 1
        c["run: " + cause] += 1
        if not frames and not events:
            c["idle runs"] += 1
            c["idle: " + cause] += 1
        c["frames sent"] += frames

    tcp_cls._flush = _flush

    def direct_caller(name: str, label: str) -> None:
        orig = getattr(tcp_cls, name)

        def wrapped(self: Any) -> None:
            pending = self._flush_handle is not None
            n = len(direct)
            if name == "_on_timer":
                c["timer fires"] += 1
                before = c["conn timers"]
                direct.append(label)
                orig(self)
                if c["conn timers"] == before:
                    c["timer fires with no connection due"] += 1
            elif pending:
                direct.append(label)
                orig(self)
            else:
                orig(self)
            if len(direct) > n:  # no run came of it (a timer with nothing due)
                direct.pop()

        setattr(tcp_cls, name, wrapped)

    direct_caller("_batch_done", "batch")
    direct_caller("_on_timer", "timer")

    send = tcp_cls._send

    def _send(self: Any, segs: list[Any], now: float) -> None:
        if run:
            run[-1][0] += len(segs)
        send(self, segs, now)

    tcp_cls._send = _send
    send_writers = tcp_cls._send_writers

    def _send_writers(self: Any, now: float) -> None:
        n = self.sends_fast
        send_writers(self, now)
        if run:
            run[-1][0] += self.sends_fast - n

    tcp_cls._send_writers = _send_writers
    on_event = flow_cls._on_event

    def _on_event(self: Any, ev: Any) -> None:
        if run:
            run[-1][1] += 1
        on_event(self, ev)

    flow_cls._on_event = _on_event
    start = tcp_cls._start

    def _start(self: Any, conn: Any, cb: Any) -> None:
        if run:
            run[-1][1] += 1
        start(self, conn, cb)

    tcp_cls._start = _start
    handle_timer = _conn.Connection.handle_timer

    def conn_timer(self: Any, now: float) -> Any:
        c["conn timers"] += 1
        return handle_timer(self, now)

    _conn.Connection.handle_timer = conn_timer  # type: ignore[method-assign]
    return c


def sim_counts(a: argparse.Namespace) -> dict[str, Any]:
    sys.path.insert(0, str(ROOT / "bench"))
    c = install()
    import sim_cluster

    echoes = sim_cluster.with_network(a.hosts, a.conns, a.seconds, 0.01)
    return {"unit": "echo", "units": echoes, "counts": dict(c)}


def reqresp_counts(a: argparse.Namespace) -> dict[str, Any]:
    sys.path.insert(0, str(ROOT / "bench"))
    c = install()
    import tcp_reqresp_steps

    from miragekit import aio

    got = []
    for rounds in (100, a.rounds):
        c.clear()
        aio.run(tcp_reqresp_steps.serve(16, rounds, "plain"))
        got.append(dict(c))
    units = 16 * (a.rounds - 100)
    keys = set(got[0]) | set(got[1])
    return {"unit": "request", "units": units,
            "counts": {k: got[1].get(k, 0) - got[0].get(k, 0) for k in keys}}  # fmt: skip


def measure(src: Path, what: str, a: argparse.Namespace) -> dict[str, Any]:
    env = {**os.environ, "PYTHONPATH": str(src)}
    cmd = [sys.executable, __file__, "--worker", what, "--hosts", str(a.hosts), "--conns",
           str(a.conns), "--seconds", str(a.seconds), "--rounds", str(a.rounds)]  # fmt: skip
    p = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True)
    res: dict[str, Any] = json.loads(p.stdout.strip().splitlines()[-1])
    return res


ORDER = ["runs", "idle runs", "frames sent", "timer fires", "timer fires with no connection due",
         "timer runs with a flush still pending", "conn timers"]  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--hosts", type=int, default=50)
    ap.add_argument("--conns", type=int, default=980)
    ap.add_argument("--seconds", type=float, default=30.0)
    ap.add_argument("--rounds", type=int, default=300)
    ap.add_argument("--before", metavar="DIR", help="also the stack of DIR/src")
    ap.add_argument("--worker", choices=["sim", "reqresp"], help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.worker:
        fn = sim_counts if a.worker == "sim" else reqresp_counts
        print(json.dumps(fn(a)))
        return
    trees = {"this tree": ROOT / "src"}
    if a.before:
        if not (Path(a.before) / "src" / "miragekit").is_dir():
            sys.exit(f"--before {a.before}: no src/miragekit there")
        trees["--before"] = Path(a.before).resolve() / "src"
    load0 = os.getloadavg()
    result: dict[str, Any] = {}
    for what in ("sim", "reqresp"):
        rows = {name: measure(src, what, a) for name, src in trees.items()}
        result[what] = rows
        first = next(iter(rows.values()))
        print(f"\n{what}: per {first['unit']} ({first['units']} {first['unit']}s, this tree)")
        keys = [k for k in ORDER if any(k in r["counts"] for r in rows.values())]
        keys += sorted({k for r in rows.values() for k in r["counts"]} - set(keys))
        keys = [k for k in keys if any(r["counts"].get(k) for r in rows.values())]
        print(f"{'':45} " + " ".join(f"{n:>10}" for n in rows))
        for k in keys:
            vals = " ".join(f"{r['counts'].get(k, 0) / r['units']:10.3f}" for r in rows.values())
            print(f"{k:45} {vals}")
    load1 = os.getloadavg()
    print(f"\nload average at start {load0}, at end {load1}")
    out = ROOT / "bench" / "results" / "tcp_driver_runs.json"
    out.parent.mkdir(exist_ok=True)
    result["args"] = vars(a)
    result["load"] = [load0, load1]
    out.write_text(json.dumps(result, indent=1))
    print(f"wrote {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
