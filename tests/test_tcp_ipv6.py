"""TCP over IPv6 and the dual stack: two of our stacks on the virtual switch, simulated time."""

from __future__ import annotations

import asyncio
import hashlib
import ipaddress
import random
from collections.abc import Coroutine
from typing import Any

import pytest

from miragekit import sim
from miragekit.link import LinkParams, VnetSwitch
from miragekit.net import TCP, IPv6Stack
from miragekit.net._ndp import State
from miragekit.result import EOF, Error, Ok, Refused
from miragekit.stack import DirectStack, IPv6Config, Static
from miragekit.v1 import StackConfig

A4 = ipaddress.IPv4Address
A6 = ipaddress.IPv6Address
SERVER6 = A6("fd00::2")


async def dual(
    sw: VnetSwitch,
    name: str,
    i: int,
    link: LinkParams | None = None,
    cidr6: str | None = None,
) -> DirectStack:
    vif = sw.add_interface(name, link=link or LinkParams(latency=0.001))
    r = await DirectStack.connect(
        StackConfig(name, None, vif, Static(f"10.0.0.{i}/24")),
        ip6=IPv6Config(cidrs=[cidr6 or f"fd00::{i}/64"]),
    )
    assert isinstance(r, Ok), r
    return r.value


async def two(link: LinkParams | None = None) -> tuple[VnetSwitch, DirectStack, DirectStack]:
    sw = VnetSwitch()
    return sw, await dual(sw, "client", 1, link), await dual(sw, "server", 2, link)


async def drain(flow: Any) -> bytes:
    out = bytearray()
    while True:
        r = await flow.read()
        if isinstance(r, Ok):
            out += r.value
        else:
            assert r is EOF, r
            return bytes(out)


async def echo(flow: Any) -> None:
    while isinstance(r := await flow.read(), Ok):
        await flow.write(r.value)


async def roundtrip(flow: Any, msg: bytes) -> bytes:
    assert await flow.write(msg) == Ok(None)
    got = b""
    while len(got) < len(msg):
        r = await flow.read()
        assert isinstance(r, Ok), r
        got += bytes(r.value)
    return got


def run_sim(coro: Coroutine[Any, Any, Any], seed: int = 1) -> Any:
    return sim.run(coro, seed=seed)


def test_tcp_driver_over_a_bare_ipv6_stack() -> None:
    """The same TCP class over IPv6Stack's layer: MSS from the MTU minus 60."""

    async def main() -> None:
        sw = VnetSwitch()
        stacks = []
        tcps = []
        for i in (1, 2):
            vif = sw.add_interface(f"s{i}", link=LinkParams(latency=0.001))
            st = await IPv6Stack.connect(vif, cidrs=[f"fd00::{i}/64"])
            assert await st.wait_ready(A6(f"fd00::{i}"))
            stacks.append(st)
            tcps.append(TCP(st.ipv6))
        assert tcps[0].config.mss == 1500 - 60
        tcps[1].listen(7, echo)
        r = await tcps[0].create_connection((SERVER6, 7))
        assert isinstance(r, Ok), r
        flow = r.value
        assert flow.get_dest() == (SERVER6, 7)
        assert flow.connection.mss == 1440 - 12  # the timestamp option takes 12
        assert await roundtrip(flow, b"x" * 20_000) == b"x" * 20_000
        await flow.close()
        assert await tcps[0].create_connection((SERVER6, 8)) == Error(Refused())

    run_sim(main())


def test_dual_stack_listener_answers_both_families() -> None:
    async def main() -> None:
        _, client, server = await two()
        seen: list[Any] = []

        async def who(flow: Any) -> None:
            seen.append(flow.get_dest())
            await echo(flow)

        server.listen_tcpv4(port=7, callback=who)
        for dest in ((A4("10.0.0.2"), 7), (SERVER6, 7)):
            tcp = client.tcpv4() if isinstance(dest[0], A4) else client.tcpv6()
            r = await tcp.create_connection(dest)  # type: ignore[arg-type]
            assert isinstance(r, Ok), r
            assert await roundtrip(r.value, b"hello " * 1000) == b"hello " * 1000
            await r.value.close()
        assert seen[0][0] == A4("10.0.0.1")
        assert seen[1][0] == A6("fd00::1")
        # IPv6-only listener: refused over IPv4, accepted over IPv6.
        server.listen_tcpv6(port=8, callback=echo)
        assert await client.tcpv4().create_connection((A4("10.0.0.2"), 8)) == Error(Refused())
        r6 = await client.tcpv6().create_connection((SERVER6, 8))
        assert isinstance(r6, Ok)
        await r6.value.close()
        # The link-local address works too (each stack has one from its MAC).
        ll = next(a for a in server.ipv6().get_ip() if a.is_link_local)
        r6 = await client.tcpv6().create_connection((ll, 7))
        assert isinstance(r6, Ok), r6
        assert await roundtrip(r6.value, b"ll") == b"ll"
        await r6.value.close()
        # UDP: one listen_udpv4 hears both families; replies go out per family.
        got: list[tuple[Any, bytes]] = []

        async def rx(src: Any, dst: Any, sport: int, buf: memoryview) -> None:
            got.append((src, bytes(buf)))
            udp = server.udpv6() if isinstance(src, A6) else server.udpv4()
            await udp.write(bytes(buf).upper(), dest_ip=src, dest_port=sport, source_port=5000)

        replies: list[tuple[Any, bytes]] = []

        async def back(src: Any, dst: Any, sport: int, buf: memoryview) -> None:
            replies.append((src, bytes(buf)))

        server.listen_udpv4(port=5000, callback=rx)
        client.listen_udpv4(port=6000, callback=back)
        await client.udpv4().write(b"v4", dest_ip=A4("10.0.0.2"), dest_port=5000, source_port=6000)
        await client.udpv6().write(b"v6", dest_ip=SERVER6, dest_port=5000, source_port=6000)
        await asyncio.sleep(0.5)
        assert set(got) == {(A4("10.0.0.1"), b"v4"), (A6("fd00::1"), b"v6")}
        assert set(replies) == {(A4("10.0.0.2"), b"V4"), (SERVER6, b"V6")}
        c = server.counters()
        assert c["tcp6"]["connections_opened"] >= 3 and c["udp6"]["rx_delivered"] == 1
        await client.disconnect()
        await server.disconnect()

    run_sim(main())


