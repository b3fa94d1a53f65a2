"""The socket backend does not hold a response's second write for the peer's delayed ACK.

A server that writes a response as a header and then a body, in the same turn, on a
keep-alive connection: with Nagle's algorithm on the accepted socket the body waits for
the client's delayed ACK of the header (about 40 ms on Linux) on every request after the
first few. The backend's listening sockets carry TCP_NODELAY and the accepted ones
inherit it (asyncio does not set it on them: it does so only for sockets made with
``proto=IPPROTO_TCP``, and the backend leaves that out to save a system call per
connection).
"""

from __future__ import annotations

import asyncio
import socket
import statistics
import time
from ipaddress import IPv4Address

from tests.apprun import loopback_ip

from miragekit import v1
from miragekit.result import Ok
from miragekit.stack import SocketConfig, SocketFlow, SocketStackV4

HEADER = b"HTTP/1.1 200 OK\r\ncontent-length: 899\r\n\r\n"
BODY = b"x" * 899


async def _latencies(n: int) -> list[float]:
    ip = loopback_ip()
    r = await SocketStackV4.connect(SocketConfig(ips=(IPv4Address(ip),)))
    assert isinstance(r, Ok)
    stack = r.value

    async def serve(flow: v1.TCPFlow[IPv4Address]) -> None:
        while isinstance(await flow.read(), Ok):
            assert isinstance(await flow.write(HEADER), Ok)
            assert isinstance(await flow.write(BODY), Ok)

    stack.listen_tcpv4(port=18080, callback=serve)
    loop = asyncio.get_running_loop()
    client = socket.socket(socket.AF_INET, socket.SOCK_STREAM)  # the kernel's defaults
    client.setblocking(False)
    try:
        await loop.sock_connect(client, (ip, 18080))
        out = []
        for _ in range(n):
            t0 = time.perf_counter()
            await loop.sock_sendall(client, b"GET\n")
            got = b""
            while len(got) < len(HEADER) + len(BODY):
                chunk = await loop.sock_recv(client, 65536)
                assert chunk, "the server closed the connection"
                got += chunk
            out.append(time.perf_counter() - t0)
        return out
    finally:
        client.close()
        await stack.disconnect()


def test_keep_alive_responses_are_not_held_for_the_delayed_ack() -> None:
    lat = asyncio.run(_latencies(40))
    late = lat[10:]  # past the kernel's quick-ACK start
    median = statistics.median(late)
    assert median < 0.010, f"median keep-alive latency {median * 1000:.1f} ms (Nagle stall?)"


def test_accepted_sockets_carry_tcp_nodelay() -> None:
    async def main() -> int:
        ip = loopback_ip()
        r = await SocketStackV4.connect(SocketConfig(ips=(IPv4Address(ip),)))
        assert isinstance(r, Ok)
        stack = r.value
        got: asyncio.Future[int] = asyncio.get_running_loop().create_future()

        async def serve(flow: v1.TCPFlow[IPv4Address]) -> None:
            assert isinstance(flow, SocketFlow)
            sock = flow.sock
            got.set_result(sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))

        stack.listen_tcpv4(port=18081, callback=serve)
        try:
            _r, w = await asyncio.open_connection(ip, 18081)
            value = await asyncio.wait_for(got, 5)
            w.close()
            return value
        finally:
            await stack.disconnect()

    assert asyncio.run(main()) != 0
