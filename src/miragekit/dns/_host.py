"""The host's own resolver behind the same calls as :class:`Resolver`.

An application on ``--net socket`` lives on the host's network, so its names are the
host's: ``addresses``/``getaddrinfo`` ask the event loop's ``getaddrinfo`` (the host's
``/etc/hosts`` and resolver configuration); ``resolve`` asks dnspython's asyncio
resolver with the host's servers, or the ``servers`` given (``--dns``).
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Sequence
from typing import Any, Protocol

import dns.asyncresolver
import dns.exception
import dns.rdatatype
import dns.resolver
import dns.reversename
from dns.rdata import Rdata

from ..result import Error, Ok
from ._addrinfo import addrinfo
from ._errors import BadName, DnsError, NXDomain, ServFail, Timeout
from ._lookups import addresses_of, names_of

Addr = ipaddress.IPv4Address | ipaddress.IPv6Address


class NameResolver(Protocol):
    """What an application asks of a resolver, on any backend (``--dns`` sets servers)."""

    async def resolve(
        self, name: str, rdtype: str | int = "A"
    ) -> Ok[list[Rdata]] | Error[DnsError]: ...

    async def addresses(self, host: str, family: int = 0) -> Ok[list[Addr]] | Error[DnsError]: ...

    async def reverse(self, addr: str | Addr) -> Ok[list[str]] | Error[DnsError]: ...

    async def getaddrinfo(
        self, host: str, port: int | str | None, family: int = 0, type: int = 0, proto: int = 0
    ) -> list[tuple[int, int, int, str, tuple[Any, ...]]]: ...


class HostResolver:
    def __init__(self, servers: Sequence[str] = (), *, timeout: float = 2.0) -> None:
        self._servers = tuple(servers)
        self._r = dns.asyncresolver.Resolver(configure=not servers)
        if servers:
            self._r.nameservers = [str(ipaddress.ip_address(s)) for s in servers]
        self._r.lifetime = timeout * 2

    async def resolve(
        self, name: str, rdtype: str | int = "A"
    ) -> Ok[list[Rdata]] | Error[DnsError]:
        try:
            t = dns.rdatatype.RdataType.make(rdtype) if isinstance(rdtype, int) else rdtype
            ans = await self._r.resolve(name, t)
        except dns.resolver.NXDOMAIN:
            return Error(NXDomain(name.rstrip(".")))
        except dns.resolver.NoAnswer:
            return Ok([])
        except dns.resolver.LifetimeTimeout:
            return Error(Timeout(name, tuple(str(s) for s in self._r.nameservers)))
        except dns.resolver.NoNameservers:
            return Error(ServFail(name, "SERVFAIL"))
        except (dns.exception.DNSException, ValueError) as e:
            return Error(BadName(name, str(e)))
        return Ok(list(ans))

    async def addresses(self, host: str, family: int = 0) -> Ok[list[Addr]] | Error[DnsError]:
        if self._servers:  # --dns given: those servers, not the host's configuration
            return await self._ask_servers(host, family)
        try:
            infos = await asyncio.get_running_loop().getaddrinfo(
                host, None, family=family, type=socket.SOCK_STREAM
            )
        except socket.gaierror as e:
            if e.errno == socket.EAI_NONAME:
                return Error(NXDomain(host))
            return Error(ServFail(host, e.strerror or str(e)))
        out: list[Addr] = []
        for info in infos:
            a = ipaddress.ip_address(str(info[4][0]).partition("%")[0])
            if a not in out:
                out.append(a)
        return Ok(out)

    async def _ask_servers(self, host: str, family: int) -> Ok[list[Addr]] | Error[DnsError]:
        try:
            return Ok([ipaddress.ip_address(host)])
        except ValueError:
            pass
        kinds = [t for t, f in (("AAAA", socket.AF_INET6), ("A", socket.AF_INET))
                 if family in (0, f)]  # fmt: skip
        return await addresses_of(self.resolve, host, kinds)

    async def reverse(self, addr: str | Addr) -> Ok[list[str]] | Error[DnsError]:
        return await names_of(self.resolve, addr)

    async def getaddrinfo(
        self, host: str, port: int | str | None, family: int = 0, type: int = 0, proto: int = 0
    ) -> list[tuple[int, int, int, str, tuple[Any, ...]]]:
        if not self._servers:
            infos = await asyncio.get_running_loop().getaddrinfo(
                host, port, family=family, type=type, proto=proto
            )
            return [(int(f), int(t), p, c, a) for f, t, p, c, a in infos]
        r = await self._ask_servers(host, family)
        if isinstance(r, Error) or not r.value:
            code = (
                socket.EAI_NONAME
                if isinstance(r, Ok) or isinstance(r.error, NXDomain)
                else socket.EAI_AGAIN
            )
            raise socket.gaierror(
                code, f"{host}: {r.error if isinstance(r, Error) else 'no address'}"
            )
        return addrinfo(r.value, port, type, proto)
