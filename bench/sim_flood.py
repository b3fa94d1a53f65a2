"""What an ARP broadcast costs at each host it is not for, on a simulated segment.

``python bench/sim_flood.py [--src DIR] [--hosts N] [--requests K]``: a ``sim.Network`` of
``N`` idle hosts (1% loss on each link, as ``bench/sim_cluster.py``) where host ``h0``
asks, one after another, for ``K`` addresses nobody has: each request is flooded to the
other ``N - 1`` hosts, which count it and pass it by (what a cluster's start-up is made
of). Run it under callgrind with ``K`` and with 0 requests: the difference over
``K * (N - 1)`` is the instructions a broadcast costs per host it reaches, the sender's
share (the switch's flood, the link draws) included. ``--src`` runs another tree than
this repository's ``src`` (a compiled one, ``tools/compiled_tree.py``). Prints the ARP
packets the other hosts counted.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import sys
from pathlib import Path

p = argparse.ArgumentParser()
p.add_argument("--src", default=str(Path(__file__).resolve().parent.parent / "src"))
p.add_argument("--hosts", type=int, default=100)
p.add_argument("--requests", type=int, default=200)
a = p.parse_args()
sys.path.insert(0, a.src)

from miragekit import sim  # noqa: E402
from miragekit.link import LinkParams  # noqa: E402

gc.disable()  # instructions of the frame path, not of the collector's schedule
net = sim.Network(seed=1, subnet="10.0.0.0/16", link=LinkParams(loss=0.01))
counted: list[int] = []


async def idle() -> None:
    await asyncio.sleep(3)


async def sender() -> None:
    await asyncio.sleep(1)  # the hosts' own announcements are over
    arp = net.stack("h0").ipv4().arp
    for i in range(a.requests):
        arp._request(0x0A00C800 + i)  # 10.0.200.x: nobody's
        await asyncio.sleep(0.0001)
    await asyncio.sleep(1)
    counted.append(
        sum(net.stack(f"h{h}").ipv4().arp.counters.rx_packets for h in range(1, a.hosts))
    )


net.host("h0", main=sender)
for h in range(1, a.hosts):
    net.host(f"h{h}", main=idle)
report = net.run(until=5)
assert report.ok, report.errors()
print({"hosts": a.hosts, "requests": a.requests, "arp_rx_packets": counted[0]})
