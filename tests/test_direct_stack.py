"""DirectStackV4: two of our stacks over the virtual switch (simulated and real time)."""

from __future__ import annotations

import asyncio
import hashlib
import ipaddress
import random
from collections.abc import Coroutine
from typing import Any

import pytest
from tests.flowkit import drain_hash

from miragekit import sim
from miragekit.link import LinkParams, VnetSwitch
from miragekit.result import EOF, Error, Ok, Refused, Timeout
from miragekit.stack import DirectStackV4, Static
from miragekit.v1 import StackConfig

A = ipaddress.IPv4Address


async def two_stacks(
    link: LinkParams | None = None, mtu: int = 1500
) -> tuple[VnetSwitch, DirectStackV4, DirectStackV4]:
    sw = VnetSwitch()
    stacks = []
    for i, name in enumerate(("client", "server")):
        vif = sw.add_interface(name, mtu=mtu, link=link or LinkParams(latency=0.001))
        r = await DirectStackV4.connect(StackConfig(name, None, vif, Static(f"10.0.0.{i + 1}/24")))
        assert isinstance(r, Ok)
        stacks.append(r.value)
    return sw, stacks[0], stacks[1]


async def connect(stack: DirectStackV4, port: int) -> Any:
    return (await stack.tcpv4().create_connection((A("10.0.0.2"), port))).unwrap()


async def drain(flow: Any) -> bytes:
    out = bytearray()
    while True:
        r = await flow.read()
        if isinstance(r, Ok):
            out += r.value
        else:
            assert r is EOF, r
            return bytes(out)


def run_sim(coro: Coroutine[Any, Any, Any], seed: int = 1) -> Any:
    return sim.run(coro, seed=seed)


def test_echo_and_close_in_simulated_time() -> None:
    async def main() -> None:
        _, client, server = await two_stacks()

        async def echo(flow: Any) -> None:
            while isinstance(r := await flow.read(), Ok):
                await flow.write(r.value)

        server.listen_tcpv4(port=7, callback=echo)
        flow = await connect(client, 7)
        assert flow.get_dest() == (A("10.0.0.2"), 7)
        for msg in (b"hello", b"x" * 5000, b"world"):
            assert await flow.write(msg) == Ok(None)
            got = b""
            while len(got) < len(msg):
                r = await flow.read()
                assert isinstance(r, Ok)
                got += bytes(r.value)
            assert got == msg
        await flow.close()
        assert await flow.read() is EOF
        await asyncio.sleep(300)  # past TIME_WAIT
        assert client.tcpv4().connections() == 0
        assert server.tcpv4().connections() == 0

    run_sim(main())


@pytest.mark.parametrize("lingers", [False, True])
def test_passive_close_acks_the_fin_on_our_fin(lingers: bool) -> None:
    # A short exchange (connect, 1 byte each way, client closes first): the server's ACK
    # of the client's FIN rides on the server's own FIN, so it sends 3 segments (SYN-ACK,
    # echo, FIN|ACK). A server that does not close at once still ACKs the FIN, by the
    # delayed-ACK timer: 4 segments.
    async def main() -> None:
        _, client, server = await two_stacks()
        flows: list[Any] = []
        loop = asyncio.get_running_loop()

        async def echo_once(flow: Any) -> None:
            flows.append(flow)
            r = await flow.read()
            assert isinstance(r, Ok)
            await flow.write(r.value)
            assert await flow.read() is EOF
            if lingers:
                await asyncio.sleep(1.0)

        server.listen_tcpv4(port=7, callback=echo_once)
        flow = await connect(client, 7)
        assert await flow.write(b"x") == Ok(None)
        assert await flow.read() == Ok(memoryview(b"x"))
        t0 = loop.time()
        await flow.close()
        conn = flows[0].connection
        cconn = flow.connection
        while cconn.state.name in ("FIN_WAIT_1",):
            await asyncio.sleep(0.001)
        acked = loop.time() - t0
        await asyncio.sleep(2.0)
        assert conn.state.name == "CLOSED"
        if lingers:
            assert 0.04 <= acked < 0.06, acked
            assert conn.stats["segs_out"] == 4
        else:
            assert acked < 0.01, acked
            assert conn.stats["segs_out"] == 3

    run_sim(main())


def test_refused_and_timeout() -> None:
    async def main() -> None:
        sw, client, _ = await two_stacks()
        assert await client.tcpv4().create_connection((A("10.0.0.2"), 81)) == Error(Refused())
        sw.partition({"client"}, {"server"})
        t0 = asyncio.get_running_loop().time()
        assert await client.tcpv4().create_connection((A("10.0.0.2"), 81)) == Error(Timeout())
        assert asyncio.get_running_loop().time() - t0 > 30

    run_sim(main())


