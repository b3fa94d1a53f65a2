"""A stub resolver over any STACKV4: UDP with retries, TCP when truncated, a cache.

The protocol steps are in ``_stub`` and ``_cache`` (sans-I/O); this is the asyncio
driver around them. Each query goes out from a fresh random source port with a random
ID (RFC 5452), to each configured server in turn, ``attempts`` rounds; only a reply
from the server asked, to that port, with that ID and that question, is accepted.
Everything else is dropped and counted in :attr:`Resolver.counters`.
"""

from __future__ import annotations

import asyncio
import ipaddress
import random
import socket
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

import dns.rdatatype
import dns.reversename
from dns.rdata import Rdata

from ..result import Error, Ok
from . import _stub
from ._addrinfo import addrinfo
from ._cache import Cache, Entry
from ._errors import BadName, DnsError, Malformed, NXDomain, ServFail, Timeout
from ._lookups import addresses_of, names_of

Addr = ipaddress.IPv4Address | ipaddress.IPv6Address
COUNTERS = (
    "queries", "sent", "tcp", "answers", "wrong id", "wrong source", "wrong question",
    "malformed", "timeouts", "servfail",
)  # fmt: skip
EPHEMERAL = (49152, 65535)
_TYPES = {t: int(dns.rdatatype.from_text(t)) for t in
          ("A", "AAAA", "CNAME", "MX", "NS", "PTR", "SOA", "SRV", "TXT")}  # fmt: skip


class _UDP(Protocol):
    def listen(self, port: int, callback: Any, /) -> None: ...

    async def write(
        self, buf: bytes, *, dest_ip: Any, dest_port: int, source_port: int | None = None
    ) -> None: ...


def _parse_server(s: str | Addr) -> Addr:
    try:
        return ipaddress.ip_address(s)
    except ValueError:
        raise ValueError(f"DNS server {s!r} is not an IP address") from None


