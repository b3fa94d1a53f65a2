"""The dual stack (DirectStackV4 with ``ip6=``) over TAP against the Linux kernel in a
``mk-`` namespace: curl -6 against the website example, TCP both ways with socat over
IPv6, and UDP over both families on one listener.

The kernel side has 10.77.0.1/24, its link-local address and fd00:77::1/64; we have
10.77.0.2/24, our link-local address and fd00:77::2/64.
"""

from __future__ import annotations

import asyncio
import hashlib
import ipaddress
import os
import subprocess
import sys
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

import pytest
from examples.static_website import app as web
from scapy.layers.inet6 import ICMPv6ND_RA, ICMPv6NDOptPrefixInfo, ICMPv6NDOptSrcLLAddr
from tests.apprun import SITE
from tests.flowkit import drain_hash
from tests.ipstack.test_ipv6_kernel import (
    FAST,
    KERNEL_IP6,
    OUR_IP6,
    OUR_LL,
    OUR_MAC,
    SEND_RA,
    KernelNet6,
    knet6,
)
from tests.kernelnet import OUR_IP, run, socat_receives
from tests.netns import ns_exec
from tests.nstat import kernel_clean

from miragekit.kv import DirKV
from miragekit.link import TapNetif
from miragekit.result import Ok
from miragekit.stack import DirectStack, IPv6Config, Static
from miragekit.v1 import StackConfig

pytestmark = pytest.mark.kernel
__all__ = ["knet6"]  # the fixture

A6 = ipaddress.IPv6Address
MB = 1 << 20


