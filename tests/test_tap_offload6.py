"""TCP over IPv6 with TAP checksum and segmentation offload (``--offload``) against the
kernel in a ``mk-`` namespace, beyond the transfers both ways of ``test_dual_kernel.py``
(whose ``offload`` variants check the device's GSO counters: virtio-net ``GSO_TCPV6``).

Delivered locally, the kernel trusts a segment whose checksum is left to the device, so
two transfers go through the namespace as a router into a second namespace over a veth
pair with its segmentation and checksum offloads off: there the kernel cuts our segments
and completes their checksums in software, the receiving kernel verifies them (its
``TcpInCsumErrors``), and a capture on the far side is checked by scapy. The router's
route onwards has a smaller MTU than our link, so its Packet Too Big must shrink our
segments. Last, the runner with ``--ip6 --offload`` under the kernel's ``iperf3 -6``.
"""

from __future__ import annotations

import asyncio
import ipaddress
import os
import subprocess
from collections.abc import Awaitable, Callable, Iterator, Sequence
from pathlib import Path

import pytest
from scapy.layers.inet import TCP
from scapy.layers.inet6 import IPv6
from scapy.utils import rdpcap
from tests.apprun import running, sh
from tests.ipstack.test_ipv6_kernel import KERNEL_IP6, OUR_IP6, KernelNet6, knet6
from tests.kernelnet import OUR_IP, run, socat_receives
from tests.nstat import kernel_clean
from tests.test_dual_kernel import offload_tap, socat_sends, with_dual
from tests.test_example_iperf3 import check_report, iperf3_json

from miragekit.link import TapNetif
from miragekit.stack import DirectStack

pytestmark = pytest.mark.kernel
__all__ = ["knet6"]  # the fixture

A6 = ipaddress.IPv6Address
MB = 1 << 20
FAR_IP6 = "fd00:78::2"  # the second namespace, behind the kernel side as a router
ROUTER_FAR = "fd00:78::1"
FAR_MTU = 1400  # the MTU of the router's route onwards: below the TAP's 1500


def _sh(*args: str) -> None:
    subprocess.run(args, check=True, capture_output=True)


async def with_offload6(
    k: KernelNet6,
    body: Callable[[DirectStack, TapNetif], Awaitable[None]],
    gateways: Sequence[str] = (),
) -> None:
    """The dual stack with ``--offload`` (``with_dual``), IPv6 on the device's offloads."""

    async def checked(stack: DirectStack) -> None:
        await body(stack, offload_tap(stack))
        assert stack.counters()["tcp6"]["bad_checksum"] == 0

    await with_dual(k, checked, offload=True, gateways=gateways)


# --- through the kernel as a router, into a second namespace -----------------------------


@pytest.fixture
def far(knet6: KernelNet6) -> Iterator[str]:
    """A second ``mk-`` namespace behind ``knet6``'s, over a veth pair whose
    segmentation and checksum offloads are off (the kernel cuts and sums in software);
    the router's route into it has MTU ``FAR_MTU``."""
    ns = f"{knet6.ns}-far"
    va, vb = f"{knet6.tap}a", f"{knet6.tap}b"
    _sh("ip", "netns", "add", ns)
    try:
        for n in (knet6.ns, ns):
            for scope in ("default", "all"):
                _sh(
                    "ip", "netns", "exec", n, "sysctl", "-qw", f"net.ipv6.conf.{scope}.accept_dad=0"
                )
        _sh("ip", "netns", "exec", knet6.ns, "sysctl", "-qw", "net.ipv6.conf.all.forwarding=1")
        _sh("ip", "link", "add", va, "netns", knet6.ns, "type", "veth", "peer", "name", vb,
            "netns", ns)  # fmt: skip
        for n, v in ((knet6.ns, va), (ns, vb)):
            _sh("ip", "netns", "exec", n, "ethtool", "-K", v, "tso", "off", "gso", "off",
                "tx", "off", "rx", "off", "gro", "off")  # fmt: skip
        _sh("ip", "-n", knet6.ns, "addr", "add", f"{ROUTER_FAR}/64", "dev", va, "nodad")
        _sh("ip", "-n", ns, "addr", "add", f"{FAR_IP6}/64", "dev", vb, "nodad")
        _sh("ip", "-n", knet6.ns, "link", "set", va, "up")
        # The route's MTU, not the link's: the veth pair stays at 1500 both ends
        # (locked: forwarding heeds a route's MTU only then; before the prefix route).
        _sh("ip", "-n", knet6.ns, "-6", "route", "replace", "fd00:78::/64", "dev", va,
            "mtu", "lock", str(FAR_MTU), "metric", "1")  # fmt: skip
        _sh("ip", "-n", ns, "link", "set", vb, "up")
        _sh("ip", "-n", ns, "link", "set", "lo", "up")
        _sh("ip", "-n", ns, "-6", "route", "add", "default", "via", ROUTER_FAR)
        yield ns
    finally:
        subprocess.run(["ip", "netns", "del", ns], capture_output=True)


