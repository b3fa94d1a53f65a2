"""``sim.Network``: named hosts on one simulated segment, each running unmodified asyncio
code through its own stack, names resolving from the address plan."""

from __future__ import annotations

import asyncio
import errno
import socket
from typing import Any, cast

import pytest

from miragekit import sim
from miragekit.link import LinkParams


async def upper_server() -> None:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while line := await reader.readline():
            peer = writer.get_extra_info("peername")[0]
            writer.write(line.upper().rstrip() + f" from {peer}\n".encode())
            await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, None, 5432)
    async with server:
        await server.serve_forever()


async def client() -> tuple[list[str], float]:
    reader, writer = await asyncio.open_connection("db", 5432)
    out = []
    for i in range(20):
        writer.write(f"hello {i}\n".encode())
        await writer.drain()
        out.append((await reader.readline()).decode().strip())
    writer.close()
    return out, asyncio.get_running_loop().time()


def cluster(seed: int, loss: float = 0.05) -> sim.Report:
    net = sim.Network(seed=seed)
    assert net.host("db", main=upper_server) == net.address("db")
    net.host("api", main=client)
    net.host("api6", main=client, ip6=True)
    net.link("api", latency=0.005, jitter=0.001, loss=loss)
    return net.run(until=120.0)


def test_hosts_talk_by_name_with_unmodified_asyncio_code() -> None:
    report = cluster(seed=7)
    assert report.time == 120.0 and report.ok
    assert report["db"].state == "running"  # a server: still serving at `until`
    lines, done_at = cast(tuple[list[str], float], report["api"].value)
    assert report["api"].state == "returned" and 0 < done_at < 60
    assert lines == [f"HELLO {i} from 10.0.0.2" for i in range(20)]
    # The IPv6 host reaches db over IPv4 (db has no IPv6), the plan gives it 10.0.0.3.
    lines6, _ = cast(tuple[list[str], float], report["api6"].value)
    assert lines6[0] == "HELLO 0 from 10.0.0.3"


def test_same_seed_same_report_other_seed_other_timing() -> None:
    one, two, other = cluster(7), cluster(7), cluster(8)
    assert one == two
    assert one["api"].value != other["api"].value  # loss hits other segments


def test_ipv6_hosts_reach_each_other_over_ipv6_by_name() -> None:
    async def ask() -> Any:
        reader, writer = await asyncio.open_connection("db", 5432)
        writer.write(b"x\n")
        line = await reader.readline()
        return line.decode().strip(), writer.get_extra_info("peername")[0]

    net = sim.Network(seed=1)
    net.host("db", main=upper_server, ip6=True)
    net.host("c", main=ask, ip6=True)
    report = net.run(until=30)
    assert report["c"].value == ("X from fd6d:6b00::2", "fd6d:6b00::1")


def test_run_ends_when_every_main_has_ended_and_reports_errors() -> None:
    async def fails() -> None:
        await asyncio.sleep(2)
        raise KeyError("boom")

    async def lookup() -> Any:
        return await asyncio.get_running_loop().getaddrinfo("nowhere", 80)

    net = sim.Network()
    net.host("a", main=fails)
    net.host("b", main=lookup)
    net.host("quiet")
    report = net.run()
    assert report.time < 5
    assert report["quiet"].state == "idle"
    assert report["a"].state == "raised" and isinstance(report["a"].error, KeyError)
    err = report.errors()["b"]
    assert isinstance(err, socket.gaierror)
    assert "nowhere: no such host in the simulation" in str(err)
    assert not report.ok


def test_a_link_changed_while_running_cuts_that_host_only() -> None:
    net = sim.Network(seed=3)

    async def cutter() -> tuple[str, str]:
        await asyncio.sleep(1)
        net.link("db", up=False)
        results = []
        for name in ("db", "other"):
            try:
                async with asyncio.timeout(10):
                    await asyncio.open_connection(name, 5432)
                results.append("connected")
            except OSError as e:  # no ARP answer: EHOSTUNREACH, as on Linux
                results.append(f"errno {e.errno}")
        return results[0], results[1]

    net.host("db", main=upper_server)
    net.host("other", main=upper_server)
    net.host("c", main=cutter)
    assert net.run(until=60)["c"].value == (f"errno {errno.EHOSTUNREACH}", "connected")


def test_bad_plans_are_refused_before_anything_runs() -> None:
    net = sim.Network(subnet="10.1.0.0/29")
    net.host("a", ip="10.1.0.1")
    with pytest.raises(
        ValueError, match=r"host 'b': 10\.1\.0\.1 is already the address of host 'a'"
    ):
        net.host("b", ip="10.1.0.1")
    with pytest.raises(ValueError, match=r"host 'b': 10\.2\.0\.1 is not a host address of"):
        net.host("b", ip="10.2.0.1")
    with pytest.raises(ValueError, match=r"host 'b': 10\.1\.0\.7 is not a host address of"):
        net.host("b", ip="10.1.0.7")  # the broadcast address
    with pytest.raises(ValueError, match="host 'A' already exists"):
        net.host("A")
    with pytest.raises(ValueError, match="host name 'no_underscores'"):
        net.host("no_underscores")
    with pytest.raises(ValueError, match=r"no host named 'zz' \(hosts: a\)"):
        net.link("zz", loss=0.1)
    with pytest.raises(ValueError, match="link 'a': no parameter 'lost'"):
        net.link("a", lost=0.1)
    with pytest.raises(ValueError, match=r"LinkParams.loss must be a probability"):
        net.link("a", loss=2, latency=0.5)
    for n in "bcdef":
        net.host(n)
    with pytest.raises(ValueError, match=r"host 'g': no free address left in 10\.1\.0\.0/29"):
        net.host("g")
    with pytest.raises(ValueError, match="until must be > 0 seconds"):
        net.run(until=0)
    with pytest.raises(ValueError, match="no hosts"):
        sim.Network().run()
    with pytest.raises(ValueError, match="Network: "):
        sim.Network(subnet="10.0.0.0/33")
    assert net.run(until=1).ok
    with pytest.raises(RuntimeError, match="hosts are added before run"):
        net.host("late")
    with pytest.raises(RuntimeError, match="a Network runs once"):
        net.run(until=1)


def test_the_default_link_is_copied_per_host() -> None:
    params = LinkParams(latency=0.01)
    net = sim.Network(link=params)
    net.host("a")
    net.host("b")
    net.link("a", up=False)
    assert params.up
    seen: list[float] = []

    async def probe() -> None:
        seen.append(net.switch.interface("b").link.latency)
        seen.append(float(net.switch.interface("a").link.up))

    net.host("c", main=probe)
    net.run()
    assert seen == [0.01, 0.0]
