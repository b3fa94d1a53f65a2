"""TCP Fast Open against the Linux kernel over TAP, both ways (``net.ipv4.tcp_fastopen=3``
in the namespace), read from the kernel's own counters.

Our client to a kernel server (a listener with ``TCP_FASTOPEN``): the first connection
asks for a cookie (``TcpExtTCPFastOpenCookieReqd``), the next ones send their request in
the SYN and the kernel takes it (``TcpExtTCPFastOpenPassive``). A kernel client
(``sendto(..., MSG_FASTOPEN)``) to our server: it gets our cookie, then its SYN data is
acknowledged by our SYN-ACK (``TcpExtTCPFastOpenActive``), and each request reaches our
application exactly once.
"""

from __future__ import annotations

import asyncio
import ipaddress
import sys
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from tests.kernelnet import KERNEL_IP, OUR_IP, KernelNet, direct_on_tap, run
from tests.nstat import kernel_clean

from miragekit.result import Ok
from miragekit.stack import DirectStackV4

pytestmark = pytest.mark.kernel

VISITS = 3

KERNEL_SERVER = """
import socket, sys
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.setsockopt(socket.IPPROTO_TCP, socket.TCP_FASTOPEN, 16)
s.bind((sys.argv[1], int(sys.argv[2])))
s.listen(16)
print("listening", flush=True)
for _ in range(int(sys.argv[3])):
    c, _ = s.accept()
    data = b""
    while not data.endswith(b"\\n"):
        chunk = c.recv(4096)
        if not chunk:
            break
        data += chunk
    c.sendall(b"got " + data)
    c.close()
"""

KERNEL_CLIENT = """
import socket, sys
MSG_FASTOPEN = getattr(socket, "MSG_FASTOPEN", 0x20000000)
for i in range(int(sys.argv[3])):
    s = socket.socket()
    s.sendto(f"hello {i}\\n".encode(), MSG_FASTOPEN, (sys.argv[1], int(sys.argv[2])))
    s.settimeout(10)  # after the blocking connect-and-send
    reply = b""
    while chunk := s.recv(4096):
        reply += chunk
    print(reply.decode().strip(), flush=True)
    s.close()
"""


def with_stack(k: KernelNet, body: Callable[[DirectStackV4], Awaitable[None]]) -> Any:
    async def both(stack: DirectStackV4, _dev: Any) -> None:
        await body(stack)

    return direct_on_tap(k, both, sysctls=["net.ipv4.tcp_fastopen=3"])


def test_our_client_sends_data_in_the_syn_to_the_kernel(knet: KernelNet) -> None:
    replies: list[bytes] = []
    acked: list[bool] = []

    async def body(stack: DirectStackV4) -> None:
        server = await asyncio.create_subprocess_exec(
            "ip", "netns", "exec", knet.ns, sys.executable, "-c", KERNEL_SERVER,
            KERNEL_IP, "9000", str(VISITS),
            stdout=asyncio.subprocess.PIPE,
        )  # fmt: skip
        try:
            assert server.stdout is not None
            assert await asyncio.wait_for(server.stdout.readline(), 10) == b"listening\n"
            for i in range(VISITS):
                r = await stack.tcpv4().create_connection(
                    (ipaddress.IPv4Address(KERNEL_IP), 9000), fastopen=f"hello {i}\n".encode()
                )
                assert isinstance(r, Ok), r
                flow = r.value
                reply = b""
                while isinstance(got := await flow.read(), Ok):
                    reply += bytes(got.value)
                replies.append(reply)
                fo = flow.connection.fastopen
                assert fo is not None
                acked.append(fo.acked)
                await flow.close()
            assert await asyncio.wait_for(server.wait(), 10) == 0
        finally:
            if server.returncode is None:
                server.kill()
                await server.wait()

    with kernel_clean(knet.ns) as k:
        run(with_stack(knet, body), timeout=60)
    assert replies == [f"got hello {i}\n".encode() for i in range(VISITS)]
    # The first SYN asked for a cookie; the kernel took the data of every later one.
    assert acked == [False] + [True] * (VISITS - 1)
    d = k.delta
    assert d.get("TcpExtTCPFastOpenCookieReqd", 0) == 1
    assert d.get("TcpExtTCPFastOpenPassive", 0) == VISITS - 1
    assert d.get("TcpExtTCPFastOpenPassiveFail", 0) == 0


def test_kernel_client_sends_data_in_the_syn_to_us(knet: KernelNet) -> None:
    requests: list[bytes] = []
    stats: dict[str, int] = {}

    async def body(stack: DirectStackV4) -> None:
        async def answer(flow: Any) -> None:
            data = b""
            while not data.endswith(b"\n"):
                r = await flow.read()
                assert isinstance(r, Ok), r
                data += bytes(r.value)
            requests.append(data)
            assert await flow.write(b"got " + data) == Ok(None)

        stack.listen_tcpv4(port=9, callback=answer, fastopen=True)
        rc, out = await knet.exec(
            sys.executable, "-c", KERNEL_CLIENT, OUR_IP, "9", str(VISITS), timeout=30
        )
        assert rc == 0, out
        assert out.decode().splitlines() == [f"got hello {i}" for i in range(VISITS)]
        stats.update(stack.tcpv4().stats)

    with kernel_clean(knet.ns) as k:
        run(with_stack(knet, body), timeout=60)
    # Each request reached the application once: from the SYN, or after the handshake.
    assert requests == [f"hello {i}\n".encode() for i in range(VISITS)]
    assert stats["fastopen_cookies_sent"] == 1
    assert stats["fastopen_accepted"] == VISITS - 1
    d = k.delta
    # The kernel client saw its SYN data acknowledged by our SYN-ACK.
    assert d.get("TcpExtTCPFastOpenActive", 0) == VISITS - 1
    assert d.get("TcpExtTCPFastOpenActiveFail", 0) == 0
