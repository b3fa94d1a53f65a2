"""ARP in a simulated cluster's steady state: no broadcasts after start-up.

Why it matters: every broadcast is carried to every port of the segment, so at 500 hosts
one request costs 499 deliveries. Hosts that talk to their peers every second resolve
each peer once; after that the entries are kept alive by unicast checks to the MAC they
know (RFC 1122 2.3.2.1, as Linux re-probes a stale entry), long past the entries'
lifetime (60 s) and their confirmation time (30 s).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from miragekit import sim
from miragekit.link import LinkParams

HOSTS = 5
SECONDS = 200.0


def _cluster(loss: float) -> sim.Report:
    net = sim.Network(seed=3, subnet="10.9.0.0/24", link=LinkParams(loss=loss))

    async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while data := await reader.read(100):
            writer.write(data)

    def host_main(h: int) -> Callable[[], Awaitable[None]]:
        async def main() -> None:
            await asyncio.start_server(echo, None, 7)
            loop = asyncio.get_running_loop()
            await asyncio.sleep(0.01 * h)
            peers = [f"h{(h + k) % HOSTS}" for k in (1, 2)]
            streams = [await asyncio.open_connection(p, 7) for p in peers]
            while loop.time() < SECONDS:
                for r, w in streams:
                    w.write(b"x" * 50)
                    await r.readexactly(50)
                await asyncio.sleep(1.0)

        return main

    for h in range(HOSTS):
        net.host(f"h{h}", main=host_main(h))
    report = net.run(until=SECONDS + 10)
    assert report.ok, report.errors()
    return report


def test_peers_talked_to_every_second_are_resolved_once_and_checked_by_unicast() -> None:
    """Each host asks the whole segment once per peer it talks to (plus its own
    announcement), however long the run; the entries live on through unicast checks,
    none of which goes unanswered on a clean link."""
    report = _cluster(loss=0.0)
    for name, outcome in report.hosts.items():
        arp = outcome.counters.stack["arp"]
        assert arp["requests_sent"] == 2, (name, arp)  # its two peers, at start-up
        assert arp["gratuitous_sent"] == 1, (name, arp)
        # Its four entries (two it asked for, two that asked it) checked by unicast
        # every 30 s or so, by it or (its check answered) by the peer.
        assert arp["unicast_probes"] >= SECONDS // 30, (name, arp)
        assert arp["stale_dropped"] == 0 and arp["resolution_failed"] == 0, (name, arp)
