"""Our resolver against our server: two stacks on the virtual switch, in simulated time."""

from __future__ import annotations

import asyncio
import ipaddress
import random
import socket
from collections.abc import Awaitable, Callable
from typing import Any

import dns.message
import dns.rrset
from tests.dns.dnszone import ORIGIN, ZONE

from miragekit import sim
from miragekit.dns import Authority, BadName, NXDomain, Resolver, Server, ServFail, Timeout
from miragekit.link import LinkParams, VnetSwitch
from miragekit.result import Error, Ok
from miragekit.stack import DirectStackV4, Static
from miragekit.v1 import StackConfig

A = ipaddress.IPv4Address


async def stacks(n: int, link: LinkParams | None = None) -> list[DirectStackV4]:
    sw = VnetSwitch()
    out = []
    for i in range(n):
        vif = sw.add_interface(f"h{i}", link=link or LinkParams(latency=0.001))
        r = await DirectStackV4.connect(
            StackConfig(f"h{i}", None, vif, Static(f"10.0.0.{i + 1}/24"))
        )
        assert isinstance(r, Ok)
        out.append(r.value)
    return out


def with_server(body: Callable[[Resolver, Authority], Awaitable[None]], **kw: Any) -> None:
    async def main() -> None:
        client, server = await stacks(2)
        auth = Authority.from_text(ZONE, ORIGIN)
        Server(server, auth).serve(53)
        res = Resolver(client, ["10.0.0.2"], rng=random.Random(1), **kw)
        try:
            await body(res, auth)
        finally:
            await client.disconnect()
            await server.disconnect()

    sim.run(main(), seed=1)


def texts(r: Any) -> list[str]:
    assert isinstance(r, Ok), r
    return sorted(rd.to_text() for rd in r.value)


def test_lookups_cache_and_errors() -> None:
    async def body(res: Resolver, auth: Authority) -> None:
        assert texts(await res.resolve("www.example.test", "A")) == ["10.0.0.80", "10.0.0.81"]
        assert texts(await res.resolve("alias2.example.test", "AAAA")) == ["fd00::80"]
        assert texts(await res.resolve("mail.example.test", "MX")) == ["10 www.example.test."]
        assert texts(await res.resolve("www.example.test", "MX")) == []  # NODATA
        r = await res.resolve("nope.example.test")
        assert r == Error(NXDomain("nope.example.test")) and str(r.error).endswith("(NXDOMAIN)")
        assert (await res.reverse("10.0.0.80")) != Ok([])  # the zone is not in-addr.arpa: refused
        sent = res.counters["sent"]
        for _ in range(3):  # from the cache: nothing more on the wire, NXDOMAIN too
            assert texts(await res.resolve("www.example.test")) == ["10.0.0.80", "10.0.0.81"]
            assert isinstance(await res.resolve("nope.example.test"), Error)
        assert res.counters["sent"] == sent and res.cache.hits >= 6
        assert isinstance((await res.resolve("bad..name")), Error)
        assert (await res.resolve("x.test", "BOGUS")) == Error(
            BadName("x.test", "unknown record type BOGUS")
        )
        assert (await res.resolve("x.sub.example.test")) == Error(
            ServFail("x.sub.example.test", "referral")
        )
        assert (await res.resolve("other.org")) == Error(ServFail("other.org", "REFUSED"))

    with_server(body)


def test_a_large_answer_is_retried_over_tcp() -> None:
    async def body(res: Resolver, auth: Authority) -> None:
        r = await res.resolve("big.example.test", "TXT")
        assert isinstance(r, Ok) and len(r.value[0].strings) == 10  # type: ignore[attr-defined]
        assert res.counters["tcp"] == 1 and auth.counters["truncated"] == 1

    with_server(body)


def test_addresses_and_getaddrinfo() -> None:
    async def body(res: Resolver, auth: Authority) -> None:
        # An IPv4-only stack asks for A only.
        assert await res.addresses("www.example.test") == Ok([A("10.0.0.80"), A("10.0.0.81")])
        assert await res.addresses("10.1.2.3") == Ok([A("10.1.2.3")])
        assert await res.addresses("db") == Ok([A("10.0.0.9")])  # the hosts table first
        infos = await res.getaddrinfo("www.example.test", 80, type=socket.SOCK_STREAM)
        assert [i[4] for i in infos] == [("10.0.0.80", 80), ("10.0.0.81", 80)]
        try:
            await res.getaddrinfo("nope.example.test", 80)
            raise AssertionError("no gaierror")
        except socket.gaierror as e:
            assert e.errno == socket.EAI_NONAME and "NXDOMAIN" in str(e)

    with_server(body, hosts={"db": ["10.0.0.9"]})


