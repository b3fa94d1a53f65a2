"""ECN end to end in simulated time: two stacks through a switch that marks CE.

The marks slow the transfer down as losses would, but nothing is lost or sent again, and
the bytes arrive exact, over IPv4 and IPv6 alike (each sets ECT(0) in its own header).
"""

from __future__ import annotations

import asyncio
import hashlib
import ipaddress
import random
from typing import Any

import pytest

from miragekit import sim
from miragekit import tcp as tcpcore
from miragekit.link import LinkParams, VnetSwitch
from miragekit.result import Ok
from miragekit.stack import DirectStack, IPv6Config, Static
from miragekit.v1 import StackConfig

SIZE = 3_000_000


async def stack(sw: VnetSwitch, name: str, i: int, mark: float) -> DirectStack:
    vif = sw.add_interface(name, link=LinkParams(latency=0.002, mark=mark))
    r = await DirectStack.connect(
        StackConfig(name, None, vif, Static(f"10.0.0.{i}/24")),
        ip6=IPv6Config(cidrs=[f"fd00::{i}/64"]),
        tcp_config=tcpcore.Config(mss=1460, ecn="on"),
    )
    assert isinstance(r, Ok), r
    return r.value


def transfer(family: int, mark: float) -> dict[str, Any]:
    payload = random.Random(5).randbytes(SIZE)

    async def main() -> dict[str, Any]:
        sw = VnetSwitch()
        client = await stack(sw, "client", 1, mark)
        server = await stack(sw, "server", 2, 0.0)
        got: asyncio.Future[tuple[str, dict[str, int]]] = asyncio.get_running_loop().create_future()

        async def sink(flow: Any) -> None:
            h = hashlib.sha256()
            while isinstance(r := await flow.read(), Ok):
                h.update(r.value)
            got.set_result((h.hexdigest(), dict(flow.connection.stats)))

        server.listen_tcpv4(port=9, callback=sink)
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        r: Any
        if family == 4:
            r = await client.tcpv4().create_connection((ipaddress.IPv4Address("10.0.0.2"), 9))
        else:
            r = await client.tcpv6().create_connection((ipaddress.IPv6Address("fd00::2"), 9))
        assert isinstance(r, Ok), r
        flow = r.value
        view = memoryview(payload)
        for i in range(0, SIZE, 1 << 20):
            assert await flow.write(view[i : i + (1 << 20)]) == Ok(None)
        await flow.close()
        digest, server_stats = await got
        elapsed = loop.time() - t0
        ports = [sw.interface(n).counters for n in ("client", "server")]
        return {
            "exact": digest == hashlib.sha256(payload).hexdigest(),
            "seconds": elapsed,
            "marked": sum(c.marked_ce for c in ports),
            "dropped": sum(c.dropped_loss + c.dropped_queue for c in ports),
            "client": dict(flow.connection.stats),
            "server": server_stats,
        }

    result: dict[str, Any] = sim.run(main(), seed=3)
    return result


@pytest.mark.parametrize("family", [4, 6])
def test_marking_switch_slows_the_transfer_without_loss(family: int) -> None:
    clean = transfer(family, 0.0)
    marked = transfer(family, 0.01)
    for r in (clean, marked):
        assert r["exact"]
        assert r["dropped"] == 0
        assert r["client"]["retransmits"] == 0
    assert clean["marked"] == 0 and clean["client"]["ecn_reductions"] == 0
    # The switch marked our ECT(0) data; the server saw the marks and echoed them; we
    # reduced the window each time (once per window) and the transfer took longer.
    assert marked["marked"] > 10
    assert marked["server"]["ce_received"] == marked["marked"]
    assert 5 <= marked["client"]["ecn_reductions"] <= marked["marked"]
    assert marked["seconds"] > 1.5 * clean["seconds"], (marked["seconds"], clean["seconds"])
