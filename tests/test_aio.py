"""miragekit.aio: asyncio streams over a STACKV4, driven by unmodified asyncio code."""

from __future__ import annotations

import asyncio
import hashlib
import os
import socket
from collections.abc import Awaitable
from ipaddress import IPv4Address
from typing import Any

import pytest

from miragekit import aio
from miragekit.result import Ok
from miragekit.stack import SocketConfig, SocketStackV4

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


# An ordinary asyncio handler, exactly as one would pass it to asyncio.start_server.
async def upper_lines(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    while line := await reader.readline():
        writer.write(line.upper())
        await writer.drain()
    writer.close()
    await writer.wait_closed()


def test_unmodified_handler_over_the_stack() -> None:
    async def main() -> None:
        s = await stack()
        port = free_port()
        server = await aio.start_server(upper_lines, s, port)
        await asyncio.sleep(0.05)
        reader, writer = await aio.open_connection(s, "127.0.0.1", port)
        assert writer.get_extra_info("peername") == ("127.0.0.1", port)
        for word in (b"alpha\n", b"beta\n", b"gamma\n"):
            writer.write(word)
            await writer.drain()
            assert await reader.readline() == word.upper()
        writer.close()
        await writer.wait_closed()
        server.close()
        await s.disconnect()

    run(main())


def test_partial_reads_eof_and_large_transfer_with_back_pressure() -> None:
    async def main() -> None:
        s = await stack()
        port = free_port()
        payload = os.urandom(8 << 20)

        async def blast(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            for i in range(0, len(payload), 1 << 20):
                writer.write(payload[i : i + (1 << 20)])
                assert writer.transport.get_write_buffer_size() <= 2 << 20
                await writer.drain()

        await aio.start_server(blast, s, port)
        await asyncio.sleep(0.05)
        reader, writer = await aio.open_connection(s, LO, port)
        first = await reader.readexactly(10)
        some = await reader.read(1000)
        assert 0 < len(some) <= 1000
        rest = await reader.read()  # until EOF
        got = first + some + rest
        assert hashlib.sha256(got).digest() == hashlib.sha256(payload).digest()
        assert reader.at_eof()
        writer.close()
        await s.disconnect()

    run(main())


def test_half_close_where_the_flow_supports_it() -> None:
    async def main() -> None:
        s = await stack()
        port = free_port()

        async def reverse(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            data = await reader.read()
            writer.write(data[::-1])
            await writer.drain()

        await aio.start_server(reverse, s, port)
        await asyncio.sleep(0.05)
        reader, writer = await aio.open_connection(s, LO, port)
        assert writer.can_write_eof()
        writer.write(b"stressed")
        writer.write_eof()
        assert await reader.read() == b"desserts"
        writer.close()
        await s.disconnect()

    run(main())


def test_errors_raise_like_asyncio() -> None:
    async def main() -> None:
        s = await stack()
        with pytest.raises(ConnectionRefusedError):
            await aio.open_connection(s, "127.0.0.1", free_port())
        with pytest.raises(ValueError, match="IPv4"):
            await aio.open_connection(s, "::1", 80)
        await s.disconnect()

    run(main())
