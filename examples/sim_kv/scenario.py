"""sim_kv's test scenario: the store of ``kv.py`` on a simulated cluster, with faults.

Six ``miragekit.sim.Network`` hosts run ``kv.py`` unchanged: ``n1`` leads, ``n2`` and
``n3`` follow, ``c1`` and ``c2`` write and read back for 25 s, and ``mon`` fails over to
``n2`` when ``n1`` stops answering. Every link loses 1% of frames. The seed also draws the
faults: ``n1`` is cut off from its followers for a while (clients and monitor still reach
it), and ``n1`` crashes at some moment. At t=40 s each client reads every write it saw
acknowledged from the new leader; one that is not there is a lost write.

Run from the repository's root::

    python -m examples.sim_kv.scenario --seeds 10              # search seeds 0-9
    python -m examples.sim_kv.scenario --unsafe-ack --seed 3   # replay one, with events
    python -m examples.sim_kv.scenario --seed 3 --capture kv.pcap   # and record it

The exit status is 1 when an acknowledged write was lost.
"""

from __future__ import annotations

import argparse
import functools
import random
import sys
from dataclasses import dataclass
from typing import Any, cast

from miragekit import sim
from miragekit.link import LinkParams

from . import kv

NODES = ["n1", "n2", "n3"]
CLIENTS = ["c1", "c2"]
WRITE_UNTIL = 25.0
CHECK_AT = 40.0
UNTIL = 120.0


@dataclass(frozen=True)
class Faults:
    """What a seed does to the cluster (virtual seconds)."""

    partition_at: float
    heal_at: float
    crash_at: float

    def __str__(self) -> str:
        return (
            f"n1 cut off {self.partition_at:.1f}-{self.heal_at:.1f} s, "
            f"crashed at {self.crash_at:.1f} s"
        )


def faults(seed: int) -> Faults:
    rng = random.Random(seed)
    start = rng.uniform(2.0, 12.0)
    return Faults(start, start + rng.uniform(0.5, 6.0), rng.uniform(4.0, 20.0))


@dataclass(frozen=True)
class Outcome:
    seed: int
    faults: Faults
    acked: int
    read_back: int
    lost: list[str]
    failover_at: float
    report: sim.Report


LINK = LinkParams(latency=0.001, loss=0.01)


def plan(net: sim.Network, *, unsafe_ack: bool = False) -> Faults:
    """Put the cluster on ``net`` (its seed draws the faults) and schedule the faults."""
    f = faults(net.seed)
    for name in NODES:
        node = kv.Node(name, "n1", NODES[1:], unsafe_ack=unsafe_ack)
        net.host(name, main=node.serve, link=LINK)
    for name in CLIENTS:
        client = functools.partial(kv.client, name, NODES, WRITE_UNTIL, CHECK_AT)
        net.host(name, main=client, link=LINK)
    net.host("mon", main=functools.partial(kv.monitor, "n1", "n2", ["n3"]), link=LINK)
    net.partition(["n2", "n3"], at=f.partition_at)  # the others stay together
    net.heal(at=f.heal_at)
    net.crash("n1", at=f.crash_at)
    return f


def outcome(report: sim.Report) -> Outcome:
    """What the clients saw in a run of :func:`plan`'s cluster."""
    ended = [report[h] for h in [*CLIENTS, "mon"]]
    if any(h.state != "returned" for h in ended):
        raise RuntimeError(f"seed {report.seed}: the scenario did not finish: {ended}")
    results = [cast(dict[str, Any], report[c].value) for c in CLIENTS]
    return Outcome(
        report.seed,
        faults(report.seed),
        sum(r["acked"] for r in results),
        sum(r["read_back"] for r in results),
        [k for r in results for k in r["lost"]],
        cast(float, report["mon"].value),
        report,
    )


def run(seed: int, *, unsafe_ack: bool = False, capture: str | None = None) -> Outcome:
    """One run of the scenario; the same seed gives the same outcome (and the same
    ``capture``, a pcap of every frame, if asked for)."""
    net = sim.Network(seed=seed)
    plan(net, unsafe_ack=unsafe_ack)
    if capture is not None:
        net.capture(capture)
    return outcome(net.run(until=UNTIL))


def summary(o: Outcome) -> str:
    lost = f"{len(o.lost)} LOST ({', '.join(o.lost[:4])}{', ...' if len(o.lost) > 4 else ''})"
    return (
        f"seed {o.seed:>3}: {o.faults}, n2 leads from {o.failover_at:.1f} s; "
        f"{o.acked} writes acknowledged, {lost if o.lost else 'none lost'}"
    )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m examples.sim_kv.scenario", description=__doc__.split("\n\n")[0]
    )
    ap.add_argument("--unsafe-ack", action="store_true", help="acknowledge before replicating")
    which = ap.add_mutually_exclusive_group()
    which.add_argument("--seed", type=int, help="run this seed and print its events")
    which.add_argument("--seeds", type=int, default=10, help="run seeds 0 to N-1 (10)")
    ap.add_argument("--capture", metavar="FILE", help="with --seed: a pcap of the segment")
    a = ap.parse_args(argv)
    flag = " --unsafe-ack" if a.unsafe_ack else ""
    if a.capture is not None and a.seed is None:
        ap.error("--capture needs --seed")
    if a.seed is not None:
        o = run(a.seed, unsafe_ack=a.unsafe_ack, capture=a.capture)
        for t, text in o.report.events:
            print(f"{t:8.3f}  {text}")
        print(summary(o))
        return 1 if o.lost else 0
    if a.seeds < 1:
        ap.error(f"--seeds must be at least 1, got {a.seeds}")
    bad = []
    for seed in range(a.seeds):
        o = run(seed, unsafe_ack=a.unsafe_ack)
        print(summary(o))
        if o.lost:
            bad.append(seed)
    if bad:
        print(f"acknowledged writes lost with seeds {', '.join(map(str, bad))}; replay one:")
        print(f"python -m examples.sim_kv.scenario{flag} --seed {bad[0]}")
        return 1
    print(f"no acknowledged write lost in {a.seeds} seeds")
    return 0


if __name__ == "__main__":
    sys.exit(main())