def checked_segments(pcap: Path, src: str) -> tuple[int, int]:
    """(TCP segments from ``src`` carrying data, the largest IPv6 packet) in ``pcap``;
    asserts that every TCP checksum in it is right (scapy recomputes each). Ours must be
    the very value scapy computes; the kernel's may be the other zero of ones'-complement
    arithmetic: Linux sometimes sends 0xFFFF where the sum gives 0x0000, and both verify
    (RFC 1624, section 3)."""
    n = biggest = 0
    for p in rdpcap(str(pcap)):
        if IPv6 not in p or TCP not in p:
            continue
        ip, tcp = p[IPv6], p[TCP]
        sent = tcp.chksum
        del tcp.chksum
        again = IPv6(bytes(ip))[TCP].chksum
        same = sent == again or (ip.src != src and {sent, again} == {0x0000, 0xFFFF})
        assert same, f"bad TCP checksum {sent:#06x} (want {again:#06x}) in {p!r}"
        if ip.src == src and len(tcp.payload):
            n += 1
            biggest = max(biggest, 40 + ip.plen)
    return n, biggest


async def capture(ns: str, dev: str, pcap: Path) -> asyncio.subprocess.Process:
    """tshark on ``dev`` in ``ns`` (whole packets), once it says it is capturing."""
    p = await asyncio.create_subprocess_exec(
        "ip", "netns", "exec", ns, "tshark", "-q", "-n", "-i", dev,
        "-w", str(pcap), "-f", "tcp",
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip
    assert p.stderr is not None
    while b"Capturing on" not in await asyncio.wait_for(p.stderr.readline(), 20):
        pass
    await asyncio.sleep(1.0)  # it says so a moment before the capture is live
    return p


async def stop(p: asyncio.subprocess.Process) -> None:
    await asyncio.sleep(0.5)  # the last packets into the file
    p.terminate()
    await p.wait()


@pytest.mark.tools
def test_our_tso_segments_cut_by_a_router_have_right_checksums(
    knet6: KernelNet6, far: str, tmp_path: Path
) -> None:
    """We send 8 MB to a socat behind the router: the kernel segments our 64 KiB
    frames in software onto a route of MTU 1400, the far kernel checks every checksum,
    and so does scapy on a capture there; the router's Packet Too Big shrinks our MSS."""
    payload = os.urandom(8 * MB)
    dst = tmp_path / "dst.bin"
    pcap = tmp_path / "far.pcap"
    vb = f"{knet6.tap}b"

    async def body(stack: DirectStack, netif: TapNetif) -> None:
        cap = await capture(far, vb, pcap)
        try:
            far_net = KernelNet6(ns=far, tap=vb)
            flow = await socat_receives(
                far_net,
                lambda: stack.tcpv6().create_connection((A6(FAR_IP6), 9000)),
                payload,
                dst,
                listen="TCP6-LISTEN",
            )
        finally:
            await stop(cap)
        c = netif.counters
        assert c.tx_gso > 0 and c.tx_gso_bytes / c.tx_gso > 8 * 1500
        # Packet Too Big from the router (RFC 8201): the path MTU, then the MSS, follow.
        assert stack.ipv6().path_mtu(A6(FAR_IP6)) == FAR_MTU
        assert flow.connection.mss <= FAR_MTU - 60 - 12
        # A capture may miss packets on a busy machine: a good share is enough here,
        # the far kernel's counters below cover every segment.
        n, biggest = checked_segments(pcap, OUR_IP6)
        assert n > 1000 and biggest <= FAR_MTU

    # Not offload=True here: the segments in flight when the router first said Packet
    # Too Big were dropped, so the far kernel queues what follows out of order until we
    # send them again (that is path-MTU discovery, not a fault of the segments).
    with kernel_clean(far) as counted:
        run(with_offload6(knet6, body, gateways=(KERNEL_IP6,)), timeout=200)
    assert counted.delta.get("TcpInSegs", 0) > 8 * MB // 1400  # verified one by one


@pytest.mark.tools
def test_kernel_segments_cut_by_the_router_reach_us(
    knet6: KernelNet6, far: str, tmp_path: Path
) -> None:
    """The other way: the far kernel's segments, forwarded into our TAP (GRO and
    checksum offloads off on the way, so they arrive as plain frames without flags),
    arrive byte-exact, each checksum verified by us."""

    async def body(stack: DirectStack, netif: TapNetif) -> None:
        await socat_sends(far, stack, 16 * MB, tmp_path)
        # Forwarded, not made here: no offload flags, so we verified every checksum
        # (none bad: with_offload6 checks), and the ACKs still went out offloaded.
        c = netif.counters
        assert c.rx_gso == c.rx_csum_needed == c.rx_csum_valid == 0
        assert c.tx_csum_offload > 0

    with kernel_clean(far, offload=True):
        run(with_offload6(knet6, body, gateways=(KERNEL_IP6,)), timeout=200)


# --- the runner: ``miragekit run ... --ip6 ... --offload`` --------------------------------


def tap_stats(k: KernelNet6) -> dict[str, int]:
    """The kernel's own counters of its side of the TAP device: its rx is what we wrote."""
    base = f"/sys/class/net/{k.tap}/statistics"
    out = subprocess.run(
        ["ip", "netns", "exec", k.ns, "sh", "-c", f"cd {base} && grep . rx_* tx_*"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    return {n: int(v) for n, v in (line.split(":") for line in out.stdout.split())}


def frames_between(before: dict[str, int], after: dict[str, int], way: str) -> tuple[int, int]:
    """(frames, bytes) the device counted ``way`` ("rx" or "tx", the kernel's side)."""
    return (
        after[f"{way}_packets"] - before[f"{way}_packets"],
        after[f"{way}_bytes"] - before[f"{way}_bytes"],
    )


def test_runner_iperf3_and_echo_over_ipv6_with_offload(knet6: KernelNet6) -> None:
    """``miragekit run examples/iperf3 ... --ip6 ... --offload`` measured by the kernel's
    iperf3 -6 both ways: the kernel's counters of the TAP device show frames far above the
    MTU both ways, nstat no checksum error and no resend storm; then ``examples/echo``
    the same way returns 8 MB byte-exact over IPv6."""
    knet6.move_in()
    args = ["--net", f"tap:{knet6.tap}", "--ip", f"{OUR_IP}/24", "--ip6", f"{OUR_IP6}/64",
            "--offload"]  # fmt: skip
    with kernel_clean(knet6.ns, offload=True), running("examples/iperf3", *args, netns=knet6.ns,
                 ready=f"iperf3: server on {OUR_IP} port 5201"):  # fmt: skip
        for way, rev in (("tx", ()), ("rx", ("-R",))):
            before = tap_stats(knet6)
            report = iperf3_json("-6", "-c", OUR_IP6, "-t", "2", *rev, netns=knet6.ns)
            _, received = check_report(report, 1)
            assert report["start"]["connected"][0]["remote_host"] == OUR_IP6
            frames, nbytes = frames_between(before, tap_stats(knet6), way)
            # into us ("tx" of the kernel's side: GRO'd), out of us ("rx": our TSO)
            assert received > 16 * MB and nbytes > received
            assert nbytes / frames > 8 * 1500, (way, frames, nbytes)
    data = os.urandom(8 * MB)
    with running("examples/echo", *args, netns=knet6.ns,
                 ready=f"echo: TCP\\+UDP echo on {OUR_IP} port 7"):  # fmt: skip
        ns = ("ip", "netns", "exec", knet6.ns)
        assert sh(*ns, "socat", "-t", "10", "-", f"TCP6:[{OUR_IP6}]:7", input=data) == data