def test_stack_without_ipv6_says_so() -> None:
    async def main() -> None:
        sw = VnetSwitch()
        vif = sw.add_interface("a")
        r = await DirectStack.connect(StackConfig("a", None, vif, Static("10.0.0.1/24")))
        assert isinstance(r, Ok)
        assert not r.value.has_ipv6
        with pytest.raises(ValueError, match="no IPv6"):
            r.value.tcpv6()
        with pytest.raises(ValueError, match="dad_timeout"):
            IPv6Config(dad_timeout=0)
        with pytest.raises(ValueError, match="IPv6Config"):
            IPv6Config(cidrs=["10.0.0.1/24"])

    run_sim(main())


def nud_probes(confirm: bool) -> int:
    """Unicast solicitations the client sends during 100 s of a chatty TCP connection."""

    async def main() -> int:
        _, client, server = await two()
        server.listen_tcpv4(port=7, callback=echo)
        if not confirm:
            client.tcpv6()._ndp_confirm = None
        r = await client.tcpv6().create_connection((SERVER6, 7))
        assert isinstance(r, Ok)
        assert await roundtrip(r.value, b"hi") == b"hi"
        ndp = client.ipv6().ndp
        before = ndp.counters.ns_sent
        for _ in range(100):
            assert await roundtrip(r.value, b"ping") == b"ping"
            await asyncio.sleep(1)
        assert ndp.counters.unreachable == 0
        await r.value.close()
        return ndp.counters.ns_sent - before

    result: int = run_sim(main())
    return result


def test_nud_confirmed_by_tcp_progress() -> None:
    """TCP's advancing ACKs keep the neighbour REACHABLE (RFC 4861 7.3.1): no probes;
    without the confirmation, NUD probes every reachable time."""
    assert nud_probes(confirm=True) == 0
    assert nud_probes(confirm=False) >= 2


def test_dad_conflict_two_stacks_with_the_same_address() -> None:
    async def main() -> None:
        sw = VnetSwitch()
        first = await dual(sw, "first", 1, cidr6="fd00::5/64")
        assert A6("fd00::5") in first.ipv6().get_ip()
        vif = sw.add_interface("second", link=LinkParams(latency=0.001))
        r = await DirectStack.connect(
            StackConfig("second", None, vif, Static("10.0.0.2/24")),
            ip6=IPv6Config(cidrs=["fd00::5/64"]),
        )
        assert isinstance(r, Error)
        assert "fd00::5 is already in use" in str(r.error)
        # The first keeps its address and still answers on it.
        third = await dual(sw, "third", 3)
        first.listen_tcpv4(port=7, callback=echo)
        c = await third.tcpv6().create_connection((A6("fd00::5"), 7))
        assert isinstance(c, Ok), c
        assert await roundtrip(c.value, b"mine") == b"mine"
        await c.value.close()

    run_sim(main())


def test_neighbour_unreachability_after_a_partition_then_recovery() -> None:
    async def main() -> None:
        sw, client, server = await two()
        got: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()

        async def sink(flow: Any) -> None:
            got.set_result(await drain(flow))

        server.listen_tcpv4(port=9, callback=sink)
        r = await client.tcpv6().create_connection((SERVER6, 9))
        assert isinstance(r, Ok)
        flow = r.value
        assert await flow.write(b"a" * 1000) == Ok(None)
        await asyncio.sleep(1)
        ndp = client.ipv6().ndp
        assert ndp.cache[SERVER6.packed].state == State.REACHABLE
        sw.partition({"client"}, {"server"})
        assert await flow.write(b"b" * 1000) == Ok(None)
        await asyncio.sleep(60)  # reachable time, DELAY, then the unicast probes fail
        assert ndp.counters.unreachable >= 1
        assert SERVER6.packed not in ndp.cache or ndp.cache[SERVER6.packed].mac is None
        sw.heal()
        assert await flow.write(b"c" * 1000) == Ok(None)
        await flow.close()
        data = await asyncio.wait_for(got, 300)
        assert data == b"a" * 1000 + b"b" * 1000 + b"c" * 1000
        assert ndp.cache[SERVER6.packed].mac is not None  # resolved again

    run_sim(main())