class Resolver:
    """``await Resolver(stack, servers=["10.0.0.1"]).resolve("example.com", "A")``.

    With no ``servers``, those of the stack's DHCP lease are asked (looked up at each
    query, so a renewed lease with other servers takes effect).
    """

    def __init__(
        self,
        stack: Any,
        servers: Sequence[str | Addr] = (),
        *,
        hosts: Mapping[str, Sequence[str | Addr]] | None = None,
        timeout: float = 2.0,
        attempts: int = 2,
        rng: random.Random | None = None,
        cache: Cache | None = None,
        edns_payload: int | None = _stub.EDNS_PAYLOAD,
    ) -> None:
        if timeout <= 0 or attempts < 1:
            raise ValueError("a DNS resolver needs timeout > 0 and attempts >= 1")
        self.stack = stack
        self.servers: list[Addr] = [_parse_server(s) for s in servers]
        self.hosts: dict[str, list[Addr]] = {
            "localhost": [ipaddress.ip_address("127.0.0.1"), ipaddress.ip_address("::1")]
        }
        for name, addrs in (hosts or {}).items():
            self.hosts[name.lower().rstrip(".")] = [ipaddress.ip_address(a) for a in addrs]
        self.timeout = timeout
        self.attempts = attempts
        self.rng = rng or random.SystemRandom()
        self.cache = cache or Cache()
        self.edns_payload = edns_payload
        self.counters = dict.fromkeys(COUNTERS, 0)
        self._ports: set[int] = set()
        self._last_good: Addr | None = None

    # --- what applications call -----------------------------------------------------------

    async def resolve(
        self, name: str, rdtype: str | int = "A"
    ) -> Ok[list[Rdata]] | Error[DnsError]:
        """The records of type ``rdtype`` for ``name`` (CNAMEs followed); ``Ok([])`` when
        the name exists without such records (NODATA)."""
        fast = self._cached(name, rdtype)
        if fast is not None:
            return fast
        q = _stub.Question.make(name, rdtype)
        if isinstance(q, BadName):
            return Error(q)
        return await self._resolve(q, depth=0)

    def _cached(self, name: str, rdtype: str | int) -> Ok[list[Rdata]] | Error[DnsError] | None:
        """A cache hit without parsing the name (the common case, made cheap)."""
        t = _TYPES.get(rdtype) if isinstance(rdtype, str) else rdtype
        if t is None or not name.isascii():
            return None
        key = (name.lower() if name.endswith(".") else name.lower() + ".", t)
        hit = self.cache.get(key, asyncio.get_running_loop().time(), count_miss=False)
        return None if hit is None else _answer_of(hit, name.rstrip("."))

    async def addresses(self, host: str, family: int = 0) -> Ok[list[Addr]] | Error[DnsError]:
        """A and AAAA addresses of ``host`` (hosts table first), IPv6 first when the stack
        has a global IPv6 address (RFC 6724 in short: prefer the family we can reach)."""
        try:
            return Ok([ipaddress.ip_address(host)])
        except ValueError:
            pass
        fixed = self.hosts.get(host.lower().rstrip("."))
        kinds = [t for t, f in (("AAAA", socket.AF_INET6), ("A", socket.AF_INET))
                 if family in (0, f)]  # fmt: skip
        if fixed is not None:
            want = {"A": 4, "AAAA": 6}
            return Ok([a for t in kinds for a in fixed if a.version == want[t]])
        if not self._has_ipv6():
            kinds = [k for k in kinds if k == "A"] or kinds
        return await addresses_of(self.resolve, host, kinds)

    async def reverse(self, addr: str | Addr) -> Ok[list[str]] | Error[DnsError]:
        """The PTR names of an address (``in-addr.arpa``/``ip6.arpa``)."""
        return await names_of(self.resolve, addr)

    async def getaddrinfo(
        self, host: str, port: int | str | None, family: int = 0, type: int = 0, proto: int = 0
    ) -> list[tuple[int, int, int, str, tuple[Any, ...]]]:
        """``socket.getaddrinfo``-shaped results; failures raise ``socket.gaierror``."""
        r = await self.addresses(host, family)
        if isinstance(r, Error):
            code = (
                socket.EAI_NONAME if isinstance(r.error, NXDomain | BadName) else socket.EAI_AGAIN
            )
            raise socket.gaierror(code, str(r.error))
        if not r.value:
            raise socket.gaierror(socket.EAI_NONAME, f"{host}: no address")
        return addrinfo(r.value, port, type, proto)

    # --- the steps ------------------------------------------------------------------------

    def current_servers(self) -> list[Addr]:
        """The servers given; or else those of the stack's DHCP lease (option 6), then
        those router advertisements offer (RDNSS, RFC 8106) on a dual stack."""
        if self.servers:
            return list(self.servers)
        driver = getattr(self.stack, "dhcp", None)  # DirectStackV4.dhcp: the DHCP client
        lease = getattr(driver, "lease", None)
        out: list[Addr] = list(getattr(lease, "dns_servers", ()))
        if self._has_ipv6(global_only=False):
            ndp = self.stack.ipv6().ndp
            now = asyncio.get_running_loop().time()
            out += [ipaddress.IPv6Address(a) for a in ndp.dns_servers_at(now)]
        return out

    def _has_ipv6(self, *, global_only: bool = True) -> bool:
        """Whether the stack has IPv6 (with a global address, when ``global_only``)."""
        has = getattr(self.stack, "has_ipv6", False)  # DirectStackV4: a property
        if not (has() if callable(has) else has):
            return False
        if not global_only:
            return True
        ips = self.stack.ipv6().get_ip()
        return any(not a.is_link_local and not a.is_loopback for a in ips)

    async def _resolve(self, q: _stub.Question, depth: int) -> Ok[list[Rdata]] | Error[DnsError]:
        loop = asyncio.get_running_loop()
        hit = self.cache.get(q.key, loop.time())
        if hit is not None:
            return _answer_of(hit, str(q))
        self.counters["queries"] += 1
        servers = self.current_servers()
        if not servers:
            return Error(Timeout(str(q), ()))
        last: DnsError = Timeout(str(q), tuple(str(s) for s in servers))
        if self._last_good in servers:  # the server that answered last goes first
            servers.remove(self._last_good)
            servers.insert(0, self._last_good)
        for _ in range(self.attempts):
            for server in servers:
                out = await self._ask(q, server)
                if out is not None:
                    self._last_good = server
                match out:
                    case _stub.Answer(records, ttl):
                        self.counters["answers"] += 1
                        self.cache.put(q.key, records, ttl, loop.time())
                        return Ok(list(records))
                    case _stub.Negative(nx, ttl):
                        self.cache.put_negative(q.key, nx, ttl, loop.time())
                        return Error(NXDomain(str(q))) if nx else Ok([])
                    case _stub.Follow(target):
                        if depth >= _stub.MAX_CNAME:
                            return Error(Malformed(str(q), "CNAME chain too long"))
                        return await self._resolve(_stub.Question(target, q.rdtype), depth + 1)
                    case _stub.Unusable(why):
                        last = Malformed(str(q), why)
                    case _stub.Failed(rcode):
                        self.counters["servfail"] += 1
                        last = ServFail(str(q), rcode)
                    case None:
                        pass
        if isinstance(last, Timeout):
            self.counters["timeouts"] += 1
        return Error(last)

    async def _ask(self, q: _stub.Question, server: Addr) -> _stub.Outcome | None:
        """One query to one server over UDP (then TCP if truncated); None: no answer."""
        qid = self.rng.randrange(0x10000)
        wire = _stub.query(q, qid, edns_payload=self.edns_payload)
        got = await self._udp(wire, qid, q, server)
        if isinstance(got, _stub.Truncated):
            got = await self._tcp(wire, qid, q, server)
        return got

    def _udp_for(self, server: Addr) -> _UDP:
        return self.stack.udpv6() if server.version == 6 else self.stack.udpv4()  # type: ignore[no-any-return]

    async def _udp(
        self, wire: bytes, qid: int, q: _stub.Question, server: Addr
    ) -> _stub.Outcome | None:
        udp = self._udp_for(server)
        loop = asyncio.get_running_loop()
        answer: asyncio.Future[_stub.Outcome] = loop.create_future()
        port = self._port()

        async def on_datagram(src: Addr, dst: Addr, src_port: int, buf: memoryview) -> None:
            if src != server or src_port != 53:
                self.counters["wrong source"] += 1
                return
            m = _stub.accept(bytes(buf), qid, q)
            if isinstance(m, str):
                self.counters[m] += 1
                return
            if not answer.done():
                answer.set_result(_stub.interpret(m, q))

        udp.listen(port, on_datagram)
        try:
            self.counters["sent"] += 1
            await udp.write(wire, dest_ip=server, dest_port=53, source_port=port)
            return await asyncio.wait_for(answer, self.timeout)
        except TimeoutError:
            return None
        finally:
            udp.listen(port, None)
            self._ports.discard(port)

    def _port(self) -> int:
        while True:
            p = self.rng.randint(*EPHEMERAL)
            if p not in self._ports:
                self._ports.add(p)
                return p

    async def _tcp(
        self, wire: bytes, qid: int, q: _stub.Question, server: Addr
    ) -> _stub.Outcome | None:
        """RFC 7766: the same query over TCP, two-byte length first."""
        self.counters["tcp"] += 1
        tcp = self.stack.tcpv6() if server.version == 6 else self.stack.tcpv4()
        try:
            r = await asyncio.wait_for(tcp.create_connection((server, 53)), self.timeout)
        except TimeoutError:
            return None
        if not isinstance(r, Ok):
            return None
        flow = r.value
        try:
            await flow.write(len(wire).to_bytes(2, "big") + wire)
            buf = bytearray()
            async with asyncio.timeout(self.timeout):
                while len(buf) < 2 or len(buf) < 2 + int.from_bytes(buf[:2], "big"):
                    got = await flow.read()
                    if not isinstance(got, Ok):
                        return None
                    buf += got.value
            m = _stub.accept(bytes(buf[2 : 2 + int.from_bytes(buf[:2], "big")]), qid, q)
            if isinstance(m, str):
                self.counters[m] += 1
                return None
            out = _stub.interpret(m, q)
            return None if isinstance(out, _stub.Truncated) else out
        except TimeoutError:
            return None
        finally:
            await flow.close()


def _answer_of(hit: Entry, name: str) -> Ok[list[Rdata]] | Error[DnsError]:
    """What a cache entry answers: its records, NODATA (``Ok([])``) or NXDOMAIN."""
    if hit.records:
        return Ok(list(hit.records))
    return Error(NXDomain(name)) if hit.nxdomain else Ok([])
