"""Our TCP (DirectStackV4 on a VxlanNetif) against the Linux kernel's TCP, through a
kernel ``vxlan`` device: the underlay of tests/vxlan/test_kernel.py (namespaces ``k``
and ``o`` joined by a veth pair), 100 MB byte-exact each way and a small echo exchange.

The kernel's vxlan device has transmit checksum offload off (``Underlay.kernel_vxlan``),
so its inner TCP checksums arrive finished. The inner MTU is 1450 on both sides, so
both ends announce and use an MSS of 1410.
"""

from __future__ import annotations

import asyncio
import hashlib
import ipaddress
import logging
import os
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from tests.flowkit import drain_hash
from tests.netns import ns_exec, set_tx_checksum
from tests.nstat import kernel_clean
from tests.vxlan.test_kernel import K_IP, K_UNDER, O_IP, O_UNDER, VNI, Underlay, run, underlay

from miragekit.link import VxlanConfig, VxlanNetif
from miragekit.result import EOF, Error, Ok, Refused
from miragekit.stack import DirectStackV4, Static
from miragekit.v1 import StackConfig

pytestmark = pytest.mark.kernel
__all__ = ["underlay"]  # the fixture, re-exported for pytest

MB = 1 << 20
SIZE = 100 * MB


async def with_direct(u: Underlay, body: Callable[[DirectStackV4], Awaitable[None]]) -> None:
    u.kernel_vxlan("vx0", VNI, "remote", O_UNDER, inner=f"{K_IP}/24")
    cfg = VxlanConfig(VNI, local=(O_UNDER, 4789), remotes=[(K_UNDER, 4789)], netns=u.o)
    r = await VxlanNetif.connect(cfg)
    assert isinstance(r, Ok), r
    netif = r.value
    s = await DirectStackV4.connect(StackConfig("vxlan", None, netif, Static(f"{O_IP}/24")))
    assert isinstance(s, Ok), s
    stack = s.value
    try:
        assert netif.mtu == 1450
        await body(stack)
        tcp = stack.tcpv4()
        assert tcp.internal_errors == 0
        # Every inner checksum the kernel sent was finished (offload off): none dropped.
        assert tcp.stats["bad_checksum"] == 0, tcp.stats
        c = netif.counters
        assert c.rx_short == c.rx_bad_flags == c.rx_bad_vni == c.tx_errors == 0
        assert c.tx_oversize == 0  # no segment of ours exceeded the overlay's MTU
    finally:
        await stack.disconnect()
        await netif.disconnect()


async def connect_retrying(stack: DirectStackV4, port: int) -> Any:
    """Connect to the kernel at ``port``, retrying while its listener is not up yet."""
    for _ in range(200):
        r = await stack.tcpv4().create_connection((ipaddress.IPv4Address(K_IP), port))
        if isinstance(r, Ok):
            return r.value
        assert r == Error(Refused()), r
        await asyncio.sleep(0.05)
    raise AssertionError(f"the kernel never listened on port {port}")


def test_kernel_sends_100mb_to_us_through_the_overlay(underlay: Underlay, tmp_path: Path) -> None:
    src = tmp_path / "src.bin"
    src.write_bytes(os.urandom(SIZE))
    want = hashlib.sha256(src.read_bytes()).hexdigest()

    async def body(stack: DirectStackV4) -> None:
        done: asyncio.Future[tuple[int, str]] = asyncio.get_running_loop().create_future()

        async def sink(flow: Any) -> None:
            done.set_result(await drain_hash(flow))

        stack.listen_tcpv4(port=9, callback=sink)
        t0 = time.monotonic()
        rc, out = await ns_exec(
            underlay.k, "socat", "-u", f"FILE:{src}", f"TCP:{O_IP}:9", timeout=150
        )
        assert rc == 0, out
        assert await asyncio.wait_for(done, 60) == (SIZE, want)
        print(f"kernel -> us, 100 MB through VXLAN: {time.monotonic() - t0:.1f} s")
        # The kernel clamped its segments to the MSS we announced (1450 - 40).
        assert stack.tcpv4().config.mss == 1410

    with kernel_clean(underlay.k):
        run(with_direct(underlay, body), timeout=200)


