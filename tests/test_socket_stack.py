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


def test_unread_data_stops_reading_the_socket_until_read() -> None:
    """A flow whose reader lags stops taking bytes from the kernel past a bound, so a fast
    peer is held back by TCP's window instead of filling our memory; it all arrives."""

    async def main() -> None:
        stack = await make_stack()
        port = free_port()
        go = asyncio.Event()
        got: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()

        async def lagging(flow: SocketFlow) -> None:
            await go.wait()
            got.set_result(await read_all(flow))

        stack.listen_tcpv4(port=port, callback=lagging)
        data = os.urandom(32 << 20)  # far more than the kernel's buffers hold
        _r, w = await asyncio.open_connection("127.0.0.1", port)

        async def send() -> None:
            w.write(data)
            await w.drain()
            w.write_eof()

        sender = asyncio.create_task(send())
        await asyncio.sleep(1.0)
        assert not sender.done(), "the flow read everything without being asked"
        go.set()
        await sender
        assert hashlib.sha256(await got).digest() == hashlib.sha256(data).digest()
        w.close()
        await stack.disconnect()

    run(main())


def test_write_after_shutdown_write_gives_eof_and_reading_goes_on() -> None:
    async def main() -> None:
        stack = await make_stack()
        port = free_port()
        results: asyncio.Future[tuple[Any, bytes]] = asyncio.get_running_loop().create_future()

        async def half(flow: SocketFlow) -> None:
            await flow.write(b"queued")
            await flow.shutdown_write()
            after = await flow.write(b"late")
            results.set_result((after, await read_all(flow)))

        stack.listen_tcpv4(port=port, callback=half)
        r, w = await asyncio.open_connection("127.0.0.1", port)
        assert await r.read() == b"queued"  # then our FIN: read() ends
        w.write(b"still heard")
        w.write_eof()
        after, heard = await results
        assert after is EOF
        assert heard == b"still heard"
        w.close()
        await stack.disconnect()

    run(main())


_OUT_OF_FDS = r"""
import asyncio, os, resource, sys
from ipaddress import IPv4Address
from miragekit.result import Ok
from miragekit.stack import SocketConfig, SocketStackV4

async def main() -> None:
    stack = (await SocketStackV4.connect(SocketConfig(ips=(IPv4Address("127.0.0.1"),)))).value

    async def echo(flow) -> None:
        r = await flow.read()
        if isinstance(r, Ok):
            await flow.write(r.value)

    stack.listen_tcpv4(port=int(sys.argv[1]), callback=echo)
    fds = len(os.listdir("/proc/self/fd"))
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    resource.setrlimit(resource.RLIMIT_NOFILE, (fds + 2, hard))  # room for two connections
    print("ready", flush=True)
    await asyncio.sleep(30)

asyncio.run(main())
"""


def test_listener_pauses_and_recovers_when_out_of_descriptors() -> None:
    """accept() failing with EMFILE leaves the connection queued and the listening socket
    readable: the listener stops watching it for a while (it would spin otherwise), then
    accepts the rest once served connections have given their descriptors back."""
    import subprocess
    import sys
    import time

    def cpu_seconds(pid: int) -> float:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    port = free_port()
    p = subprocess.Popen(
        [sys.executable, "-c", _OUT_OF_FDS, str(port)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert p.stdout is not None and p.stdout.readline().strip() == "ready"
        clients = [socket.create_connection(("127.0.0.1", port)) for _ in range(8)]
        cpu0 = cpu_seconds(p.pid)
        time.sleep(1.5)  # two accepted and waiting to read; six queued behind EMFILE
        assert cpu_seconds(p.pid) - cpu0 < 0.3, "the listener spins on EMFILE"
        for i, c in enumerate(clients):
            c.settimeout(10)
            c.sendall(b"hello %d" % i)
        for i, c in enumerate(clients):
            assert c.recv(100) == b"hello %d" % i
            c.close()
    finally:
        p.kill()
        p.wait()
