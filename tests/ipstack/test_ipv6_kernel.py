"""Our IPv6 stack on a TAP device against the Linux kernel in a ``mk-`` namespace.

The kernel side has its link-local address and fd00:77::1/64; we have our link-local
address (from the MAC) and, where a test says so, fd00:77::2/64 or an address from a
router advertisement the test sends from a raw socket in the namespace.
"""

from __future__ import annotations

import asyncio
import ipaddress
import os
import subprocess
import sys
import uuid
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field

import pytest
from scapy.layers.inet6 import ICMPv6ND_RA, ICMPv6NDOptPrefixInfo, ICMPv6NDOptSrcLLAddr
from tests.ipstack.test_kernel import KernelNet, run
from tests.nstat import kernel_clean

from miragekit.link import TapNetif
from miragekit.net import IPv6Stack, NdpConfig
from miragekit.net._ndp import State
from miragekit.result import Ok

pytestmark = pytest.mark.kernel

A = ipaddress.IPv6Address
KERNEL_IP6 = "fd00:77::1"


def _sh(*args: str) -> None:
    subprocess.run(args, check=True, capture_output=True)


@dataclass
class KernelNet6(KernelNet):
    """The IPv4 kernel side (10.77.0.1/24), plus IPv6 addresses (without DAD)."""

    addrs: list[str] = field(default_factory=lambda: [f"{KERNEL_IP6}/64"])

    def move_in(self) -> None:
        super().move_in()
        for a in self.addrs:
            _sh("ip", "-n", self.ns, "addr", "add", a, "dev", self.tap, "nodad")


@pytest.fixture
def knet6() -> Iterator[KernelNet6]:
    """As ``knet``, but with IPv6 on in the namespace (the kernel's DAD off, so that its
    addresses are usable at once)."""
    if os.geteuid() != 0:
        pytest.fail("kernel tests need root (run as root, as CI does)")
    t = uuid.uuid4().hex[:8]
    k = KernelNet6(ns=f"mk-{t}", tap=f"mk-t{t}")
    _sh("ip", "netns", "add", k.ns)
    try:
        for scope in ("default", "all"):
            _sh("ip", "netns", "exec", k.ns, "sysctl", "-qw", f"net.ipv6.conf.{scope}.accept_dad=0")
        _sh("ip", "tuntap", "add", "mode", "tap", "name", k.tap)
        yield k
    finally:
        subprocess.run(["ip", "netns", "del", k.ns], capture_output=True)
        subprocess.run(["ip", "link", "del", k.tap], capture_output=True)


OUR_MAC = "02:00:00:00:00:aa"
OUR_LL = A("fe80::ff:fe00:aa")
OUR_IP6 = "fd00:77::2"
FAST = NdpConfig(max_dad_delay=0.05, retrans_timer=0.3, max_rtr_solicitation_delay=0.05)


async def with_stack6(
    k: KernelNet6,
    body: Callable[[IPv6Stack], Awaitable[None]],
    *,
    cidrs: Sequence[str] = (),
    ndp: NdpConfig = FAST,
    ready: bool = True,
) -> None:
    r = await TapNetif.connect(k.tap, mac=OUR_MAC)
    assert isinstance(r, Ok), r
    netif = r.value
    k.move_in()
    stack = await IPv6Stack.connect(netif, cidrs=cidrs, ndp=ndp)
    try:
        if ready:
            assert await stack.wait_ready(timeout=5), stack.ipv6.addresses()
        await body(stack)
        assert stack.internal_errors == 0
    finally:
        await stack.disconnect()
        await netif.disconnect()


async def ping(k: KernelNet6, dst: str, *args: str, count: int = 3) -> bytes:
    rc, out = await k.exec(
        "ping", "-6", "-c", str(count), "-i", "0.2", "-W", "2", *args, dst, timeout=30
    )
    assert rc == 0, out
    assert f"{count} received".encode() in out, out
    return out


def test_ping6_link_local(knet6: KernelNet6) -> None:
    async def body(stack: IPv6Stack) -> None:
        assert stack.ipv6.get_ip() == [OUR_LL]
        assert stack.ipv6.ndp.counters.dad_succeeded == 1
        await ping(knet6, f"{OUR_LL}%{knet6.tap}")
        assert stack.ipv6.icmp_counters.tx_echo_replies == 3
        ndp = stack.ipv6.ndp.counters
        assert ndp.na_sent >= 1  # the kernel resolved us
        assert ndp.rs_sent >= 1  # we looked for routers once the link-local was ours

    with kernel_clean(knet6.ns):
        run(with_stack6(knet6, body))