def transfer(size: int, link: LinkParams, seed: int) -> None:
    payload = random.Random(seed).randbytes(size)

    async def main() -> None:
        _, client, server = await two_stacks(link)
        received: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()

        async def sink(flow: Any) -> None:
            received.set_result(await drain(flow))

        server.listen_tcpv4(port=9, callback=sink)
        flow = await connect(client, 9)
        for i in range(0, size, 100_000):
            assert await flow.write(payload[i : i + 100_000]) == Ok(None)
        await flow.close()
        got = await received
        assert hashlib.sha256(got).hexdigest() == hashlib.sha256(payload).hexdigest()

    run_sim(main(), seed=seed)


def test_transfer_with_loss_reordering_duplication_corruption() -> None:
    transfer(
        3_000_000,
        LinkParams(
            latency=0.005,
            loss=0.02,
            reorder=0.02,
            reorder_delay=0.003,
            duplicate=0.01,
            corrupt=0.01,
        ),
        seed=3,
    )


def test_flow_conformance_suite_on_direct_flows() -> None:
    from miragekit.testing import check_flow

    async def main() -> None:
        _, client, server = await two_stacks()
        accepted: asyncio.Queue[Any] = asyncio.Queue()
        hold = asyncio.Event()

        async def keep(flow: Any) -> None:
            await accepted.put(flow)
            await hold.wait()

        server.listen_tcpv4(port=5000, callback=keep)

        async def make_pair() -> tuple[Any, Any]:
            a = await connect(client, 5000)
            return a, await accepted.get()

        await check_flow(make_pair)
        hold.set()

    run_sim(main())


def test_real_time_bulk_transfer_over_the_switch() -> None:
    async def main() -> None:
        async with asyncio.timeout(60):
            _, client, server = await two_stacks(LinkParams(), mtu=1500)
            done: asyncio.Future[int] = asyncio.get_running_loop().create_future()

            async def count(flow: Any) -> None:
                done.set_result(len(await drain(flow)))

            server.listen_tcpv4(port=9, callback=count)
            flow = await connect(client, 9)
            chunk = bytes(65536)
            for _ in range(80):
                await flow.write(chunk)
            await flow.close()
            assert await done == 80 * 65536

    asyncio.run(main())


def test_a_thousand_concurrent_connections_open_and_close_cleanly() -> None:
    async def main() -> None:
        _, client, server = await two_stacks()
        served = 0

        async def hello(flow: Any) -> None:
            nonlocal served
            r = await flow.read()
            assert isinstance(r, Ok)
            await flow.write(bytes(r.value).upper())
            served += 1

        server.listen_tcpv4(port=80, callback=hello)

        async def one(i: int) -> None:
            flow = await connect(client, 80)
            await flow.write(f"conn {i}".encode())
            assert await drain(flow) == f"CONN {i}".encode()
            await flow.close()

        flows = await asyncio.gather(*(one(i) for i in range(1000)))
        assert len(flows) == 1000 and served == 1000
        await asyncio.sleep(300)  # past TIME_WAIT (2 * MSL)
        assert client.tcpv4().connections() == 0
        assert server.tcpv4().connections() == 0
        assert client.tcpv4().flow_count() == 0 == server.tcpv4().flow_count()

    run_sim(main())


def test_dhcp_mode_on_the_switch_with_our_server() -> None:
    from miragekit.dhcp import DhcpServerConfig
    from miragekit.net import DhcpServerDriver, IPv4Stack
    from miragekit.stack import DHCP

    async def main() -> None:
        sw = VnetSwitch()
        srv = await IPv4Stack.connect(sw.add_interface("srv"), cidr="10.0.0.1/24")
        server = DhcpServerDriver(
            srv,
            DhcpServerConfig(
                server_ip=A("10.0.0.1"),
                network=ipaddress.IPv4Network("10.0.0.0/24"),
                pool_first=A("10.0.0.100"),
                pool_last=A("10.0.0.110"),
                lease_time=3600,
                routers=(A("10.0.0.1"),),
            ),
        )
        server.start()
        stacks = []
        for name in ("a", "b"):
            r = await DirectStackV4.connect(StackConfig(name, None, sw.add_interface(name), DHCP()))
            assert isinstance(r, Ok), r
            stacks.append(r.value)
        a, b = stacks
        [addr_a], [addr_b] = a.ipv4().get_ip(), b.ipv4().get_ip()
        assert addr_a != addr_b and {addr_a, addr_b} <= {A(f"10.0.0.{i}") for i in range(100, 111)}

        async def greet(flow: Any) -> None:
            await flow.write(b"hello from " + str(addr_b).encode())

        b.listen_tcpv4(port=80, callback=greet)
        c = await a.tcpv4().create_connection((addr_b, 80))
        assert isinstance(c, Ok), c
        assert await drain(c.value) == b"hello from " + str(addr_b).encode()
        await a.disconnect()  # RELEASE
        await asyncio.sleep(1)
        assert {lease.address for lease in server.server.leases(sim.now())} == {addr_b}

    run_sim(main())


