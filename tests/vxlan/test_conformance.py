"""The NETWORK conformance suite (miragekit.testing.check_network_pair) on VxlanNetif:
two devices on loopback, each the other's static remote, so frames flood to the other
until it is learned. The fast path (send/sendv/set_receiver/mtu) is checked too."""

from __future__ import annotations

import asyncio

from miragekit.link import VxlanConfig, VxlanNetif
from miragekit.result import Ok
from miragekit.testing import NETWORK_CHECKS, check_network_pair
from miragekit.v1 import Network

VNI = 77


async def vxlan_netifs() -> tuple[VxlanNetif, VxlanNetif]:
    devs: list[VxlanNetif] = []
    for _ in range(2):
        r = await VxlanNetif.connect(VxlanConfig(VNI, local=("127.0.0.1", 0)))
        assert isinstance(r, Ok), r
        devs.append(r.value)
    a, b = devs
    a.add_remote(b.local_addr)
    b.add_remote(a.local_addr)
    return a, b


def test_vxlan_netif_pair_conforms() -> None:
    """The suite passes, and its frames all crossed the overlay: nothing dropped or
    malformed, and both devices were left disconnected."""

    async def main() -> None:
        made: list[VxlanNetif] = []

        async def pair() -> tuple[Network, Network]:
            a, b = await vxlan_netifs()
            made.extend((a, b))
            return a, b

        await check_network_pair(pair)
        assert len(made) == 2 * len(NETWORK_CHECKS)
        for d in made:
            assert not d.connected
            c = d.counters
            assert c.rx_short == c.rx_bad_flags == c.rx_bad_vni == c.rx_looped == 0
            assert c.tx_errors == c.tx_dropped == c.tx_oversize == 0
        assert sum(d.counters.tx_datagrams for d in made) >= 300

    asyncio.run(asyncio.wait_for(main(), 20))