def test_ping6_global_and_fragmented_both_ways(knet6: KernelNet6) -> None:
    async def body(stack: IPv6Stack) -> None:
        assert A(OUR_IP6) in stack.ipv6.get_ip()
        await ping(knet6, OUR_IP6, count=2)
        out = await ping(knet6, OUR_IP6, "-s", "8000", count=2)
        assert b"8008 bytes from" in out
        assert stack.ipv6.reassembler.counters.reassembled == 2
        # 8048 bytes of ICMPv6 in 1448-byte pieces: 6 fragments per reply
        assert stack.ipv6.counters.tx_fragments == 2 * 6
        # The kernel's solicitations taught us its MAC (RFC 4861 7.2.3).
        kernel = A(KERNEL_IP6).packed
        assert stack.ipv6.ndp.lookup(kernel) is not None
        assert stack.ipv6.ndp.state(kernel) is not None

    with kernel_clean(knet6.ns):
        run(with_stack6(knet6, body, cidrs=[f"{OUR_IP6}/64"]))


def test_udp6_kernel_to_us_echo(knet6: KernelNet6) -> None:
    async def body(stack: IPv6Stack) -> None:
        async def echo(src: A, dst: A, sport: int, buf: memoryview) -> None:
            await stack.udp.write(buf, dest_ip=src, dest_port=sport, source_port=7)

        stack.listen_udpv6(port=7, callback=echo)
        target = f"UDP6:[{OUR_IP6}]:7"
        rc, out = await knet6.exec("socat", "-t", "2", "-", target, stdin=b"hello six\n")
        assert rc == 0 and out == b"hello six\n", out
        big = bytes(range(256)) * 20  # fragmented both ways
        rc, out = await knet6.exec("socat", "-t", "2", "-", target, stdin=big)
        assert rc == 0 and out == big, (rc, len(out))
        ll = f"UDP6:[{OUR_LL}%{knet6.tap}]:7"
        rc, out = await knet6.exec("socat", "-t", "2", "-", ll, stdin=b"link-local\n")
        assert rc == 0 and out == b"link-local\n", out
        assert stack.udp.counters.rx_delivered == 3

    with kernel_clean(knet6.ns):
        run(with_stack6(knet6, body, cidrs=[f"{OUR_IP6}/64"]))


def test_udp6_us_to_kernel(knet6: KernelNet6) -> None:
    async def body(stack: IPv6Stack) -> None:
        p = await asyncio.create_subprocess_exec(
            "ip", "netns", "exec", knet6.ns, "socat", "-u", "UDP6-RECV:9000", "STDOUT",
            stdout=subprocess.PIPE,
        )  # fmt: skip
        assert p.stdout is not None
        try:
            line = b""
            for _ in range(50):  # until socat is bound
                await stack.udp.write(b"from the stack\n", dest_ip=A(KERNEL_IP6), dest_port=9000)
                try:
                    line = await asyncio.wait_for(p.stdout.readline(), 0.2)
                    break
                except TimeoutError:
                    continue
            assert line == b"from the stack\n"
        finally:
            p.kill()
            await p.wait()

    with kernel_clean(knet6.ns):
        run(with_stack6(knet6, body, cidrs=[f"{OUR_IP6}/64"]))


PROBE6 = """
import socket, sys
s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
s.settimeout(3)
s.connect((sys.argv[1], 9999))
s.send(b"anyone?")
try:
    s.recv(100)
    print("answered")
except ConnectionRefusedError:
    print("refused")
except TimeoutError:
    print("timeout")
"""


def test_port_unreachable6_seen_by_kernel(knet6: KernelNet6) -> None:
    async def body(stack: IPv6Stack) -> None:
        rc, out = await knet6.exec(sys.executable, "-c", PROBE6, OUR_IP6)
        assert rc == 0 and out.strip() == b"refused", out
        assert stack.udp.counters.rx_no_listener == 1
        assert stack.ipv6.icmp_counters.tx_errors == 1

    run(with_stack6(knet6, body, cidrs=[f"{OUR_IP6}/64"]))


SEND_RA = """
import socket, sys
s = socket.socket(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_ICMPV6)
s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_HOPS, 255)
idx = socket.if_nametoindex(sys.argv[1])
s.sendto(bytes.fromhex(sys.argv[2]), ("ff02::1", 0, 0, idx))
"""


def test_slaac_from_a_router_advertisement(knet6: KernelNet6) -> None:
    """A router advertisement (built by scapy, sent by the kernel from a raw socket)
    gives us an address in its prefix; the kernel then pings that address."""

    async def body(stack: IPv6Stack) -> None:
        rc, out = await knet6.exec("cat", f"/sys/class/net/{knet6.tap}/address")
        assert rc == 0, out
        kmac = out.decode().strip()
        ra = (
            ICMPv6ND_RA(routerlifetime=1800, reachabletime=0, retranstimer=0)
            / ICMPv6NDOptSrcLLAddr(lladdr=kmac)
            / ICMPv6NDOptPrefixInfo(
                prefix="fd00:99::", prefixlen=64, L=1, A=1, validlifetime=86400,
                preferredlifetime=14400,
            )
        )  # fmt: skip
        rc, out = await knet6.exec(sys.executable, "-c", SEND_RA, knet6.tap, bytes(ra).hex())
        assert rc == 0, out
        mine = A("fd00:99::ff:fe00:aa")
        assert await stack.wait_ready(mine, timeout=5), stack.ipv6.addresses()
        assert stack.ipv6.ndp.counters.addresses_autoconfigured == 1
        assert ipaddress.IPv6Network("fd00:99::/64") in stack.ipv6.get_ip_netmasks()
        (router,) = stack.ipv6.get_ip_gateways()
        assert router.is_link_local
        await ping(knet6, str(mine), count=2)
        assert stack.ipv6.get_source(dst=A("fd00:99::1")) == mine
        assert stack.ipv6.get_source(dst=A("2001:db8::1")) == mine  # via the router

    knet6.addrs.append("fd00:99::1/64")
    run(with_stack6(knet6, body))


