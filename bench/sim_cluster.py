"""A simulated cluster's speed: many hosts, many connections each echoing 100 bytes a
second over 1% loss, in virtual time.

Run: ``python bench/sim_cluster.py [--hosts 50] [--conns 980] [--seconds 60]
[--loss 0.01] [--before REV]``. Two ways of building the same workload run in the same
process, one after the other:

* ``by hand`` (the reference): ``DirectStackV4``s on a ``VnetSwitch`` under ``sim.run``,
  talking through ``miragekit.aio`` streams;
* ``sim.Network``: the same hosts as ``sim.Network`` hosts whose ``main`` is unmodified
  asyncio code (``asyncio.start_server``, ``asyncio.open_connection`` by host name).

``--before REV`` first runs the ``sim.Network`` way on the sources of git revision REV
(exported to a temporary directory, run in a subprocess with ``--src``), so a change
is measured against what it changed, in the same run; when REV is a directory with a
``src`` (e.g. the compiled tree ``tools/compiled_tree.py`` writes), on that ``src``.

Connection ``i`` goes from host ``i % hosts`` to host ``(i % hosts + 1 + i // hosts) %
hosts``, so every host serves and connects; each host opens its connections one after
the other, all hosts at once. Each connection sends 100 bytes every simulated second
and reads the echo. Shown: wall time, CPU time of the process
(less sensitive than wall time to other work on the machine), echoes (round trips
completed), echoes per wall second, how many times faster than real time the
simulation ran, and CPU microseconds per echo (the steadiest figure on a shared
machine); the load average before and after, and which Python ran it (see
``interpreter.py``: how the interpreter was built moves every figure). ``--no-hand`` leaves out the by-hand
reference (for long runs compared with ``--before``). ``--cpu-from T`` also shows the
``sim.Network`` rows' CPU per echo from simulated time T on (after the start-up).
``--vs-small-pages`` also runs the ``sim.Network`` way in a subprocess with the
simulator's 2 MB pages off (``MIRAGEKIT_HUGE_PAGES=0``, docs/simulation.md), first; each
row shows the process's peak resident size and how much of it was on 2 MB pages.
Writes bench/results/sim_cluster.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
# --src DIR: import miragekit from DIR (another revision's sources, see --before).
_SRC = sys.argv[sys.argv.index("--src") + 1] if "--src" in sys.argv[:-1] else str(ROOT / "src")
sys.path.insert(0, _SRC)

from interpreter import describe, line  # noqa: E402
from revision_src import extract_src  # noqa: E402

from miragekit import aio, sim  # noqa: E402
from miragekit.link import LinkParams, VnetSwitch  # noqa: E402
from miragekit.result import Ok  # noqa: E402
from miragekit.stack import DirectStackV4, Static  # noqa: E402
from miragekit.v1 import StackConfig  # noqa: E402

PORT = 7000
MSG = b"x" * 100


def pairs(hosts: int, conns: int) -> list[tuple[int, int]]:
    return [(i % hosts, (i % hosts + 1 + i // hosts) % hosts) for i in range(conns)]


async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    while data := await reader.read(65536):
        writer.write(data)
        await writer.drain()


def phases(conns: int) -> list[float]:
    """Connection ``i``'s offset within the second, drawn from a fixed seed.

    Why: connections that all start pinging together stay in step at first, so their
    frames and timers fall on the same virtual instants and share the loop's timers and
    iterations; loss and retransmissions spread them over minutes of virtual time (the
    instants the loop visits per second grew five-fold from 30 to 300 s), so CPU per echo
    grew with the run's length. Spread from the start, the workload is the same at
    every length."""
    rng = random.Random(1)
    return [rng.random() for _ in range(conns)]


async def pinger(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    until: float,
    n: list[int],
    phase: float = 0.0,
    times: list[float] | None = None,
) -> None:
    loop = asyncio.get_running_loop()
    await asyncio.sleep(phase)
    while loop.time() < until:
        writer.write(MSG)
        await reader.readexactly(len(MSG))
        n[0] += 1
        if times is not None:
            times.append(loop.time())
        await asyncio.sleep(1.0)


def targets_of(hosts: int, conns: int) -> dict[int, list[tuple[int, float]]]:
    """Each host's connections: the host it connects to and the connection's phase."""
    targets: dict[int, list[tuple[int, float]]] = {h: [] for h in range(hosts)}
    for (src, dst), phase in zip(pairs(hosts, conns), phases(conns), strict=True):
        targets[src].append((dst, phase))
    return targets


def by_hand(hosts: int, conns: int, seconds: float, loss: float) -> int:
    targets = targets_of(hosts, conns)

    async def main() -> int:
        sw = VnetSwitch()
        stacks = []
        for h in range(hosts):
            vif = sw.add_interface(f"h{h}", link=LinkParams(loss=loss))
            r = await DirectStackV4.connect(
                StackConfig(f"h{h}", None, vif, Static(f"10.0.{h // 250}.{h % 250 + 1}/16"))
            )
            assert isinstance(r, Ok)
            stacks.append(r.value)
            await aio.start_server(echo, r.value, PORT)
        n = [0]
        until = asyncio.get_running_loop().time() + seconds

        async def host(h: int) -> None:
            # As each sim.Network host does: open its connections one by one, then ping.
            streams = [
                (await aio.open_connection(stacks[h], f"10.0.{d // 250}.{d % 250 + 1}", PORT), p)
                for d, p in targets[h]
            ]
            await asyncio.gather(*(pinger(r, w, until, n, p) for (r, w), p in streams))

        await asyncio.gather(*(host(h) for h in range(hosts)))
        return n[0]

    result: int = sim.run(main(), seed=1)
    return result


def with_network(
    hosts: int,
    conns: int,
    seconds: float,
    loss: float,
    times: list[float] | None = None,
    cpu_marks: dict[float, float] | None = None,
    echo_marks: dict[float, int] | None = None,
) -> int:
    """The ``sim.Network`` way; echoes completed (their virtual times into ``times``;
    the process's CPU seconds at each virtual time of ``cpu_marks`` into it, and the
    echoes completed by each virtual time of ``echo_marks`` into that)."""
    net = sim.Network(seed=1, subnet="10.0.0.0/16", link=LinkParams(loss=loss))
    marks = cpu_marks if cpu_marks is not None else {}
    for t in marks:
        net.at(t, lambda t=t: marks.__setitem__(t, time.process_time()))
    n = [0]
    counts = echo_marks if echo_marks is not None else {}
    for t in counts:
        net.at(t, lambda t=t: counts.__setitem__(t, n[0]))
    failed = [0]
    targets = targets_of(hosts, conns)

    def host_main(h: int) -> Any:
        async def main() -> None:
            # The server stays open to the end: a peer still connecting (its SYNs lost
            # a few times over) must not be refused because this host is done.
            await asyncio.start_server(echo, None, PORT)
            loop = asyncio.get_running_loop()
            until = loop.time() + seconds
            streams = []
            for d, p in targets[h]:
                try:
                    streams.append((await asyncio.open_connection(f"h{d}", PORT), p))
                except OSError:
                    # At 1% loss each way, about one connection in 10**7 loses its SYN or
                    # SYN-ACK five times running and fails: TCP as it should be, counted.
                    failed[0] += 1
            await asyncio.gather(*(pinger(r, w, until, n, p, times) for (r, w), p in streams))

        return main

    for h in range(hosts):
        net.host(f"h{h}", main=host_main(h))
    report = net.run(until=seconds + 30)
    assert report.ok, report.errors()
    if failed[0]:
        print(f"sim.Network: {failed[0]} connect(s) failed (lost SYNs), not counted")
    return n[0]


def measure(name: str, fn: Any, a: argparse.Namespace) -> dict[str, Any]:
    t0, c0 = time.perf_counter(), time.process_time()
    if a.cpu_from is None or fn is not with_network:
        echoes = fn(a.hosts, a.conns, a.seconds, a.loss)
        window = {}
    else:
        # The echoes done by T are counted at T, not kept one by one: a list of every
        # echo's time grew by ~200 MB over ten simulated minutes at 500 hosts, in the
        # very heap being measured.
        marks = {a.cpu_from: 0.0, a.seconds: 0.0}
        done_by = {a.cpu_from: 0}
        echoes = fn(a.hosts, a.conns, a.seconds, a.loss, None, marks, done_by)
        steady = echoes - done_by[a.cpu_from]
        cpu_steady = marks[a.seconds] - marks[a.cpu_from]
        window = {
            "steady_echoes": steady,
            "steady_cpu_us_per_echo": round(cpu_steady / steady * 1e6),
        }
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    return {
        **window,
        **memory(),
        "how": name,
        "wall_s": round(wall, 2),
        "cpu_s": round(cpu, 2),
        "echoes": echoes,
        "echoes_per_wall_s": round(echoes / wall),
        "cpu_us_per_echo": round(cpu / echoes * 1e6),
        "x_real_time": round(a.seconds / wall, 2),
    }


def memory() -> dict[str, Any]:
    """The process's peak resident size, and how much of the heap the simulator put on
    2 MB pages (``None`` for a tree that does not)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    try:
        from miragekit.sim import _hugepages
    except ImportError:
        huge = None
    else:
        huge = round(_hugepages.last_run.collapsed / 2**20)
    return {"max_rss_mb": round(peak, 1), "huge_pages_mb": huge}


