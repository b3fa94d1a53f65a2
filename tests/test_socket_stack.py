"""The socket STACKV4 on loopback: TCP and UDP with the direct stack's semantics."""

from __future__ import annotations

import asyncio
import hashlib
import os
import socket
from collections.abc import Awaitable, Callable
from ipaddress import IPv4Address
from typing import Any

import pytest

from miragekit import v1
from miragekit.result import EOF, Error, Ok, Refused, Timeout, Unknown
from miragekit.stack import SocketConfig, SocketFlow, SocketStackV4

LO = IPv4Address("127.0.0.1")


def run(coro: Awaitable[Any]) -> Any:
    async def main() -> Any:
        async with asyncio.timeout(60):
            return await coro

    return asyncio.run(main())


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


async def make_stack() -> SocketStackV4:
    match await SocketStackV4.connect(SocketConfig(ips=(LO,), connect_timeout=1.0)):
        case Ok(stack):
            return stack
    raise AssertionError("connect failed")


async def connected(stack: SocketStackV4, port: int) -> SocketFlow:
    return (await stack.tcpv4().create_connection((LO, port))).expect(f"connect to {port}")


async def read_all(flow: v1.Flow[Any]) -> bytes:
    out = bytearray()
    while True:
        match await flow.read():
            case Ok(data):
                out += data
            case _:
                return bytes(out)


def test_tcp_echo_and_eof() -> None:
    async def main() -> None:
        stack = await make_stack()
        port = free_port()
        seen: list[tuple[IPv4Address, int]] = []

        async def echo(flow: SocketFlow) -> None:
            seen.append(flow.get_dest())
            while True:
                match await flow.read():
                    case Ok(data):
                        assert await flow.write(data) == Ok(None)
                    case _:
                        return

        stack.listen_tcpv4(port=port, callback=echo)
        await asyncio.sleep(0.05)
        flow = await connected(stack, port)
        assert flow.get_dest() == (LO, port)
        payload = os.urandom(3 << 20)
        sender = asyncio.create_task(flow.writev([payload[:1000], payload[1000:]]))
        got = bytearray()
        while len(got) < len(payload):
            r = await flow.read()
            assert isinstance(r, Ok)
            got += r.value
        assert await sender == Ok(None)
        assert hashlib.sha256(got).digest() == hashlib.sha256(payload).digest()
        await flow.close()
        assert await flow.read() is EOF
        assert await flow.write(b"x") is EOF
        assert seen and seen[0][0] == LO
        await stack.disconnect()

    run(main())


def test_listener_flow_closed_when_callback_returns_and_peer_sees_eof() -> None:
    async def main() -> None:
        stack = await make_stack()
        port = free_port()

        async def hello(flow: SocketFlow) -> None:
            await flow.write(b"hello ")
            await flow.write_nodelay(b"world")

        stack.listen_tcpv4(port=port, callback=hello)
        await asyncio.sleep(0.05)
        flow = await connected(stack, port)
        assert await read_all(flow) == b"hello world"
        await flow.close()
        await stack.disconnect()

    run(main())


def test_half_close_peer_keeps_sending_after_our_fin() -> None:
    async def main() -> None:
        stack = await make_stack()
        port = free_port()

        async def reply_after_eof(flow: SocketFlow) -> None:
            data = await read_all(flow)
            await flow.write(data[::-1])

        stack.listen_tcpv4(port=port, callback=reply_after_eof)
        await asyncio.sleep(0.05)
        r, w = await asyncio.open_connection("127.0.0.1", port)
        w.write(b"abc")
        w.write_eof()
        assert await r.read() == b"cba"
        w.close()
        await stack.disconnect()

    run(main())


def test_refused_on_closed_port() -> None:
    async def main() -> None:
        stack = await make_stack()
        assert await stack.tcpv4().create_connection((LO, free_port())) == Error(Refused())
        await stack.disconnect()

    run(main())


def test_timeout_when_nobody_answers() -> None:
    async def main() -> None:
        stack = await make_stack()
        # A listener that never accepts, with its queue full: further SYNs are dropped.
        lst = socket.socket()
        lst.bind(("127.0.0.1", 0))
        lst.listen(0)
        port = lst.getsockname()[1]
        fill = socket.socket()
        fill.connect(("127.0.0.1", port))
        try:
            assert await stack.tcpv4().create_connection((LO, port)) == Error(Timeout())
        finally:
            fill.close()
            lst.close()
            await stack.disconnect()

    run(main())


