"""DirectStackV4 over TAP against the Linux kernel's TCP in a ``mk-`` namespace."""

from __future__ import annotations

import asyncio
import hashlib
import ipaddress
import os
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from tests.flowkit import drain_hash, http_once
from tests.kernelnet import KERNEL_IP, OUR_IP, KernelNet, run, socat_receives
from tests.nstat import kernel_clean

from miragekit.link import TapNetif
from miragekit.result import Ok
from miragekit.stack import DirectStackV4, Static
from miragekit.v1 import StackConfig

pytestmark = pytest.mark.kernel

MB = 1 << 20


async def with_direct(k: KernelNet, body: Callable[[DirectStackV4], Awaitable[None]]) -> None:
    r = await TapNetif.connect(k.tap)
    assert isinstance(r, Ok), r
    netif = r.value
    k.move_in()
    s = await DirectStackV4.connect(StackConfig("tap", None, netif, Static(f"{OUR_IP}/24")))
    assert isinstance(s, Ok), s
    stack = s.value
    try:
        await body(stack)
        assert stack.tcpv4().internal_errors == 0
    finally:
        await stack.disconnect()
        await netif.disconnect()


def test_kernel_sends_100mb_to_us(knet: KernelNet, tmp_path: Path) -> None:
    src = tmp_path / "src.bin"
    src.write_bytes(os.urandom(100 * MB))
    want = hashlib.sha256(src.read_bytes()).hexdigest()

    async def body(stack: DirectStackV4) -> None:
        done: asyncio.Future[tuple[int, str]] = asyncio.get_running_loop().create_future()

        async def sink(flow: Any) -> None:
            done.set_result(await drain_hash(flow))

        stack.listen_tcpv4(port=9, callback=sink)
        rc, out = await knet.exec("socat", "-u", f"FILE:{src}", f"TCP:{OUR_IP}:9", timeout=150)
        assert rc == 0, out
        assert await asyncio.wait_for(done, 60) == (100 * MB, want)

    with kernel_clean(knet.ns):
        run(with_direct(knet, body), timeout=200)


def test_we_send_100mb_to_the_kernel(knet: KernelNet, tmp_path: Path) -> None:
    payload = os.urandom(100 * MB)
    dst = tmp_path / "dst.bin"

    async def body(stack: DirectStackV4) -> None:
        await socat_receives(
            knet,
            lambda: stack.tcpv4().create_connection((ipaddress.IPv4Address(KERNEL_IP), 9000)),
            payload,
            dst,
        )

    with kernel_clean(knet.ns):
        run(with_direct(knet, body), timeout=200)


HTTP_BODY = os.urandom(3 * MB)


def test_curl_fetches_from_our_stack(knet: KernelNet, tmp_path: Path) -> None:
    out = tmp_path / "page"

    async def body(stack: DirectStackV4) -> None:
        stack.listen_tcpv4(port=80, callback=http_once(HTTP_BODY))
        rc, msg = await knet.exec(
            "curl", "-sS", "--max-time", "30", "-o", str(out), f"http://{OUR_IP}/", timeout=40
        )
        assert rc == 0, msg
        assert out.read_bytes() == HTTP_BODY

    with kernel_clean(knet.ns):
        run(with_direct(knet, body), timeout=60)


CLIENT = """
import socket, sys, time
s = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=10)
try:
    socket.create_connection((sys.argv[1], int(sys.argv[3])), timeout=5)
    print("closed-port: connected?!")
except ConnectionRefusedError:
    print("closed-port: refused")
print("lport", s.getsockname()[1], flush=True)
sys.stdin.readline()            # the test sends a blind RST meanwhile
s.sendall(b"still alive")
print("echo", s.recv(100).decode(), flush=True)
"""

BLIND_RST = """
import sys
from scapy.all import IP, TCP, send, conf
conf.verb = 0
src, dst, sport, dport = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
for seq in (1, 0x40000000, 0x80000000, 0xC0000000):   # far outside the window
    send(IP(src=src, dst=dst) / TCP(sport=sport, dport=dport, flags="R", seq=seq))
"""


def test_rst_for_closed_port_and_blind_rst_ignored(knet: KernelNet) -> None:
    async def body(stack: DirectStackV4) -> None:
        async def echo(flow: Any) -> None:
            while isinstance(r := await flow.read(), Ok):
                await flow.write(r.value)

        stack.listen_tcpv4(port=7, callback=echo)
        client = await asyncio.create_subprocess_exec(
            "ip",
            "netns",
            "exec",
            knet.ns,
            sys.executable,
            "-c",
            CLIENT,
            OUR_IP,
            "7",
            "81",
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
        )
        assert client.stdout is not None and client.stdin is not None
        assert (await client.stdout.readline()).strip() == b"closed-port: refused"
        lport = int((await client.stdout.readline()).split()[1])
        rc, out = await knet.exec(
            sys.executable, "-c", BLIND_RST, KERNEL_IP, OUR_IP, str(lport), "7"
        )
        assert rc == 0, out
        await asyncio.sleep(0.2)
        client.stdin.write(b"go\n")
        await client.stdin.drain()
        assert (await client.stdout.readline()).strip() == b"echo still alive"
        assert await client.wait() == 0
        assert stack.tcpv4().stats["rst_sent"] >= 1

    run(with_direct(knet, body), timeout=60)