def before(rev: str | None, a: argparse.Namespace, no_huge: bool = False) -> dict[str, Any]:
    """The sim.Network row on revision ``rev``'s sources, or on directory ``rev``'s
    ``src`` when it has one (a tree from tools/compiled_tree.py), in a subprocess; on
    this tree's with ``rev`` None. ``no_huge``: with the simulator's 2 MB pages off."""
    tree = Path(rev or ".", "src")
    env = {**os.environ, "MIRAGEKIT_HUGE_PAGES": "0"} if no_huge else None
    with tempfile.TemporaryDirectory() as tmp:
        if rev is None:
            src = _SRC
        else:
            src = str(tree) if (tree / "miragekit").is_dir() else extract_src(rev, tmp)
        args = [sys.executable, __file__, "--src", src, "--network-only"]
        args += [f"--{k}={getattr(a, k)}" for k in ("hosts", "conns", "seconds", "loss")]
        if a.cpu_from is not None:
            args.append(f"--cpu-from={a.cpu_from}")
        out = subprocess.run(args, capture_output=True, text=True, check=True, env=env).stdout
    row: dict[str, Any] = json.loads(out)
    row["how"] = f"sim.Network at {rev}" if rev else "sim.Network, 4 KB pages"
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--hosts", type=int, default=50)
    ap.add_argument("--conns", type=int, default=980)
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--loss", type=float, default=0.01)
    ap.add_argument(
        "--before",
        metavar="REV",
        help="also sim.Network on git revision REV (or directory REV's src)",
    )
    ap.add_argument("--no-hand", action="store_true", help="skip the by-hand reference (long runs)")
    ap.add_argument(
        "--vs-small-pages",
        action="store_true",
        help="also sim.Network with the simulator's 2 MB pages off (MIRAGEKIT_HUGE_PAGES=0)",
    )
    ap.add_argument(
        "--cpu-from",
        type=float,
        metavar="T",
        help="also CPU per echo from simulated time T to the end (sim.Network rows only)",
    )
    ap.add_argument("--src", help=argparse.SUPPRESS)
    ap.add_argument("--network-only", action="store_true", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.network_only:  # one JSON row, for --before
        print(json.dumps(measure("sim.Network", with_network, a)))
        return
    load = [os.getloadavg()[0]]
    rows = [] if a.before is None else [before(a.before, a)]
    if a.vs_small_pages:
        rows.append(before(None, a, no_huge=True))
    for name, fn in (("by hand (reference)", by_hand), ("sim.Network", with_network)):
        if name != "by hand (reference)" or not a.no_hand:
            rows.append(measure(name, fn, a))
    load.append(os.getloadavg()[0])
    print(f"{a.hosts} hosts, {a.conns} connections, {a.seconds:g} simulated s, loss {a.loss}")
    print(f"load average {load[0]:.2f} before, {load[1]:.2f} after; {line()}")
    print(
        f"{'how':<26} {'wall s':>8} {'CPU s':>8} {'echoes':>8} {'echoes/s':>9} "
        f"{'x real time':>12} {'CPU us/echo':>12}"
    )
    for r in rows:
        print(
            f"{r['how']:<26} {r['wall_s']:>8} {r['cpu_s']:>8} {r['echoes']:>8} "
            f"{r['echoes_per_wall_s']:>9} {r['x_real_time']:>12} {r['cpu_us_per_echo']:>12}"
        )
    for r in rows:
        if "steady_echoes" in r:
            print(
                f"{r['how']}: from {a.cpu_from:g} s, {r['steady_echoes']} echoes, "
                f"{r['steady_cpu_us_per_echo']} CPU us per echo"
            )
    for r in rows:
        if "max_rss_mb" in r:
            print(
                f"{r['how']}: peak RSS {r['max_rss_mb']} MB, on 2 MB pages {r['huge_pages_mb']} MB"
            )
    out = ROOT / "bench" / "results"
    out.mkdir(exist_ok=True)
    result = {"args": vars(a), "load": load, "python": describe(), "rows": rows}
    (out / "sim_cluster.json").write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
