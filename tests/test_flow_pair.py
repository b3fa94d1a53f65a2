"""The in-memory flow pair: the FLOW conformance suite, back-pressure and the test knobs."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
from collections.abc import Coroutine
from ipaddress import IPv4Address
from typing import Any, TypeVar

import pytest

import miragekit.testing as testing
from miragekit.result import EOF, Eof, Error, Ok, Unknown
from miragekit.testing import FLOW_CHECKS, FlowCheckFailed, MemoryFlow, check_flow, flow_pair
from miragekit.v1 import Buffer, Buffers, Flow, TCPFlow

T = TypeVar("T")


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


@pytest.mark.parametrize("name", FLOW_CHECKS)
def test_conformance_default(name: str) -> None:
    run(check_flow(flow_pair, only=[name]))


@pytest.mark.parametrize("name", FLOW_CHECKS)
def test_conformance_small_queue_random_pieces(name: str) -> None:
    run(check_flow(lambda: flow_pair(capacity=1000, max_chunk=700, seed=7), only=[name]))


def test_conformance_async_factory_with_delay() -> None:
    async def make() -> tuple[MemoryFlow, MemoryFlow]:
        await asyncio.sleep(0)
        return flow_pair(capacity=4096, delay=0)

    run(check_flow(make, only=[n for n in FLOW_CHECKS if n != "large_transfer"]))


class Wrapped:
    """A flow that delegates to a memory flow; subclasses break one rule on purpose."""

    def __init__(self, inner: MemoryFlow) -> None:
        self.inner = inner

    async def read(self) -> Any:
        return await self.inner.read()

    async def write(self, buf: Any) -> Any:
        return await self.inner.write(buf)

    async def writev(self, bufs: Any) -> Any:
        return await self.inner.writev(bufs)

    async def close(self) -> None:
        await self.inner.close()


def test_suite_catches_a_broken_flow() -> None:
    class Lossy(Wrapped):
        """Drops every other write: the suite must notice."""

        n = 0

        async def write(self, buf: Any) -> Any:
            self.n += 1
            if self.n % 2:
                return Ok(None)
            return await super().write(buf)

    def make() -> tuple[Wrapped, MemoryFlow]:
        a, b = flow_pair()
        return Lossy(a), b

    with pytest.raises(FlowCheckFailed, match="partial_reads"):
        run(check_flow(make, only=["partial_reads"], timeout=2))


def test_suite_reports_a_hang() -> None:
    class Silent(Wrapped):
        async def close(self) -> None:
            pass  # never signals the end: the peer waits forever

    def make() -> tuple[Wrapped, MemoryFlow]:
        a, b = flow_pair()
        return Silent(a), b

    with pytest.raises(FlowCheckFailed, match=r"close_wakes_peer_reader: no progress"):
        run(check_flow(make, only=["close_wakes_peer_reader"], timeout=0.5))


def test_unknown_check_name() -> None:
    with pytest.raises(ValueError, match="only"):
        run(check_flow(flow_pair, only=["nope"]))


def test_exports() -> None:
    assert testing.flow_pair is flow_pair
    assert testing.check_flow is check_flow


def test_back_pressure_blocks_until_read() -> None:
    async def main() -> None:
        a, b = flow_pair(capacity=10)
        assert await a.write(b"0123456789") == Ok(None)
        assert a.queued == 10
        w = asyncio.ensure_future(a.write(b"abc"))
        await asyncio.sleep(0.01)
        assert not w.done()  # full: the write waits
        r = await b.read()
        assert isinstance(r, Ok) and bytes(r.value) == b"0123456789"
        assert await asyncio.wait_for(w, 1) == Ok(None)
        assert a.queued == 3

    run(main())


def test_write_larger_than_capacity_goes_in_pieces() -> None:
    async def main() -> None:
        a, b = flow_pair(capacity=4)
        w = asyncio.ensure_future(a.write(b"abcdefghij"))
        pieces = []
        for _ in range(3):
            r = await b.read()
            assert isinstance(r, Ok)
            pieces.append(bytes(r.value))
        assert pieces == [b"abcd", b"efgh", b"ij"]
        assert await w == Ok(None)

    run(main())


def test_max_chunk_splits_writes_reproducibly() -> None:
    async def sizes(seed: int) -> list[int]:
        a, b = flow_pair(max_chunk=5, seed=seed)
        await a.write(bytes(100))
        await a.close()
        out = []
        while isinstance(r := await b.read(), Ok):
            out.append(len(r.value))
        return out

    s1, s2 = run(sizes(3)), run(sizes(3))
    assert s1 == s2 and sum(s1) == 100 and max(s1) <= 5 and len(s1) > 20
    assert run(sizes(4)) != s1


def test_writer_may_reuse_its_buffer() -> None:
    async def main() -> None:
        a, b = flow_pair()
        buf = bytearray(b"abc")
        await a.write(buf)
        buf[:] = b"xyz"
        r = await b.read()
        assert isinstance(r, Ok) and bytes(r.value) == b"abc"

    run(main())


def test_peer_writes_after_close_give_eof() -> None:
    async def main() -> None:
        a, b = flow_pair(capacity=2)
        await b.write(b"ab")
        blocked = asyncio.ensure_future(b.write(b"cd"))
        await asyncio.sleep(0)
        await a.close()
        assert await blocked is EOF  # nobody will read it
        assert await b.write(b"x") is EOF
        assert a.closed and not b.closed

    run(main())


def test_fail_is_a_reset() -> None:
    async def main() -> None:
        a, b = flow_pair()
        await a.write(b"before")
        a.fail(Unknown("reset"))
        assert await a.read() == Error(Unknown("reset"))
        assert await a.write(b"x") == Error(Unknown("reset"))
        r = await b.read()
        assert isinstance(r, Ok) and bytes(r.value) == b"before"
        assert await b.read() == Error(Unknown("reset"))
        assert await b.write(b"x") == Error(Unknown("reset"))

    run(main())


def test_fail_wakes_blocked_reader() -> None:
    async def main() -> None:
        a, b = flow_pair()
        pending = asyncio.ensure_future(b.read())
        await asyncio.sleep(0)
        a.fail(Unknown("gone"))
        assert await asyncio.wait_for(pending, 1) == Error(Unknown("gone"))

    run(main())


@pytest.mark.parametrize(
    ("kw", "arg"),
    [({"capacity": 0}, "capacity"), ({"max_chunk": 0}, "max_chunk"), ({"delay": -1.0}, "delay")],
)
def test_bad_arguments(kw: dict[str, Any], arg: str) -> None:
    with pytest.raises(ValueError, match=arg):
        flow_pair(**kw)


class SocketFlow:
    """A FLOW over asyncio streams: shows the suite runs over a real transport unchanged."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer, self.closed = reader, writer, False

    async def read(self) -> Ok[memoryview] | Eof | Error[Unknown]:
        if self.closed:
            return EOF
        try:
            data = await self.reader.read(65536)
        except OSError as e:
            return Error(Unknown(str(e)))
        if self.closed or not data:
            return EOF
        return Ok(memoryview(data))

    async def write(self, buf: Buffer) -> Ok[None] | Eof | Error[Unknown]:
        if self.closed:
            return EOF
        if self.writer.transport.is_closing():
            return Error(Unknown("connection reset"))
        try:
            self.writer.write(bytes(buf))
            await self.writer.drain()
        except OSError as e:
            return EOF if self.closed else Error(Unknown(str(e)))
        return EOF if self.closed else Ok(None)

    async def writev(self, bufs: Buffers) -> Ok[None] | Eof | Error[Unknown]:
        return await self.write(b"".join(bytes(b) for b in bufs))

    async def close(self) -> None:
        if not self.closed:
            self.closed = True
            if self.writer.transport.get_write_buffer_size():
                self.writer.transport.abort()  # a write waits on it: wake it, do not linger
            self.writer.close()
            with contextlib.suppress(OSError):
                await self.writer.wait_closed()

    def abort(self) -> None:
        self.closed = True
        sock = self.writer.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.writer.transport.abort()  # closing with a zero linger sends RST


