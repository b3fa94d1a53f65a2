"""Our DHCP server and clients on the virtual switch in simulated time: two clients get
different addresses; the server goes away (renewing, rebinding, expiry: the addresses
are removed) and comes back (configured again); the same seed repeats the run exactly."""

from __future__ import annotations

import asyncio
import ipaddress

from miragekit import link as netlink
from miragekit import net, sim
from miragekit.dhcp import Bound, DhcpServerConfig, Expired, Renewed
from miragekit.result import Ok

A = ipaddress.IPv4Address
SERVER_CONFIG = DhcpServerConfig(
    server_ip=A("10.0.0.1"),
    network=ipaddress.IPv4Network("10.0.0.0/24"),
    pool_first=A("10.0.0.100"),
    pool_last=A("10.0.0.199"),
    lease_time=600,
    routers=(A("10.0.0.1"),),
)


async def scenario() -> list[tuple[str, float, str, str]]:
    sw = netlink.VnetSwitch()
    link = netlink.LinkParams(latency=0.001, jitter=0.0005)
    srv_stack = await net.IPv4Stack.connect(sw.add_interface("srv", link=link), cidr="10.0.0.1/24")
    server = net.DhcpServerDriver(srv_stack, SERVER_CONFIG)
    server.start()
    stacks = {
        n: await net.IPv4Stack.connect(sw.add_interface(n, link=link), cidr="0.0.0.0/0")
        for n in ("a", "b")
    }
    # Default client settings (3 ARP probes, RFC backoff): free in simulated time.
    results = await asyncio.gather(*(net.dhcp_configure(s, timeout=60) for s in stacks.values()))
    drivers = {}
    for n, r in zip(stacks, results, strict=True):
        assert isinstance(r, Ok), r
        drivers[n] = r.value
    a, b = (drivers[n].lease for n in ("a", "b"))
    assert a is not None and b is not None and a.address != b.address
    assert {x.address for x in server.server.leases(sim.now())} == {a.address, b.address}
    # The server goes away: both renew at T1 (300 s), rebind at T2 (525 s), and at the
    # end of the lease (600 s) their addresses are removed.
    sw.partition({"srv"}, {"a", "b"})
    await asyncio.sleep(590)
    for n in ("a", "b"):
        assert drivers[n].client.counters.rebinds == 0 and drivers[n].lease is not None
        assert drivers[n].client.state.value == "REBINDING"
    await asyncio.sleep(20)
    for n, st in stacks.items():
        assert st.ipv4.get_ip() == [A(0)] and drivers[n].lease is None
        assert isinstance(drivers[n].history[-1][1], Expired)
    # It comes back: both are configured again.
    sw.heal()
    await asyncio.sleep(120)
    for n, st in stacks.items():
        lease = drivers[n].lease
        assert lease is not None and st.ipv4.get_ip() == [lease.address]
        await drivers[n].stop()
    return [
        (n, round(t, 6), type(e).__name__, str(getattr(e, "lease", None) and e.lease.address))
        for n in ("a", "b")
        for t, e in drivers[n].history
        if isinstance(e, Bound | Renewed | Expired)
    ]


def test_two_clients_server_away_and_back_in_simulated_time() -> None:
    history = sim.run(scenario(), seed=3)
    kinds = [k for _, _, k, _ in history]
    assert kinds.count("Bound") == 4 and kinds.count("Expired") == 2
    expired = [t for _, t, k, _ in history if k == "Expired"]
    # The lease counts from the REQUEST (sent a few ms after the start), not the binding
    # (after the ARP probes, 4 s later).
    assert all(600 <= t < 600.1 for t in expired), history
    assert sim.run(scenario(), seed=3) == history  # the same seed, the same run