def test_we_send_100mb_to_the_kernel_through_the_overlay(
    underlay: Underlay, tmp_path: Path
) -> None:
    payload = os.urandom(SIZE)
    dst = tmp_path / "dst.bin"

    async def body(stack: DirectStackV4) -> None:
        server = await asyncio.create_subprocess_exec(
            "ip", "netns", "exec", underlay.k,
            "socat", "-u", "TCP-LISTEN:9000,reuseaddr", f"CREATE:{dst}",
        )  # fmt: skip
        try:
            t0 = time.monotonic()
            flow = await connect_retrying(stack, 9000)
            # The kernel announced 1410 too; we send nothing larger.
            assert flow.connection.mss == 1410 - 12  # less the timestamp option
            view = memoryview(payload)
            for i in range(0, len(payload), MB):
                assert await flow.write(view[i : i + MB]) == Ok(None)
            await flow.close()
            assert await asyncio.wait_for(server.wait(), 150) == 0
            print(f"us -> kernel, 100 MB through VXLAN: {time.monotonic() - t0:.1f} s")
        finally:
            if server.returncode is None:
                server.kill()
                await server.wait()
        assert hashlib.sha256(dst.read_bytes()).digest() == hashlib.sha256(payload).digest()

    with kernel_clean(underlay.k):
        run(with_direct(underlay, body), timeout=200)


ECHO_CLIENT = """
import socket, sys
s = socket.create_connection((sys.argv[1], 7), timeout=10)
for msg in (b"hello overlay", b"x" * 5000, b"bye"):
    s.sendall(msg)
    got = b""
    while len(got) < len(msg):
        part = s.recv(65536)
        if not part:
            sys.exit("eof")
        got += part
    assert got == msg, (len(got), len(msg))
print("mss", s.getsockopt(socket.IPPROTO_TCP, socket.TCP_MAXSEG), flush=True)
s.shutdown(socket.SHUT_WR)
print("eof" if s.recv(10) == b"" else "data", flush=True)
"""


def test_echo_both_ways_through_the_overlay(underlay: Underlay) -> None:
    """The kernel talks to our echo server; we talk to a kernel echo server (socat)."""

    async def body(stack: DirectStackV4) -> None:
        async def echo(flow: Any) -> None:
            while isinstance(r := await flow.read(), Ok):
                await flow.write(r.value)
            await flow.close()

        stack.listen_tcpv4(port=7, callback=echo)
        rc, out = await ns_exec(underlay.k, "python3", "-c", ECHO_CLIENT, O_IP, timeout=30)
        assert rc == 0, out
        # The kernel took our MSS (1450 - 40), less its timestamp option (12).
        assert out.split() == [b"mss", b"1398", b"eof"], out

        server = await asyncio.create_subprocess_exec(
            "ip", "netns", "exec", underlay.k, "socat", "TCP-LISTEN:7007,reuseaddr", "PIPE",
        )  # fmt: skip
        try:
            flow = await connect_retrying(stack, 7007)
            for msg in (b"ping through vxlan", os.urandom(20000)):
                assert await flow.write(msg) == Ok(None)
                got = b""
                while len(got) < len(msg):
                    r = await asyncio.wait_for(flow.read(), 10)
                    assert isinstance(r, Ok), r
                    got += bytes(r.value)
                assert got == msg
            await flow.close()
            assert await asyncio.wait_for(flow.read(), 10) is EOF
            assert await asyncio.wait_for(server.wait(), 10) == 0
        finally:
            if server.returncode is None:
                server.kill()
                await server.wait()

    with kernel_clean(underlay.k):
        run(with_direct(underlay, body), timeout=60)


def test_unfinished_checksums_are_dropped_and_counted(
    underlay: Underlay, caplog: pytest.LogCaptureFixture
) -> None:
    """Why the kernel's vxlan device needs ``tx`` offload off: with it on, the kernel's
    SYNs arrive with only the pseudo-header sum in the checksum field; we drop and count
    them rather than accept unchecked data, so the connection never opens. The link
    says so once, naming the peer and the command that fixes it."""

    async def body(stack: DirectStackV4) -> None:
        set_tx_checksum(underlay.k, "vx0", True)
        stack.listen_tcpv4(port=7, callback=lambda flow: flow.close())
        rc, out = await ns_exec(
            underlay.k, "socat", "-T", "2", "-", f"TCP:{O_IP}:7,connect-timeout=2", stdin=b"x"
        )
        assert rc != 0, out
        stats = stack.tcpv4().stats
        assert stats["bad_checksum"] >= 1 and stats["connections_opened"] == 0, stats
        stats["bad_checksum"] = 0  # for the common checks

    with caplog.at_level(logging.WARNING, logger="miragekit.link._vxlan"):
        run(with_direct(underlay, body), timeout=30)
    said = [r.getMessage() for r in caplog.records if "unfinished checksums" in r.getMessage()]
    assert len(said) == 1, said  # once, though every SYN retry was dropped
    assert f"VXLAN peer {K_UNDER} sends TCP" in said[0] and "ethtool -K" in said[0], said
    assert "tx off" in said[0]
