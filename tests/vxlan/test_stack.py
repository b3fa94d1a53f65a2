"""IPv4Stacks on VxlanNetifs over loopback UDP: UDP and ICMP across the overlay, and a
member that leaves and comes back (new MAC, new UDP port) is found again by learning."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Coroutine
from typing import Any, TypeVar

from tests.vxlan.overlay import Node

from miragekit.link import VxlanConfig

T = TypeVar("T")
VNI = 77


def run(coro: Coroutine[Any, Any, T], timeout: float = 30.0) -> T:
    async def bounded() -> T:
        return await asyncio.wait_for(coro, timeout)

    return asyncio.run(bounded())


def cfg(*remotes: tuple[str, int]) -> VxlanConfig:
    return VxlanConfig(VNI, local=("127.0.0.1", 0), remotes=remotes)


async def all_reach(nodes: list[Node], seq0: int) -> None:
    seq = seq0
    for a, b in itertools.permutations(nodes, 2):
        assert await a.udp_echo(b.ip), (a.ip, b.ip)
        seq += 1
        assert await a.ping(b.ip, seq), (a.ip, b.ip)


def test_three_stacks_reach_each_other_and_a_restart() -> None:
    async def main() -> None:
        nodes = [await Node.start(cfg(), f"10.42.0.{i}/24") for i in (1, 2, 3)]
        try:
            for a, b in itertools.permutations(nodes, 2):
                a.netif.add_remote(b.netif.local_addr)
            await all_reach(nodes, 0)
            for n in nodes:
                assert n.stack.internal_errors == 0
                st, ctr = n.netif.get_stats_counters(), n.netif.counters
                ethif = n.stack.ethif.counters
                # The gratuitous ARP at start found no remote yet (added afterwards).
                assert ctr.tx_no_remote == 1 and ctr.tx_oversize == ctr.rx_bad_vni == 0
                assert st.tx_pkts == ethif.tx_frames - 1 and st.rx_pkts == ethif.rx_frames
                assert len(n.netif.fdb()) == 2  # learned both others
            a, b, c = nodes
            old_mac, old_ep = c.netif.mac(), c.netif.local_addr
            await c.stop()
            assert not await a.udp_echo(c.ip, timeout=0.3)
            # c comes back with a new MAC on a new port, knowing a and b; a and b are not
            # told: c's gratuitous ARP (flooded to them) refreshes their ARP caches, and
            # their forwarding tables learn c's new endpoint.
            c = await Node.start(cfg(a.netif.local_addr, b.netif.local_addr), "10.42.0.3/24")
            nodes[2] = c
            assert c.netif.mac() != old_mac and c.netif.local_addr != old_ep
            await all_reach(nodes, 100)
            for n in (a, b):
                assert n.netif.fdb()[c.netif.mac()] == c.netif.local_addr
        finally:
            for n in nodes:
                await n.stop()

    run(main())
