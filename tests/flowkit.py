"""Small TCP flow helpers shared by the stack tests: read to the end, serve one HTTP reply."""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Callable
from typing import Any

from miragekit.result import Ok


async def drain(flow: Any) -> bytes:
    """Everything ``flow`` delivers until EOF (or an error)."""
    out = bytearray()
    while isinstance(r := await flow.read(), Ok):
        out += r.value
    return bytes(out)


async def drain_hash(flow: Any) -> tuple[int, str]:
    """(bytes read until EOF, their SHA-256), without keeping them."""
    h = hashlib.sha256()
    n = 0
    while isinstance(r := await flow.read(), Ok):
        h.update(r.value)
        n += len(r.value)
    return n, h.hexdigest()


def http_once(body: bytes) -> Callable[[Any], Awaitable[None]]:
    """A listener callback with just enough HTTP/1.1 for curl: one GET, one reply, close."""

    async def serve(flow: Any) -> None:
        req = b""
        while b"\r\n\r\n" not in req:
            r = await flow.read()
            if not isinstance(r, Ok):
                return
            req += bytes(r.value)
        head = f"HTTP/1.1 200 OK\r\nContent-Length: {len(body)}\r\nConnection: close\r\n\r\n"
        await flow.writev([head.encode(), body])

    return serve