def test_reset_by_peer_is_an_error() -> None:
    async def main() -> None:
        stack = await make_stack()
        lst = socket.socket()
        lst.bind(("127.0.0.1", 0))
        lst.listen(1)
        port = lst.getsockname()[1]
        flow = await connected(stack, port)
        conn, _ = lst.accept()
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        conn.close()  # linger 0: RST
        lst.close()
        r = await flow.read()
        assert isinstance(r, Error) and isinstance(r.error, Unknown)
        assert "reset" in r.error.msg
        await flow.close()
        await stack.disconnect()

    run(main())


def test_new_tcp_binding_replaces_the_old() -> None:
    async def main() -> None:
        stack = await make_stack()
        port = free_port()

        def greeter(text: bytes) -> Callable[[SocketFlow], Awaitable[None]]:
            async def cb(flow: SocketFlow) -> None:
                await flow.write(text)

            return cb

        stack.listen_tcpv4(port=port, callback=greeter(b"first"))
        await asyncio.sleep(0.05)
        stack.listen_tcpv4(port=port, callback=greeter(b"second"))
        await asyncio.sleep(0.05)
        flow = await connected(stack, port)
        assert await read_all(flow) == b"second"
        await flow.close()
        await stack.disconnect()

    run(main())


def test_udp_both_directions_and_replacement() -> None:
    async def main() -> None:
        stack = await make_stack()
        port = free_port(socket.SOCK_DGRAM)
        got: list[tuple[IPv4Address, IPv4Address, int, bytes]] = []
        event = asyncio.Event()

        async def first(src: IPv4Address, dst: IPv4Address, sport: int, buf: memoryview) -> None:
            got.append((src, dst, sport, b"first:" + bytes(buf)))
            event.set()

        async def echo(src: IPv4Address, dst: IPv4Address, sport: int, buf: memoryview) -> None:
            got.append((src, dst, sport, bytes(buf)))
            await stack.udpv4().write(
                bytes(buf).upper(), dest_ip=src, dest_port=sport, source_port=port
            )
            event.set()

        stack.listen_udpv4(port=port, callback=first)
        stack.listen_udpv4(port=port, callback=echo)
        peer = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        peer.bind(("127.0.0.1", 0))
        peer.setblocking(False)
        loop = asyncio.get_running_loop()
        await loop.sock_sendto(peer, b"ping", ("127.0.0.1", port))
        async with asyncio.timeout(5):
            await event.wait()
            data, addr = await loop.sock_recvfrom(peer, 100)
        assert got == [(LO, LO, peer.getsockname()[1], b"ping")]
        assert (data, addr) == (b"PING", ("127.0.0.1", port))
        # From an ephemeral port to a plain socket.
        await stack.udpv4().write(b"hi", dest_ip=LO, dest_port=peer.getsockname()[1])
        async with asyncio.timeout(5):
            data, addr = await loop.sock_recvfrom(peer, 100)
        assert data == b"hi" and addr[1] != port
        peer.close()
        await stack.disconnect()

    run(main())


def test_bad_arguments_raise() -> None:
    async def main() -> None:
        stack = await make_stack()
        with pytest.raises(ValueError, match="port"):
            stack.listen_tcpv4(port=0, callback=lambda f: asyncio.sleep(0))
        with pytest.raises(ValueError, match="dest_port"):
            await stack.udpv4().write(b"x", dest_ip=LO, dest_port=70000)
        with pytest.raises(NotImplementedError, match="host kernel"):
            stack.ipv4().allocate_frame(dst=LO, proto="UDP")
        assert stack.ipv4().get_ip() == [LO]
        assert stack.ipv4().get_source(dst=LO) == LO
        await stack.disconnect()

    run(main())
    with pytest.raises(ValueError, match="ips"):
        SocketConfig(ips=())


def test_flow_conformance_suite_on_socket_flows() -> None:
    from miragekit.testing import check_flow

    async def main() -> None:
        stack = await make_stack()
        port = free_port()
        accepted: asyncio.Queue[SocketFlow] = asyncio.Queue()
        done = asyncio.Event()

        async def hold(flow: SocketFlow) -> None:
            await accepted.put(flow)
            await done.wait()

        stack.listen_tcpv4(port=port, callback=hold)
        await asyncio.sleep(0.05)

        async def make_pair() -> tuple[SocketFlow, SocketFlow]:
            a = await connected(stack, port)
            return a, await accepted.get()

        await check_flow(make_pair)
        done.set()
        await stack.disconnect()

    run(main())
