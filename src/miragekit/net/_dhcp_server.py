"""Runs the sans-I/O DHCP server on an :class:`IPv4Stack` with a static address."""

from __future__ import annotations

import asyncio
import ipaddress

from ..dhcp import DhcpServer, DhcpServerConfig
from ..wire.dhcp import CLIENT_PORT, SERVER_PORT
from ._ipstack import IPv4Stack

Addr = ipaddress.IPv4Address


class DhcpServerDriver:
    """Listens on port 67 of ``stack`` and answers from :class:`~miragekit.dhcp.DhcpServer`."""

    def __init__(self, stack: IPv4Stack, config: DhcpServerConfig) -> None:
        self.stack = stack
        self.server = DhcpServer(config)
        self._loop = asyncio.get_running_loop()

    def start(self) -> None:
        self.stack.udp.listen(SERVER_PORT, self._on_udp)

    async def stop(self) -> None:
        self.stack.udp.listen(SERVER_PORT, None)

    async def _on_udp(self, src: Addr, dst: Addr, sport: int, buf: memoryview) -> None:
        if sport != CLIENT_PORT:
            return
        for reply in self.server.handle_message(self._loop.time(), buf):
            self.stack.udp.send(
                reply.payload, dest_ip=reply.dst, dest_port=CLIENT_PORT, source_port=SERVER_PORT
            )
