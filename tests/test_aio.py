"""miragekit.aio: asyncio streams over a STACKV4, driven by unmodified asyncio code."""

from __future__ import annotations

import asyncio
import hashlib
import os
import socket
from collections.abc import Awaitable
from dataclasses import dataclass
from ipaddress import IPv4Address
from typing import Any

import pytest

from miragekit import aio, v1
from miragekit.link import VnetSwitch
from miragekit.result import Ok
from miragekit.stack import DirectStackV4, SocketConfig, SocketStackV4, Static

LO = IPv4Address("127.0.0.1")


def run(coro: Awaitable[Any]) -> Any:
    async def main() -> Any:
        async with asyncio.timeout(60):
            return await coro

    return asyncio.run(main())


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


async def stack() -> SocketStackV4:
    r = await SocketStackV4.connect(SocketConfig(ips=(LO,), connect_timeout=1.0))
    assert isinstance(r, Ok)
    return r.value


@dataclass
class Pair:
    """A server stack, the stack clients connect from, and the address to connect to."""

    server: v1.StackV4
    client: v1.StackV4
    ip: IPv4Address
    port: int

    async def close(self) -> None:
        await self.client.disconnect()
        if self.server is not self.client:
            await self.server.disconnect()


async def pair(kind: str) -> Pair:
    """``socket``: one host-socket stack on 127.0.0.1; ``direct``: two DirectStackV4 on a
    virtual switch, the client at 10.0.0.1 and the server at 10.0.0.2."""
    if kind == "socket":
        s = await stack()
        return Pair(s, s, LO, free_port())
    switch = VnetSwitch(seed=1)
    stacks = []
    for n in (1, 2):
        netif = switch.add_interface(f"s{n}")
        cfg = v1.StackConfig(f"s{n}", None, netif, Static(f"10.0.0.{n}/24"))
        r = await DirectStackV4.connect(cfg)
        assert isinstance(r, Ok)
        stacks.append(r.value)
    return Pair(stacks[1], stacks[0], IPv4Address("10.0.0.2"), 8000)


KINDS = pytest.mark.parametrize("kind", ["socket", "direct"])


# An ordinary asyncio handler, exactly as one would pass it to asyncio.start_server.
async def upper_lines(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    while line := await reader.readline():
        writer.write(line.upper())
        await writer.drain()
    writer.close()
    await writer.wait_closed()


@KINDS
def test_unmodified_handler_over_the_stack(kind: str) -> None:
    async def main() -> None:
        p = await pair(kind)
        server = await aio.start_server(upper_lines, p.server, p.port)
        await asyncio.sleep(0.05)
        reader, writer = await aio.open_connection(p.client, str(p.ip), p.port)
        assert writer.get_extra_info("peername") == (str(p.ip), p.port)
        for word in (b"alpha\n", b"beta\n", b"gamma\n"):
            writer.write(word)
            await writer.drain()
            assert await reader.readline() == word.upper()
        writer.close()
        await writer.wait_closed()
        server.close()
        await p.close()

    run(main())


@KINDS
def test_partial_reads_eof_and_large_transfer_with_back_pressure(kind: str) -> None:
    async def main() -> None:
        p = await pair(kind)
        payload = os.urandom(8 << 20)

        async def blast(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            for i in range(0, len(payload), 1 << 20):
                writer.write(payload[i : i + (1 << 20)])
                assert writer.transport.get_write_buffer_size() <= 2 << 20
                await writer.drain()

        await aio.start_server(blast, p.server, p.port)
        await asyncio.sleep(0.05)
        reader, writer = await aio.open_connection(p.client, p.ip, p.port)
        first = await reader.readexactly(10)
        some = await reader.read(1000)
        assert 0 < len(some) <= 1000
        rest = await reader.read()  # until EOF
        got = first + some + rest
        assert hashlib.sha256(got).digest() == hashlib.sha256(payload).digest()
        assert reader.at_eof()
        writer.close()
        await p.close()

    run(main())


@KINDS
def test_half_close(kind: str) -> None:
    async def main() -> None:
        p = await pair(kind)

        async def reverse(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            data = await reader.read()
            writer.write(data[::-1])
            await writer.drain()

        await aio.start_server(reverse, p.server, p.port)
        await asyncio.sleep(0.05)
        reader, writer = await aio.open_connection(p.client, p.ip, p.port)
        assert writer.can_write_eof()
        writer.write(b"stressed")
        writer.write_eof()
        assert await reader.read() == b"desserts"
        with pytest.raises(RuntimeError):
            writer.write(b"after eof")
        writer.close()
        await p.close()

    run(main())


@KINDS
def test_errors_raise_like_asyncio(kind: str) -> None:
    async def main() -> None:
        p = await pair(kind)
        with pytest.raises(ConnectionRefusedError):
            await aio.open_connection(p.client, p.ip, p.port)  # nobody listens yet
        with pytest.raises(ValueError, match="IPv4"):
            await aio.open_connection(p.client, "::1", 80)
        await p.close()

    run(main())