_socket_check: type[Flow[Unknown]] = SocketFlow


def test_conformance_over_loopback_tcp() -> None:
    async def main() -> None:
        accepted: asyncio.Queue[SocketFlow] = asyncio.Queue()

        async def on_connect(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
            await accepted.put(SocketFlow(r, w))

        server = await asyncio.start_server(on_connect, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]

        async def make() -> tuple[SocketFlow, SocketFlow]:
            r, w = await asyncio.open_connection("127.0.0.1", port)
            return SocketFlow(r, w), await accepted.get()

        try:
            await check_flow(make, timeout=20)
        finally:
            server.close()
            await server.wait_closed()

    run(main())


def test_a_pair_stands_in_for_tcp_flows() -> None:
    """flow_pair() ends satisfy v1.TCPFlow: a TCP handler runs on them unchanged."""

    async def greet(flow: TCPFlow[IPv4Address]) -> None:
        ip, port = flow.get_dest()
        await flow.write_nodelay(f"hello {ip}:{port}\n".encode())
        await flow.writev_nodelay([b"by", memoryview(b"e\n")])
        await flow.close()

    async def main() -> bytes:
        client, server = flow_pair()
        assert client.get_dest() == (IPv4Address("192.0.2.2"), 80)
        await greet(server)
        got = bytearray()
        while isinstance(r := await client.read(), Ok):
            got += r.value
        return bytes(got)

    assert run(main()) == b"hello 192.0.2.1:49152\nbye\n"
    ends = ((IPv4Address("10.0.0.1"), 1234), (IPv4Address("10.0.0.2"), 7))
    a, b = flow_pair(ends=ends)
    assert (a.get_dest(), b.get_dest()) == (ends[1], ends[0])