class ListConsole:
    """Enough of a CONSOLE for the example: the lines it logs."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    async def log_s(self, s: str) -> None:
        self.lines.append(s)


async def with_dual(
    k: KernelNet6,
    body: Callable[[DirectStack], Awaitable[None]],
    cidrs: Sequence[str] = (f"{OUR_IP6}/64",),
    offload: bool = False,
    gateways: Sequence[str] = (),
) -> None:
    r = await TapNetif.connect(k.tap, mac=OUR_MAC, offload=offload)
    assert isinstance(r, Ok), r
    netif = r.value
    k.move_in()
    s = await DirectStack.connect(
        StackConfig("tap", None, netif, Static(f"{OUR_IP}/24")),
        ip6=IPv6Config(cidrs=cidrs, gateways=gateways, ndp=FAST),
    )
    assert isinstance(s, Ok), s
    stack = s.value
    try:
        assert set(stack.ipv6().get_ip()) == {OUR_LL, *(A6(c.split("/")[0]) for c in cidrs)}
        await body(stack)
        assert stack.tcpv4().internal_errors == 0 and stack.tcpv6().internal_errors == 0
        assert stack.ip_stack.internal_errors == 0
    finally:
        await stack.disconnect()
        await netif.disconnect()


def test_curl6_against_the_website_example(knet6: KernelNet6) -> None:
    index = (SITE / "index.html").read_bytes()

    async def body(stack: DirectStack) -> None:
        kv = DirKV(str(SITE))
        console = ListConsole()
        app = asyncio.get_running_loop().create_task(web.start(console, stack, kv))  # type: ignore[arg-type]
        try:
            await asyncio.sleep(0.1)
            urls = (
                f"http://[{OUR_IP6}]/",
                f"http://[{OUR_LL}%25{knet6.tap}]/index.html",
                f"http://{OUR_IP}/",
            )
            for url in urls:
                rc, out = await knet6.exec("curl", "-sS", "-g", "--max-time", "10", url)
                assert rc == 0, (url, out)
                assert out == index, url
            rc, out = await knet6.exec(
                "curl", "-6", "-sS", "-g", "-o", "/dev/null", "-w", "%{http_code}",
                f"http://[{OUR_IP6}]/nothing-here",
            )  # fmt: skip
            assert rc == 0 and out == b"404", out
            peers = " ".join(console.lines)
            assert KERNEL_IP6 in peers and "fe80::" in peers and "10.77.0.1" in peers, peers
            assert stack.counters()["tcp6"]["connections_opened"] >= 3
        finally:
            app.cancel()

    with kernel_clean(knet6.ns):
        run(with_dual(knet6, body))


OFFLOAD = pytest.mark.parametrize("offload", [False, True], ids=["plain", "offload"])


async def socat_sends(ns: str, stack: DirectStack, size: int, tmp_path: Path) -> None:
    """A socat in ``ns`` sends ``size`` random bytes over IPv6 to our dual-stack listener
    on port 9; they arrive byte-exact (SHA-256)."""
    src = tmp_path / "src.bin"
    src.write_bytes(os.urandom(size))
    want = hashlib.sha256(src.read_bytes()).hexdigest()
    done: asyncio.Future[tuple[int, str]] = asyncio.get_running_loop().create_future()

    async def sink(flow: Any) -> None:
        assert isinstance(flow.get_dest()[0], A6)
        done.set_result(await drain_hash(flow))

    stack.listen_tcpv4(port=9, callback=sink)  # dual-stack listener
    rc, out = await ns_exec(ns, "socat", "-u", f"FILE:{src}", f"TCP6:[{OUR_IP6}]:9", timeout=150)
    assert rc == 0, out
    assert await asyncio.wait_for(done, 60) == (size, want)
    assert stack.counters()["tcp6"]["bad_checksum"] == 0


def offload_tap(stack: DirectStack) -> TapNetif:
    """The TAP device, checking that IPv6 (as IPv4) uses its offloads."""
    netif = stack.ipv6().offload
    assert isinstance(netif, TapNetif) and stack.ipv4().offload is netif
    assert stack.tcpv6().config.tso_max == 65535 - 60
    return netif


@OFFLOAD
def test_socat6_sends_to_us(knet6: KernelNet6, tmp_path: Path, offload: bool) -> None:
    """With ``offload`` the kernel leaves TCP checksums to the device (``NEEDS_CSUM``) and
    hands over large (GRO'd) segments: IPv6 must take them as IPv4 does."""

    async def body(stack: DirectStack) -> None:
        await socat_sends(knet6.ns, stack, 8 * MB, tmp_path)
        if offload:
            c = offload_tap(stack).counters
            assert c.rx_gso > 0 and c.rx_csum_needed + c.rx_csum_valid > 0
            assert c.rx_gso_bytes > 4 * MB and c.rx_gso_bytes / c.rx_gso > 4 * 1500

    with kernel_clean(knet6.ns, offload=offload):
        run(with_dual(knet6, body, offload=offload), timeout=90)


@OFFLOAD
def test_we_send_to_socat6(knet6: KernelNet6, tmp_path: Path, offload: bool) -> None:
    """With ``offload`` our segments leave as TSO frames far above the MTU (virtio-net
    ``GSO_TCPV6``), their checksums completed by the kernel."""
    payload = os.urandom(8 * MB)
    dst = tmp_path / "dst.bin"

    async def body(stack: DirectStack) -> None:
        flow = await socat_receives(
            knet6,
            lambda: stack.tcpv6().create_connection((A6(KERNEL_IP6), 9000)),
            payload,
            dst,
            listen="TCP6-LISTEN",
        )
        # The kernel advertises MSS 1440 on a 1500 link; we send no more than that.
        assert flow.connection.mss <= 1440
        assert stack.ipv6().counters.tx_fragments == 0
        assert stack.counters()["tcp6"]["bad_checksum"] == 0  # the kernel's ACKs
        if offload:
            c = offload_tap(stack).counters
            assert c.tx_gso > 0 and c.tx_gso_bytes > 4 * MB
            assert c.tx_gso_bytes / c.tx_gso > 8 * 1500  # far fewer frames than at the MSS
            assert c.tx_csum_offload >= c.tx_gso
            assert stack.ipv6().counters.tx_offload >= c.tx_gso

    with kernel_clean(knet6.ns, offload=offload):
        run(with_dual(knet6, body, offload=offload), timeout=90)


@OFFLOAD
def test_udp_on_one_listener_over_both_families(knet6: KernelNet6, offload: bool) -> None:
    async def body(stack: DirectStack) -> None:
        async def echo(src: Any, dst: Any, sport: int, buf: memoryview) -> None:
            udp = stack.udpv6() if isinstance(src, A6) else stack.udpv4()
            await udp.write(buf, dest_ip=src, dest_port=sport, source_port=7)

        stack.listen_udpv4(port=7, callback=echo)
        for target in (f"UDP6:[{OUR_IP6}]:7", f"UDP4:{OUR_IP}:7", f"UDP6:[{OUR_LL}%{knet6.tap}]:7"):
            rc, out = await knet6.exec("socat", "-t", "2", "-", target, stdin=b"dual\n")
            assert rc == 0 and out == b"dual\n", (target, out)
        assert stack.udpv6().counters.rx_delivered == 2
        assert stack.udpv4().counters.rx_delivered == 1

    with kernel_clean(knet6.ns, offload=offload):
        run(with_dual(knet6, body, offload=offload))


def test_slaac_address_serves_tcp(knet6: KernelNet6) -> None:
    """No static IPv6 address: SLAAC from the kernel side's router advertisement, then
    the kernel's socat talks TCP to the dual-stack listener on that address."""

    async def body(stack: DirectStack) -> None:
        rc, out = await knet6.exec("cat", f"/sys/class/net/{knet6.tap}/address")
        assert rc == 0, out
        ra = (
            ICMPv6ND_RA(routerlifetime=1800, reachabletime=0, retranstimer=0)
            / ICMPv6NDOptSrcLLAddr(lladdr=out.decode().strip())
            / ICMPv6NDOptPrefixInfo(
                prefix="fd00:99::", prefixlen=64, L=1, A=1, validlifetime=86400,
                preferredlifetime=14400,
            )
        )  # fmt: skip
        rc, out = await knet6.exec(sys.executable, "-c", SEND_RA, knet6.tap, bytes(ra).hex())
        assert rc == 0, out
        mine = A6("fd00:99::ff:fe00:aa")
        for _ in range(100):
            if stack.ipv6().addresses().get(mine) == "preferred":
                break
            await asyncio.sleep(0.05)
        assert mine in stack.ipv6().get_ip(), stack.ipv6().addresses()

        async def echo(flow: Any) -> None:
            while isinstance(r := await flow.read(), Ok):
                await flow.write(r.value)

        stack.listen_tcpv4(port=7, callback=echo)
        data = os.urandom(100_000)
        rc, out = await knet6.exec("socat", "-t", "5", "-", f"TCP6:[{mine}]:7", stdin=data)
        assert rc == 0 and out == data, (rc, len(out))

    knet6.addrs.append("fd00:99::1/64")
    run(with_dual(knet6, body, cidrs=()))


def test_udp_we_send_to_the_kernel_on_both_families(knet6: KernelNet6) -> None:
    async def body(stack: DirectStack) -> None:
        for recv, udp, dest in (
            ("UDP6-RECV:9000", stack.udpv6(), A6(KERNEL_IP6)),
            ("UDP4-RECV:9001", stack.udpv4(), ipaddress.IPv4Address("10.77.0.1")),
        ):
            p = await asyncio.create_subprocess_exec(
                "ip", "netns", "exec", knet6.ns, "socat", "-u", recv, "STDOUT",
                stdout=subprocess.PIPE,
            )  # fmt: skip
            assert p.stdout is not None
            port = int(recv.rsplit(":", 1)[1])
            try:
                line = b""
                for _ in range(50):  # until socat is bound
                    await udp.write(b"from the dual stack\n", dest_ip=dest, dest_port=port)  # type: ignore[arg-type]
                    try:
                        line = await asyncio.wait_for(p.stdout.readline(), 0.2)
                        break
                    except TimeoutError:
                        continue
                assert line == b"from the dual stack\n", recv
            finally:
                p.kill()
                await p.wait()

    run(with_dual(knet6, body))
