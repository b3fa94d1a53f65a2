"""``sim.Network``: named hosts on one simulated segment, each running unmodified asyncio
code through its own stack, names resolving from the address plan."""

from __future__ import annotations

import asyncio
import errno
import hashlib
import os
import socket
import subprocess
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
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


# -- faults -------------------------------------------------------------------------------


async def talk(lines: int, every: float) -> list[tuple[float, str]]:
    """Send a line every ``every`` s to db; what came back, with the time it did."""
    loop = asyncio.get_running_loop()
    reader, writer = await asyncio.open_connection("db", 5432)
    got = []
    for i in range(lines):
        writer.write(f"{i}\n".encode())
        line = (await reader.readline()).decode().split()[0]
        got.append((loop.time(), line))
        await asyncio.sleep(every)
    writer.close()
    return got


def test_partition_then_heal_delays_but_loses_nothing() -> None:
    net = sim.Network(seed=2)
    net.host("db", main=upper_server)
    net.host("c", main=lambda: talk(10, 1.0))
    net.partition(["c"], ["db"], at=3.5)
    net.heal(at=12)
    report = net.run(until=200)
    got = cast(list[tuple[float, str]], report["c"].value)
    assert [line for _, line in got] == [str(i) for i in range(10)]
    stalled = [t for t, line in got if line == "4"]
    assert stalled[0] > 12  # line 4 went out at ~4 s and crossed only after the heal
    assert (3.5, "partition c | db") in report.events and (12.0, "heal") in report.events


def udp_peer(me: str, other: str) -> Callable[[], Awaitable[list[bytes]]]:
    """Send ``me`` a datagram at 0.2 s (ARP learns both ways) and at 1 s."""

    async def main() -> list[bytes]:
        loop = asyncio.get_running_loop()
        got: list[bytes] = []

        class Proto(asyncio.DatagramProtocol):
            def datagram_received(self, data: bytes, addr: Any) -> None:
                got.append(data)

        transport, _ = await loop.create_datagram_endpoint(Proto, local_addr=("0.0.0.0", 9))
        (*_, peer), *_ = await loop.getaddrinfo(other, 9, type=socket.SOCK_DGRAM)
        await asyncio.sleep(0.2)
        transport.sendto(f"{me} early".encode(), peer)
        await asyncio.sleep(0.8)
        transport.sendto(f"{me} late".encode(), peer)
        await asyncio.sleep(1)
        transport.close()
        return got

    return main


def test_a_one_way_block_stops_one_direction_only() -> None:
    net = sim.Network(seed=1)
    net.host("x", main=udp_peer("x", "y"))
    net.host("y", main=udp_peer("y", "x"))
    net.block("x", "y", at=0.5)
    report = net.run()
    assert report["x"].value == [b"y early", b"y late"]  # y -> x still passes
    assert report["y"].value == [b"x early"]  # x -> y is blocked from 0.5 s
    assert (0.5, "block x -> y") in report.events


def test_a_crashed_host_sends_nothing_more_not_even_fin_or_rst() -> None:
    said_bye: list[bool] = []

    async def polite_server() -> None:
        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            try:
                while line := await reader.readline():
                    writer.write(line)
                    await writer.drain()
            finally:
                said_bye.append(True)
                writer.write(b"bye\n")  # never leaves: the host is gone
                writer.close()

        server = await asyncio.start_server(handle, None, 5432)
        await server.serve_forever()

    async def waiter() -> str:
        reader, writer = await asyncio.open_connection("db", 5432)
        writer.write(b"hi\n")
        await reader.readline()
        try:
            async with asyncio.timeout(60):
                line = await reader.readline()  # EOF (FIN) or a reset would end this
        except TimeoutError:
            return "silence"
        return f"got {line!r}"

    net = sim.Network(seed=1)
    net.host("db", main=polite_server)
    net.host("c", main=waiter)
    net.crash("db", at=2)
    report = net.run(until=100)
    assert said_bye == [True]  # the handler was cancelled and ran its finally
    assert report["c"].value == "silence"
    assert report["db"].state == "crashed"
    assert (2.0, "crash db") in report.events and (2.0, "db gone") in report.events


