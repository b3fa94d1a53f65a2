"""What one broadcast costs a simulated segment: CPU per port that an ARP request for an
unused address reaches, through the whole path (the link's draw and timing, the
switch's delivery, the host's port and observer, Ethernet and ARP).

Run: ``python bench/sim_broadcast.py [--hosts 500] [--requests 400] [--before REV]``.
``--hosts`` ``DirectStackV4``s on one ``VnetSwitch`` (1% loss on every link, each port
watched by a ``HostObserver`` as in ``sim.Network``) under ``sim.run``; one host sends
``--requests`` ARP requests for addresses nobody has, two ways:

* ``one instant``: all at the same virtual instant, so each port takes its frames one
  after the other (how the start-up of a cluster with no latency looks);
* ``spread``: one a millisecond, so each request visits every host in turn (its state
  out of the CPU's caches by then, as when hosts connect at different times).

Shown: CPU nanoseconds per port reached (requests times hosts - 1), and CPU
microseconds per simulated millisecond with the hosts idle (as long as ``spread``
sleeps, without sending), the best of
``--repeat`` runs, each in a fresh subprocess. ``--before REV`` runs the same on the
sources of git revision REV first, in the same run. Writes
bench/results/sim_broadcast.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
_SRC = sys.argv[sys.argv.index("--src") + 1] if "--src" in sys.argv[:-1] else str(ROOT / "src")
sys.path.insert(0, _SRC)

from revision_src import extract_src  # noqa: E402

from miragekit import sim  # noqa: E402
from miragekit.link import LinkParams, VnetSwitch  # noqa: E402
from miragekit.result import Ok  # noqa: E402
from miragekit.sim._observe import HostObserver  # noqa: E402
from miragekit.stack import DirectStackV4, Static  # noqa: E402
from miragekit.v1 import StackConfig  # noqa: E402

MODES = ("one instant", "spread")
UNUSED_NET = 0x0A_00_F0_00  # 10.0.240.0: no host of the segment has one of these


def measure(hosts: int, requests: int) -> dict[str, float]:
    """CPU ns per port reached, by mode, in this process."""

    async def main() -> dict[str, float]:
        sw = VnetSwitch(seed=1)
        stacks = []
        for h in range(hosts):
            vif = sw.add_interface(f"h{h}", link=LinkParams(loss=0.01))
            vif.set_tap(HostObserver(f"h{h}", lambda line: None, {}, None).seen)
            cidr = f"10.0.{h // 250}.{h % 250 + 1}/16"
            r = await DirectStackV4.connect(StackConfig(f"h{h}", None, vif, Static(cidr)))
            assert isinstance(r, Ok)
            stacks.append(r.value)
        await asyncio.sleep(1)  # the announcements are over
        arp = stacks[0].ipv4().arp
        before = sum(s.ipv4().arp.counters.rx_packets for s in stacks)
        out: dict[str, float] = {}
        c0 = time.process_time()
        for _ in range(requests):  # the hosts alone, as long as "spread" takes
            await asyncio.sleep(0.001)
        out["idle"] = (time.process_time() - c0) / requests * 1e6
        for mode in MODES:
            c0 = time.process_time()
            for i in range(requests):
                arp._request(UNUSED_NET | i)  # what a host sends to resolve an address
                if mode == "spread":
                    await asyncio.sleep(0.001)
            await asyncio.sleep(0.01)  # the last ones delivered
            out[mode] = (time.process_time() - c0) / (requests * (hosts - 1)) * 1e9
        got = sum(s.ipv4().arp.counters.rx_packets for s in stacks) - before
        # Every request reached about 99% of the ports (1% loss each way of the way).
        assert got > 0.95 * 2 * requests * (hosts - 1), got
        return out

    result: dict[str, float] = sim.run(main(), seed=1)
    return result


def run_in(src: str, a: argparse.Namespace) -> dict[str, float]:
    """The best of ``a.repeat`` runs on the sources ``src``, each in its own process."""
    best: dict[str, float] = {}
    for _ in range(a.repeat):
        args = [sys.executable, __file__, "--src", src, "--one"]
        args += [f"--hosts={a.hosts}", f"--requests={a.requests}"]
        out = subprocess.run(args, capture_output=True, text=True, check=True).stdout
        for mode, ns in json.loads(out).items():
            best[mode] = min(ns, best.get(mode, ns))
    return best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--hosts", type=int, default=500)
    ap.add_argument("--requests", type=int, default=400)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--before", metavar="REV", help="also on git revision REV's sources")
    ap.add_argument("--src", help=argparse.SUPPRESS)
    ap.add_argument("--one", action="store_true", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.one:
        print(json.dumps(measure(a.hosts, a.requests)))
        return
    load = [os.getloadavg()[0]]
    rows: list[dict[str, Any]] = []
    if a.before is not None:
        with tempfile.TemporaryDirectory() as tmp:
            rows.append({"how": f"at {a.before}", **run_in(extract_src(a.before, tmp), a)})
    rows.append({"how": "now", **run_in(_SRC, a)})
    load.append(os.getloadavg()[0])
    print(f"{a.hosts} hosts, {a.requests} ARP requests for unused addresses, best of {a.repeat}")
    print(f"load average {load[0]:.2f} before, {load[1]:.2f} after")
    print(f"{'how':<16} " + " ".join(f"{m + ' ns/port':>20}" for m in MODES) + " idle us/ms")
    for r in rows:
        print(
            f"{r['how']:<16} " + " ".join(f"{r[m]:>20.0f}" for m in MODES) + f" {r['idle']:>10.1f}"
        )
    out = ROOT / "bench" / "results"
    out.mkdir(exist_ok=True)
    result = {"args": vars(a), "load": load, "rows": rows}
    (out / "sim_broadcast.json").write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
