"""The lookups built on ``resolve(name, type)``, shared by :class:`Resolver` and
:class:`HostResolver`: the addresses of a name (A and AAAA) and the names of an address."""

from __future__ import annotations

import ipaddress
from collections.abc import Awaitable, Callable, Sequence

import dns.exception
import dns.reversename
from dns.rdata import Rdata

from ..result import Error, Ok
from ._errors import BadName, DnsError

Addr = ipaddress.IPv4Address | ipaddress.IPv6Address
Resolve = Callable[[str, str], Awaitable[Ok[list[Rdata]] | Error[DnsError]]]


async def addresses_of(
    resolve: Resolve, host: str, kinds: Sequence[str]
) -> Ok[list[Addr]] | Error[DnsError]:
    """The addresses of ``host`` for each record type of ``kinds`` in turn; an error only
    when none was found (the first error then)."""
    out: list[Addr] = []
    first: DnsError | None = None
    for t in kinds:
        r = await resolve(host, t)
        if isinstance(r, Ok):
            out += [ipaddress.ip_address(rd.address) for rd in r.value]  # type: ignore[attr-defined]
        elif first is None:
            first = r.error
    return Ok(out) if out or first is None else Error(first)


async def names_of(resolve: Resolve, addr: str | Addr) -> Ok[list[str]] | Error[DnsError]:
    """The PTR names of an address (``in-addr.arpa``/``ip6.arpa``)."""
    try:
        name = dns.reversename.from_address(str(addr)).to_text()
    except (ValueError, dns.exception.DNSException):
        return Error(BadName(str(addr), "not an IP address"))
    r = await resolve(name, "PTR")
    if isinstance(r, Error):
        return r
    return Ok([rd.target.to_text(omit_final_dot=True) for rd in r.value])  # type: ignore[attr-defined]
