"""TCP Fast Open (RFC 7413): data in the SYN, one round trip saved on a repeat visit.

Why a cookie: a server that took data from any SYN would act on requests from forged
addresses. So a client first asks (an empty option in its SYN) and the server answers
with a cookie, a keyed hash of the client's address that only the server can make;
later SYNs to that server carry the cookie and data, and a server that recognises its
cookie takes the data at once. Anything else falls back to the ordinary handshake: a
client without a cookie asks for one and sends its data after the handshake; data the
server did not acknowledge in its SYN-ACK is sent again right away.

:class:`CookieJar` holds both sides' state for an endpoint: the server's key (from the
endpoint's secret) and the client's cookies, one per server address. :class:`FastOpen`
is a connection's part: the cookie it sends and what its SYN carried or learnt.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict

from ..wire.tcp import TCPRepr

__all__ = ["COOKIE_LEN", "OPT_FASTOPEN", "CookieJar", "FastOpen", "option_of", "with_option"]

OPT_FASTOPEN = 34
"""The Fast Open cookie option's kind (RFC 7413 4.1.1); kept in ``unknown_options``."""
COOKIE_LEN = 8
"""Bytes of our cookies (as Linux's); 4 to 16, even, are valid on the wire."""
_CACHE_MAX = 1024


def option_of(seg: TCPRepr) -> bytes | None:
    """The segment's Fast Open option: the cookie, ``b""`` for a cookie request, or None
    when there is none (or it has an invalid length: RFC 7413 4.1.1, 4 to 16 bytes)."""
    for kind, data in seg.unknown_options:
        if kind == OPT_FASTOPEN:
            n = len(data)
            return data if n == 0 or (4 <= n <= 16 and not n % 2) else None
    return None


def with_option(seg: TCPRepr, cookie: bytes) -> TCPRepr:
    """``seg`` with a Fast Open option carrying ``cookie`` (``b""``: a request)."""
    return seg._replace(unknown_options=(*seg.unknown_options, (OPT_FASTOPEN, cookie)))


class FastOpen:
    """A connection's Fast Open part.

    Client: ``cookie`` is what its SYN carries (``b""`` asks for one), ``mss`` the
    server's MSS remembered with it (bounds the SYN's data), ``syn_data`` the bytes the
    first SYN carried, ``acked`` whether the SYN-ACK acknowledged them, ``learnt`` a
    cookie the SYN-ACK brought (the endpoint files it). Server: ``cookie`` is the one
    its SYN-ACK hands out (``b""``: none), ``acked`` whether it took the SYN's data.
    """

    __slots__ = ("acked", "cookie", "learnt", "mss", "syn_data")

    def __init__(self, cookie: bytes, mss: int = 0) -> None:
        self.cookie = cookie
        self.mss = mss
        self.syn_data = 0
        self.acked = False
        self.learnt: bytes | None = None

    def __repr__(self) -> str:
        return (
            f"FastOpen(cookie={self.cookie.hex()!r}, syn_data={self.syn_data}, acked={self.acked})"
        )


class CookieJar:
    """The server's cookie key and the client's cookie cache of one endpoint."""

    __slots__ = ("_cache", "_key")

    def __init__(self, secret: bytes) -> None:
        # A key of its own, derived from the endpoint's secret (never the same bytes as
        # the ISN key): knowing cookies tells nothing about sequence numbers.
        self._key = hashlib.blake2s(secret, person=b"tfo-key").digest()
        self._cache: OrderedDict[bytes, tuple[bytes, int]] = OrderedDict()

    def server_cookie(self, client: bytes) -> bytes:
        """The cookie for a client address (RFC 7413 4.1.2: a truncated keyed hash)."""
        return hashlib.blake2s(client, key=self._key, digest_size=COOKIE_LEN).digest()

    def cached(self, server: bytes) -> tuple[bytes, int] | None:
        """The cookie and MSS learnt from ``server``, if any."""
        return self._cache.get(server)

    def learn(self, server: bytes, cookie: bytes, mss: int) -> None:
        self._cache[server] = (cookie, mss)
        self._cache.move_to_end(server)
        while len(self._cache) > _CACHE_MAX:
            self._cache.popitem(last=False)

    def forget(self, server: bytes) -> None:
        """The server ignored our cookie and gave no new one: ask afresh next time."""
        self._cache.pop(server, None)