def big_transfer(size: int, loss: float, seed: int) -> float:
    payload = random.Random(seed).randbytes(size)

    async def main() -> float:
        sw, client, server = await two(LinkParams(latency=0.002, loss=loss))
        got: asyncio.Future[str] = asyncio.get_running_loop().create_future()

        async def sink(flow: Any) -> None:
            h = hashlib.sha256()
            n = 0
            while isinstance(r := await flow.read(), Ok):
                h.update(r.value)
                n += len(r.value)
            got.set_result(h.hexdigest())

        server.listen_tcpv6(port=9, callback=sink)
        t0 = asyncio.get_running_loop().time()
        r = await client.tcpv6().create_connection((SERVER6, 9))
        assert isinstance(r, Ok)
        view = memoryview(payload)
        for i in range(0, size, 1 << 20):
            assert await r.value.write(view[i : i + (1 << 20)]) == Ok(None)
        await r.value.close()
        conn = r.value.connection
        assert await got == hashlib.sha256(payload).hexdigest()
        # The loss was real and recovered from; segments fit the link (no fragments).
        drops = sum(sw.interface(n).counters.dropped_loss for n in ("client", "server"))
        assert drops > size // 1500 * loss / 2
        assert conn.stats["retransmits"] > 0
        assert sum(sw.interface(n).counters.dropped_mtu for n in ("client", "server")) == 0
        assert client.counters()["ipv6"]["tx_fragments"] == 0
        return asyncio.get_running_loop().time() - t0

    result: float = run_sim(main(), seed=seed)
    return result


def test_50mb_over_ipv6_with_one_percent_loss_byte_exact() -> None:
    big_transfer(50_000_000, 0.01, seed=7)


def test_replies_leave_from_the_address_the_peer_used() -> None:
    """With two addresses in one prefix, source selection alone would answer a connection
    to the second from the first; each segment leaves from the connection's own address."""

    async def main() -> None:
        sw = VnetSwitch()
        client = await dual(sw, "client", 1)
        vif = sw.add_interface("server", link=LinkParams(latency=0.001))
        r = await DirectStack.connect(
            StackConfig("server", None, vif, Static("10.0.0.2/24")),
            ip6=IPv6Config(cidrs=["fd00::2/64", "fd00::3/64"]),
        )
        assert isinstance(r, Ok), r
        server = r.value
        assert server.ipv6().get_source(dst=A6("fd00::1")) == A6("fd00::2")
        server.listen_tcpv4(port=7, callback=echo)
        for addr in ("fd00::2", "fd00::3"):
            c = await client.tcpv6().create_connection((A6(addr), 7))
            assert isinstance(c, Ok), (addr, c)
            assert await roundtrip(c.value, b"which?") == b"which?"
            await c.value.close()

    run_sim(main())


def test_packet_too_big_lowers_the_segment_size() -> None:
    """A Packet Too Big (from a router we do not simulate: injected as received) lowers
    the path MTU; the connection's segments shrink to fit it, without fragments."""
    from scapy.layers.inet import TCP as ScapyTCP
    from scapy.layers.inet6 import ICMPv6PacketTooBig, IPv6
    from scapy.packet import Raw

    async def main() -> None:
        _, client, server = await two()
        got: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()

        async def sink(flow: Any) -> None:
            got.set_result(await drain(flow))

        server.listen_tcpv6(port=9, callback=sink)
        r = await client.tcpv6().create_connection((SERVER6, 9))
        assert isinstance(r, Ok)
        flow = r.value
        data = random.Random(1).randbytes(3_000_000)
        assert await flow.write(data[:1_000_000]) == Ok(None)
        await asyncio.sleep(1)
        assert flow.connection.mss == 1440 - 12
        quoted = IPv6(src="fd00::1", dst=str(SERVER6)) / ScapyTCP(sport=1, dport=9) / (b"x" * 1400)
        ptb = (
            IPv6(src="fd00::99", dst="fd00::1", hlim=64)
            / ICMPv6PacketTooBig(mtu=1280)
            / Raw(bytes(quoted)[:1232])  # the quote fills the error up to 1280 bytes
        )
        client.ipv6().receive(memoryview(bytes(ptb)))
        assert client.ipv6().path_mtu(SERVER6) == 1280
        assert await flow.write(data[1_000_000:2_000_000]) == Ok(None)
        await asyncio.sleep(1)
        assert flow.connection.mss == 1280 - 60 - 12
        frags = client.ipv6().counters.tx_fragments
        assert await flow.write(data[2_000_000:]) == Ok(None)
        await flow.close()
        assert await got == data
        assert client.ipv6().counters.tx_fragments == frags  # every later segment fits

    run_sim(main())