def test_write_nodelay_returns_once_the_bytes_have_left() -> None:
    async def main() -> None:
        _, client, server = await two_stacks()
        got: asyncio.Queue[bytes] = asyncio.Queue()

        async def sink(flow: Any) -> None:
            while isinstance(r := await flow.read(), Ok):
                await got.put(bytes(r.value))

        server.listen_tcpv4(port=9, callback=sink)
        flow = await connect(client, 9)
        await flow.write(b"a")  # goes out at once (nothing in flight)
        assert await got.get() == b"a"
        await flow.write_nodelay(b"b")  # not held back by Nagle behind unacked data
        assert flow.connection.unsent == 0
        await flow.writev_nodelay([b"c", b"d"])
        assert flow.connection.unsent == 0
        out = b""
        while out != b"bcd":
            out += await got.get()

    run_sim(main())


def transfer_hashed(size: int, link: LinkParams, seed: int) -> dict[str, int]:
    """``size`` bytes client -> server in simulated time; SHA-256 compared at the end
    (hashed as they go, so 100 MB never sit in memory twice). Returns the TCP counters."""
    rng = random.Random(seed)
    block = rng.randbytes(1 << 20)

    async def main() -> dict[str, int]:
        sw, client, server = await two_stacks(link)
        done: asyncio.Future[tuple[int, str]] = asyncio.get_running_loop().create_future()

        async def sink(flow: Any) -> None:
            done.set_result(await drain_hash(flow))

        server.listen_tcpv4(port=9, callback=sink)
        flow = await connect(client, 9)
        want = hashlib.sha256()
        sent = 0
        while sent < size:
            piece = block[: min(len(block), size - sent)]
            piece = bytes([sent >> 20 & 0xFF]) + piece[1:]  # every MiB differs
            want.update(piece)
            assert await flow.write(piece) == Ok(None)
            sent += len(piece)
        await flow.close()
        assert await done == (size, want.hexdigest())
        impaired = {k: 0 for k in ("dropped_loss", "duplicated", "corrupted", "reordered")}
        for vif in sw.interfaces():
            for k in impaired:
                impaired[k] += getattr(vif.counters, k)
        return {**client.tcpv4().stats, **impaired}

    result: dict[str, int] = run_sim(main(), seed=seed)
    return result


@pytest.mark.parametrize("loss", [0.01, 0.05])
def test_100mb_with_loss_reordering_duplication_corruption(loss: float) -> None:
    link = LinkParams(
        latency=0.002, loss=loss, reorder=0.01, reorder_delay=0.002, duplicate=0.01, corrupt=0.005
    )
    stats = transfer_hashed(100 * 1024 * 1024, link, seed=int(loss * 100))
    # The link really did all four to this transfer, and it still arrived byte-exact.
    assert stats["dropped_loss"] > 1000 * loss * 100
    assert min(stats["duplicated"], stats["corrupted"], stats["reordered"]) > 100


def test_a_partition_that_heals_and_a_peer_that_vanishes() -> None:
    async def main() -> None:
        sw, client, server = await two_stacks()
        got: list[bytes] = []

        async def sink(flow: Any) -> None:
            while isinstance(r := await flow.read(), Ok):
                got.append(bytes(r.value))

        server.listen_tcpv4(port=9, callback=sink)
        flow = await connect(client, 9)
        assert await flow.write(b"before ") == Ok(None)
        await asyncio.sleep(1)
        sw.partition({"client"}, {"server"})
        assert await flow.write(b"during ") == Ok(None)  # queued; retransmitted later
        await asyncio.sleep(20)
        sw.heal()
        assert await flow.write(b"after") == Ok(None)
        await asyncio.sleep(30)
        assert b"".join(got) == b"before during after"
        # The server vanishes for good: the client's data cannot be delivered; after the
        # retransmissions the flow errors out and the connection's memory is freed.
        sw.partition({"client"}, {"server"})
        assert await flow.write(b"into the void") == Ok(None)
        t0 = asyncio.get_running_loop().time()
        r = await flow.read()
        assert r == Error(Timeout()), r
        assert asyncio.get_running_loop().time() - t0 < 20 * 60
        await flow.close()
        await asyncio.sleep(1)
        assert client.tcpv4().connections() == 0 and client.tcpv4().flow_count() == 0

    run_sim(main())
