"""What one echo of the simulated cluster costs the loop: callbacks, timers, frames.

Run: ``python bench/sim_echo_events.py [--hosts 50] [--conns 1000] [--from 10]
[--to 20]``. The ``bench/sim_cluster.py`` workload (``sim.Network``, 1% loss) runs once;
between the virtual times ``--from`` and ``--to`` (after the connections are open) every
loop callback is counted by what it calls, when it is scheduled and when it runs, and
divided by the echoes completed in that window. Also shown: frames sent per echo, TCP
timer fires that found no connection's timer due (they only re-arm the timer for a
later deadline), and TCP driver runs that sent nothing and woke nothing. Counting wraps
every callback, so this measures events, not speed (see ``sim_cluster.py``). Writes
bench/results/sim_echo_events.json.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
_SRC = sys.argv[sys.argv.index("--src") + 1] if "--src" in sys.argv[:-1] else str(ROOT / "src")
sys.path.insert(0, _SRC)
sys.path.insert(0, str(ROOT / "bench"))

import sim_cluster  # noqa: E402

from miragekit.link import VnetIf  # noqa: E402
from miragekit.net._tcp import TCP  # noqa: E402
from miragekit.sim import SimLoop  # noqa: E402


def _name(cb: Any) -> str:
    f = getattr(cb, "__func__", cb)
    name = getattr(f, "__qualname__", None) or type(cb).__name__
    owner = getattr(cb, "__self__", None)
    if name == "_Direction.drain" and owner is not None:  # which way the frame goes
        name += " (" + owner.deliver.__qualname__.split(".")[-1] + ")"
    return str(name)


def count(hosts: int, conns: int, t0: float, t1: float, loss: float = 0.01) -> dict[str, Any]:
    """Events per echo between virtual times ``t0`` and ``t1``."""
    scheduled: Counter[str] = Counter()
    ran: Counter[str] = Counter()
    other: Counter[str] = Counter()
    loops: list[SimLoop] = []

    def inside() -> bool:
        return t0 <= loops[0].time() < t1

    def wrap(kind: str, loop: SimLoop, cb: Any) -> Any:
        if not loops:
            loops.append(loop)
        name = f"{kind} {_name(cb)}"
        if inside():
            scheduled[name] += 1

        def run(*args: Any) -> Any:
            if inside():
                ran[name] += 1
            return cb(*args)

        return run

    call_at, call_soon = SimLoop.call_at, SimLoop.call_soon

    def counted_call_at(self: SimLoop, when: float, cb: Any, *a: Any, context: Any = None) -> Any:
        return call_at(self, when, wrap("call_at", self, cb), *a, context=context)

    def counted_call_soon(self: SimLoop, cb: Any, *a: Any, context: Any = None) -> Any:
        return call_soon(self, wrap("call_soon", self, cb), *a, context=context)

    on_timer, flush, send = TCP._on_timer, TCP._flush, VnetIf._send
    busy = [0]

    def counted_on_timer(self: TCP[Any]) -> None:
        before = busy[0]
        on_timer(self)
        if inside() and busy[0] == before:
            other["TCP timer fires that found nothing due"] += 1

    def counted_flush(self: TCP[Any], own: bool = False) -> None:
        busy[0] += 1
        before = sum(scheduled.values()) + other["frames sent"]
        flush(self, own)
        if inside() and sum(scheduled.values()) + other["frames sent"] == before:
            other["TCP runs that sent nothing and woke nothing"] += 1

    def counted_send(self: VnetIf, data: Any) -> None:
        if inside():
            other["frames sent"] += 1
        send(self, data)

    for fn, real in ((counted_on_timer, on_timer), (counted_flush, flush), (counted_send, send)):
        fn.__qualname__ = real.__qualname__  # listed under the name of what they count

    patches: list[tuple[Any, str, Any]] = [
        (SimLoop, "call_at", counted_call_at),
        (SimLoop, "call_soon", counted_call_soon),
        (TCP, "_on_timer", counted_on_timer),
        (TCP, "_flush", counted_flush),
        (VnetIf, "_send", counted_send),
    ]
    saved = [(obj, attr, getattr(obj, attr)) for obj, attr, _ in patches]
    times: list[float] = []
    try:
        for obj, attr, new in patches:
            setattr(obj, attr, new)
        sim_cluster.with_network(hosts, conns, t1 + 1, loss, times)
    finally:
        for obj, attr, old in saved:
            setattr(obj, attr, old)
    echoes = sum(1 for t in times if t0 <= t < t1)
    names = sorted(set(scheduled) | set(ran), key=lambda n: (-ran[n], n))
    return {
        "echoes": echoes,
        "callbacks": {n: [scheduled[n] / echoes, ran[n] / echoes] for n in names},
        "ran": sum(ran.values()) / echoes,
        "other": {k: v / echoes for k, v in sorted(other.items())},
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--hosts", type=int, default=50)
    ap.add_argument("--conns", type=int, default=1000)
    ap.add_argument("--from", dest="t0", type=float, default=10.0)
    ap.add_argument("--to", dest="t1", type=float, default=20.0)
    ap.add_argument("--src", help=argparse.SUPPRESS)
    a = ap.parse_args()
    r = count(a.hosts, a.conns, a.t0, a.t1)
    print(f"{a.hosts} hosts, {a.conns} connections, {r['echoes']} echoes in [{a.t0:g}, {a.t1:g})")
    print(f"{'per echo':<58} {'scheduled':>9} {'ran':>7}")
    for n, (s, ran) in r["callbacks"].items():
        print(f"{n:<58} {s:>9.3f} {ran:>7.3f}")
    print(f"{'callbacks run':<58} {'':>9} {r['ran']:>7.3f}")
    for k, v in r["other"].items():
        print(f"{k:<58} {'':>9} {v:>7.3f}")
    out = ROOT / "bench" / "results"
    out.mkdir(exist_ok=True)
    (out / "sim_echo_events.json").write_text(json.dumps({"args": vars(a), **r}, indent=2))


if __name__ == "__main__":
    main()