def test_a_dead_server_is_skipped_and_all_dead_is_a_timeout() -> None:
    async def main() -> None:
        client, server = await stacks(2)
        Server(server, Authority.from_text(ZONE, ORIGIN)).serve(53)
        res = Resolver(client, ["10.0.0.7", "10.0.0.2"], timeout=1.0, rng=random.Random(2))
        assert texts(await res.resolve("www.example.test")) == ["10.0.0.80", "10.0.0.81"]
        dead = Resolver(client, ["10.0.0.2"], timeout=1.0, attempts=3, rng=random.Random(3))
        await server.disconnect()
        r = await dead.resolve("txt.example.test", "TXT")
        assert r == Error(Timeout("txt.example.test", ("10.0.0.2",)))
        assert dead.counters["sent"] == 3
        await client.disconnect()

    sim.run(main(), seed=2)


def test_hostile_answers_are_dropped_and_counted() -> None:
    """A host answers every query three wrong ways first (wrong ID, wrong question, from
    another port), then rightly; a third host races from a spoofed address."""

    async def main() -> None:
        client, server, other = await stacks(3)
        auth = Authority.from_text(ZONE, ORIGIN)

        async def evil(src: Any, dst: Any, src_port: int, buf: memoryview) -> None:
            q = dns.message.from_wire(bytes(buf))
            udp = server.udpv4()
            wrong_id = dns.message.make_response(q)
            wrong_id.id ^= 1
            wrong_id.answer.append(
                dns.rrset.from_text(q.question[0].name, 60, "IN", "A", "6.6.6.6")
            )
            wrong_q = dns.message.make_query("www.example.test", "AAAA", id=q.id)
            wrong_q.flags |= dns.flags.QR
            for m, port in ((wrong_id, 53), (wrong_q, 53), (wrong_id, 5353)):
                await udp.write(m.to_wire(), dest_ip=src, dest_port=src_port, source_port=port)
            await other.udpv4().write(b"\x00" * 40, dest_ip=src, dest_port=src_port, source_port=53)
            await asyncio.sleep(0.05)  # the spoofer's ARP first
            good = auth.respond(bytes(buf))
            assert good is not None
            await udp.write(good, dest_ip=src, dest_port=src_port, source_port=53)

        server.listen_udpv4(port=53, callback=evil)
        res = Resolver(client, ["10.0.0.2"], rng=random.Random(4))
        assert texts(await res.resolve("www.example.test")) == ["10.0.0.80", "10.0.0.81"]
        c = res.counters
        assert (c["wrong id"], c["wrong question"], c["wrong source"]) == (1, 1, 2), c
        for s in (client, server, other):
            await s.disconnect()

    sim.run(main(), seed=3)


def test_servers_from_router_advertisements_over_ipv6() -> None:
    """A dual stack learns its DNS server from an RA's RDNSS option (RFC 8106) and asks
    it over IPv6; a lifetime of 0 withdraws it."""
    from miragekit.stack import IPv6Config
    from miragekit.wire import icmpv6 as ic

    async def main() -> None:
        sw = VnetSwitch()
        made = []
        for i in (1, 2):
            vif = sw.add_interface(f"h{i}", link=LinkParams(latency=0.001))
            cfg = StackConfig(f"h{i}", None, vif, Static(f"10.0.0.{i}/24"))
            ip6 = IPv6Config(cidrs=[f"fd00::{i}/64"], slaac=False)
            r = await DirectStackV4.connect(cfg, ip6=ip6)
            assert isinstance(r, Ok), r
            made.append(r.value)
        client, server = made
        Server(server, Authority.from_text(ZONE, ORIGIN)).serve(53)
        res = Resolver(client, rng=random.Random(8))
        assert res.current_servers() == []
        ndp = client.ipv6().ndp
        router = ipaddress.IPv6Address("fe80::99").packed
        dst = ipaddress.IPv6Address("ff02::1").packed
        now = asyncio.get_running_loop().time()
        rdnss = ic.RdnssOption(600, (ipaddress.IPv6Address("fd00::2"),))
        ndp.input(router, dst, 255, ic.RouterAdvert(64, False, False, 0, 0, 0, (rdnss,)), now)
        assert res.current_servers() == [ipaddress.IPv6Address("fd00::2")], (
            ndp.dns_servers,
            ndp.counters,
        )
        # The stack has a global IPv6 address: AAAA first, then A, asked over IPv6.
        got = await res.addresses("www.example.test")
        assert got == Ok([ipaddress.IPv6Address("fd00::80"), A("10.0.0.80"), A("10.0.0.81")])
        gone = ic.RdnssOption(0, rdnss.servers)
        now = asyncio.get_running_loop().time()
        ndp.input(router, dst, 255, ic.RouterAdvert(64, False, False, 0, 0, 0, (gone,)), now)
        assert res.current_servers() == []
        await client.disconnect()
        await server.disconnect()

    sim.run(main(), seed=4)
