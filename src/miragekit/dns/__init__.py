"""DNS for miragekit stacks: a stub resolver and an authoritative server.

The message format is dnspython's; the protocol steps (``_stub``, ``_cache``,
``_authority``) are sans-I/O, and ``Resolver``/``Server`` are the asyncio drivers
that carry them over any STACKV4 (see docs/dns.md).
"""

from __future__ import annotations

from ._authority import Authority
from ._cache import Cache
from ._errors import BadName, DnsError, Malformed, NXDomain, ServFail, Timeout
from ._host import HostResolver, NameResolver
from ._resolver import Resolver
from ._server import Server

__all__ = [
    "Authority",
    "BadName",
    "Cache",
    "DnsError",
    "HostResolver",
    "Malformed",
    "NXDomain",
    "NameResolver",
    "Resolver",
    "ServFail",
    "Server",
    "Timeout",
]