def test_restart_runs_main_again_and_old_connections_get_reset() -> None:
    async def survivor() -> list[str]:
        out = []
        reader, writer = await asyncio.open_connection("db", 5432)
        writer.write(b"one\n")
        out.append((await reader.readline()).decode().split()[0])
        await asyncio.sleep(10)  # db restarts meanwhile
        writer.write(b"two\n")
        try:
            out.append((await reader.readline()).decode() or "EOF")
        except ConnectionResetError:
            out.append("reset")
        reader, writer = await asyncio.open_connection("db", 5432)
        writer.write(b"three\n")
        out.append((await reader.readline()).decode().split()[0])
        return out

    net = sim.Network(seed=4)
    net.host("db", main=upper_server)
    net.host("c", main=survivor)
    net.restart("db", at=5)
    report = net.run(until=100)
    assert report["c"].value == ["ONE", "reset", "THREE"]
    assert report["db"].state == "running" and report["db"].restarts == 1
    assert [e for _, e in report.events if "db" in e] == [
        "start db",
        "c: connect c:57026 db:5432",
        "db: accept db:5432 c:57026",
        "restart db",
        "db gone",
        "start db again",
        "db: reset sent (no connection) db:5432 c:57026",  # the new stack knows nothing
        "c: reset by peer c:57026 db:5432",
        "c: connect c:57027 db:5432",
        "db: accept db:5432 c:57027",
    ]
    assert report["db"].counters.tcp_resets_out == 1 == report["c"].counters.tcp_resets_in
    assert report["db"].counters.stack["tcp"]["rst_sent"] == 1  # the stack agrees


def test_faults_name_unknown_hosts_or_need_a_running_network() -> None:
    net = sim.Network()
    net.host("a")
    with pytest.raises(ValueError, match=r"no host named 'b' \(hosts: a\)"):
        net.crash("b", at=1)
    with pytest.raises(ValueError, match=r"no host named 'zz'"):
        net.partition(["a"], ["zz"], at=1)
    with pytest.raises(ValueError, match=r"partition: host 'a' is in two groups"):
        net.partition(["a"], ["a"], at=1)
    with pytest.raises(TypeError, match="each group is a collection of host names"):
        net.partition("a", at=1)
    with pytest.raises(ValueError, match="at must be a virtual time >= 0"):
        net.heal(at=-1)
    with pytest.raises(RuntimeError, match="crash: the network is not running; pass at="):
        net.crash("a")
    net.at(1, lambda: None)
    assert net.run().time == 1.0  # run waits for what is scheduled


# -- determinism ----------------------------------------------------------------------------


async def chatty() -> list[str]:
    """Keep talking to db through resets and silences: what each attempt ended with."""
    loop = asyncio.get_running_loop()
    log = []
    while loop.time() < 40:
        try:
            async with asyncio.timeout(5):
                reader, writer = await asyncio.open_connection("db", 5432)
                for i in range(30):
                    writer.write(f"m{i}\n".encode() * 50)
                    await writer.drain()
                    for _ in range(50):
                        await reader.readline()
                writer.close()
            log.append(f"{loop.time():.6f} ok")
        except (OSError, TimeoutError) as e:
            log.append(f"{loop.time():.6f} {type(e).__name__}")
            await asyncio.sleep(1)
    return log


def chaos(capture: str, seed: int = 11) -> sim.Report:
    """A server and two clients over lossy links, a partition and a restart."""
    net = sim.Network(seed=seed, link=LinkParams(latency=0.002, jitter=0.001, loss=0.03))
    net.host("db", main=upper_server)
    net.host("a", main=chatty)
    net.host("b", main=chatty)
    net.partition(["a"], ["db", "b"], at=8)
    net.heal(at=14)
    net.restart("db", at=20)
    net.capture(capture)
    return net.run(until=60)


def test_same_seed_same_cluster_run_whatever_the_hash_seed(tmp_path: Path) -> None:
    runs = []
    for hashseed in ("1", "2", "3", "4"):
        pcap = tmp_path / f"{hashseed}.pcap"
        proc = subprocess.run(
            [sys.executable, __file__, str(pcap)],
            env={**os.environ, "PYTHONHASHSEED": hashseed},
            capture_output=True,
            text=True,
            timeout=300,
            check=True,
        )
        runs.append((proc.stdout, hashlib.sha256(pcap.read_bytes()).hexdigest()))
        assert pcap.stat().st_size > 100_000
    assert "restart db" in runs[0][0] and " ok" in runs[0][0]
    assert all(run == runs[0] for run in runs[1:])


def test_the_documented_cluster_runs(tmp_path: Path) -> None:
    from tests.test_sim_fixes import doc_example

    code = doc_example("## Simulated clusters")
    proc = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr
    assert proc.stdout.startswith("returned HELLO\n")
    assert (tmp_path / "cluster.pcap").stat().st_size > 1000


def test_a_stuck_cluster_is_a_deadlock_naming_the_host() -> None:
    async def stuck() -> None:
        await asyncio.Event().wait()

    net = sim.Network(idle_timeout=0.2)
    net.host("lonely", main=stuck)
    with pytest.raises(sim.SimDeadlock, match=r"waiting: .*\[lonely\]"):
        net.run()


if __name__ == "__main__":
    report = chaos(sys.argv[1])
    for t, e in report.events:
        print(f"{t:.6f} {e}")
    for name, h in report.hosts.items():
        print(name, h.state, h.value)
