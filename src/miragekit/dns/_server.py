"""An authoritative DNS server over any STACKV4: UDP and TCP on one port.

The answers come from :class:`~miragekit.dns.Authority` (sans-I/O); this driver
carries them. Over TCP (RFC 7766) it reads length-prefixed queries, answers them in
order, and closes a connection idle for ``idle_timeout`` seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from ..result import Ok
from ._authority import Authority


class Server:
    """``Server(stack, authority).serve(port=53)``, then the stack's ``listen()``."""

    def __init__(self, stack: Any, authority: Authority, *, idle_timeout: float = 10.0) -> None:
        self.stack = stack
        self.authority = authority
        self.idle_timeout = idle_timeout

    def serve(self, port: int = 53) -> None:
        stack = self.stack

        async def on_datagram(src: Any, dst: Any, src_port: int, buf: memoryview) -> None:
            reply = self.authority.respond(bytes(buf), udp=True)
            if reply is not None:
                udp = stack.udpv6() if src.version == 6 else stack.udpv4()
                await udp.write(reply, dest_ip=src, dest_port=src_port, source_port=port)

        stack.listen_udpv4(port=port, callback=on_datagram)
        stack.listen_tcpv4(port=port, callback=self._tcp)

    async def _tcp(self, flow: Any) -> None:
        buf = bytearray()
        try:
            while True:
                while len(buf) >= 2 and len(buf) >= 2 + int.from_bytes(buf[:2], "big"):
                    n = int.from_bytes(buf[:2], "big")
                    reply = self.authority.respond(bytes(buf[2 : 2 + n]), udp=False)
                    del buf[: 2 + n]
                    if reply is None:
                        return
                    if not isinstance(await flow.write(len(reply).to_bytes(2, "big") + reply), Ok):
                        return
                try:
                    async with asyncio.timeout(self.idle_timeout):
                        got = await flow.read()
                except TimeoutError:
                    return
                if not isinstance(got, Ok):
                    return
                buf += got.value
        finally:
            with contextlib.suppress(Exception):
                await flow.close()
