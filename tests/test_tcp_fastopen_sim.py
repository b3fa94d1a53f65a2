"""TCP Fast Open through the stack's API, in simulated time: ``create_connection(...,
fastopen=...)`` and ``listen_tcpv4(..., fastopen=True)``. The repeat visit gets its
answer a round trip sooner, and each request is read exactly once."""

from __future__ import annotations

import asyncio
import ipaddress
from typing import Any

import pytest

from miragekit import sim
from miragekit.link import LinkParams, VnetSwitch
from miragekit.result import Ok
from miragekit.stack import DirectStack, IPv6Config, Static
from miragekit.v1 import StackConfig

LATENCY = 0.01  # per port: 20 ms one way between the stacks, a 40 ms round trip


async def stack(sw: VnetSwitch, name: str, i: int) -> DirectStack:
    vif = sw.add_interface(name, link=LinkParams(latency=LATENCY))
    r = await DirectStack.connect(
        StackConfig(name, None, vif, Static(f"10.0.0.{i}/24")),
        ip6=IPv6Config(cidrs=[f"fd00::{i}/64"]),
    )
    assert isinstance(r, Ok), r
    return r.value


def visits(family: int, server_fastopen: bool) -> dict[str, Any]:
    async def main() -> dict[str, Any]:
        sw = VnetSwitch()
        client = await stack(sw, "client", 1)
        server = await stack(sw, "server", 2)
        requests: list[bytes] = []

        async def answer(flow: Any) -> None:
            r = await flow.read()
            assert isinstance(r, Ok), r
            requests.append(bytes(r.value))
            assert await flow.write(b"answer to " + bytes(r.value)) == Ok(None)
            await flow.close()

        if family == 4:
            server.listen_tcpv4(port=80, callback=answer, fastopen=server_fastopen)
        else:
            server.listen_tcpv6(port=80, callback=answer, fastopen=server_fastopen)
        tcp: Any = client.tcpv4() if family == 4 else client.tcpv6()
        addr: Any = (
            ipaddress.IPv4Address("10.0.0.2") if family == 4 else ipaddress.IPv6Address("fd00::2")
        )
        loop = asyncio.get_running_loop()
        # Neighbour resolution first (a refused connection), so each visit below costs
        # only what TCP costs.
        assert not isinstance(await tcp.create_connection((addr, 81)), Ok)
        times = []
        flows = []
        for i in range(3):
            t0 = loop.time()
            r = await tcp.create_connection((addr, 80), fastopen=f"request {i}".encode())
            assert isinstance(r, Ok), r
            got = await r.value.read()
            assert isinstance(got, Ok), got
            assert bytes(got.value) == f"answer to request {i}".encode()
            times.append(loop.time() - t0)
            flows.append(r.value)
            await r.value.close()
            await asyncio.sleep(0.5)
        return {
            "times": times,
            "requests": requests,
            "syn_data_acked": [f.connection.fastopen.acked for f in flows],
            "retransmits": [f.connection.stats["retransmits"] for f in flows],
        }

    result: dict[str, Any] = sim.run(main(), seed=2)
    return result


@pytest.mark.parametrize("family", [4, 6])
def test_repeat_visits_save_a_round_trip(family: int) -> None:
    r = visits(family, server_fastopen=True)
    rtt = 4 * LATENCY
    first, second, third = r["times"]
    assert first == pytest.approx(2 * rtt, abs=0.005)  # handshake, then the request
    assert second == pytest.approx(rtt, abs=0.005)  # the request rode in the SYN
    assert third == pytest.approx(rtt, abs=0.005)
    assert r["requests"] == [b"request 0", b"request 1", b"request 2"]
    assert r["syn_data_acked"] == [False, True, True]
    assert r["retransmits"] == [0, 0, 0]


def test_a_server_without_fast_open_costs_nothing_but_the_round_trip() -> None:
    r = visits(4, server_fastopen=False)
    rtt = 4 * LATENCY
    assert r["times"] == pytest.approx([2 * rtt] * 3, abs=0.005)
    assert r["requests"] == [b"request 0", b"request 1", b"request 2"]
    assert r["syn_data_acked"] == [False, False, False]