def test_dad_conflict_with_the_kernel(knet6: KernelNet6) -> None:
    """The kernel holds fd00:77::1 first; our DAD for the same address must fail."""

    async def body(stack: IPv6Stack) -> None:
        await stack.ipv6.set_ip(A(KERNEL_IP6))
        await stack.wait_ready(timeout=5)
        assert stack.ipv6.ndp.counters.dad_failed == 1
        assert A(KERNEL_IP6) not in stack.ipv6.get_ip()
        assert A(KERNEL_IP6) not in stack.ipv6.addresses()
        assert A(OUR_IP6) in stack.ipv6.get_ip()  # the other address passed

    run(with_stack6(knet6, body, cidrs=[f"{OUR_IP6}/64"]))


def test_neighbour_unreachability_after_the_kernel_goes_away(knet6: KernelNet6) -> None:
    """We reach the kernel, then its side of the link goes down: NUD probes it (DELAY,
    PROBE with unicast solicitations) and forgets it."""
    nud = NdpConfig(
        max_dad_delay=0.05,
        retrans_timer=0.2,
        reachable_time=0.4,
        delay_first_probe=0.2,
        max_rtr_solicitation_delay=0.05,
    )

    async def body(stack: IPv6Stack) -> None:
        ndp = stack.ipv6.ndp
        kernel = A(KERNEL_IP6)
        for _ in range(50):  # until the kernel answered our solicitation
            await stack.udp.write(b"x", dest_ip=kernel, dest_port=9)
            await asyncio.sleep(0.05)
            if ndp.state(kernel.packed) not in (None, State.INCOMPLETE):
                break
        assert ndp.lookup(kernel.packed) is not None
        rc, out = await knet6.exec("ip", "link", "set", knet6.tap, "down")
        assert rc == 0, out
        await asyncio.sleep(0.8)  # REACHABLE has run out
        assert ndp.state(kernel.packed) == State.STALE
        sent = ndp.counters.ns_sent
        await stack.udp.write(b"x", dest_ip=kernel, dest_port=9)
        assert ndp.state(kernel.packed) == State.DELAY
        for _ in range(40):
            await asyncio.sleep(0.1)
            if ndp.state(kernel.packed) is None:
                break
        assert ndp.state(kernel.packed) is None and ndp.counters.unreachable == 1
        assert ndp.counters.ns_sent - sent == nud.max_unicast_solicit

    run(with_stack6(knet6, body, cidrs=[f"{OUR_IP6}/64"], ndp=nud))


@pytest.mark.tools
def test_mld_reports_on_the_wire_decoded_by_tshark(knet6: KernelNet6) -> None:
    """What we send for a joined group, captured on the kernel's side of the TAP and
    decoded by tshark: an MLDv2 report with a router alert, to ff02::16."""

    async def body(stack: IPv6Stack) -> None:
        p = await asyncio.create_subprocess_exec(
            "ip", "netns", "exec", knet6.ns, "tshark", "-l", "-n", "-i", knet6.tap,
            "-a", "duration:4", "-f", "ip6", "-Y", "icmpv6.type == 143",
            "-T", "fields", "-e", "ipv6.dst", "-e", "ipv6.hlim", "-e", "ipv6.opt.type",
            "-e", "icmpv6.mldr.mar.multicast_address",
            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        )  # fmt: skip
        assert p.stderr is not None
        while b"Capturing on" not in await asyncio.wait_for(p.stderr.readline(), 10):
            pass
        # tshark says "Capturing on" a moment before its capture is live (longer on a busy
        # machine), so keep changing the membership, each change a fresh report, until
        # tshark's 4 s are up; the first report it sees is checked.
        comm = asyncio.ensure_future(p.communicate())
        joined = False
        while not comm.done():
            joined = not joined
            (stack.ipv6.join if joined else stack.ipv6.leave)(A("ff05::1:3"))
            await asyncio.wait([comm], timeout=0.3)
        out, _ = await asyncio.wait_for(comm, 10)
        lines = [ln.split("\t") for ln in out.decode().splitlines() if "ff05::1:3" in ln]
        assert lines, out
        dst, hlim, opts, _groups = lines[0]
        assert (dst, hlim) == ("ff02::16", "1") and "0x05" in opts.split(",")  # router alert

    run(with_stack6(knet6, body))
