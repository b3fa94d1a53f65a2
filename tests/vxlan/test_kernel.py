"""Our stack on a VxlanNetif against the Linux kernel's ``vxlan`` device.

Two namespaces joined by a veth pair form the underlay: ``k`` (10.88.0.1, the kernel's
vxlan device ``vx0`` with inner address 192.168.42.1) and ``o`` (10.88.0.2, ours, inner
192.168.42.2). Our UDP socket is opened *inside* ``o`` by ``VxlanConfig(netns=...)``,
which creates it on a short-lived thread that entered the namespace with ``setns``: the
socket stays there, while our stack runs in this test process, on this event loop, with
its counters in reach. (Running the stack in a subprocess under ``ip netns exec`` would
work too, but would hide the counters behind a pipe.) Underlay traffic stays inside the
namespaces; nothing touches the root namespace.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import subprocess
from collections.abc import Awaitable, Callable, Coroutine, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

import pytest
from tests.netns import namespaces, ns_exec, set_tx_checksum, sh
from tests.nstat import kernel_clean
from tests.vxlan.overlay import Node

from miragekit.link import VxlanConfig, VxlanNetif
from miragekit.result import Ok

pytestmark = pytest.mark.kernel

T = TypeVar("T")
VNI = 42
K_UNDER, O_UNDER = "10.88.0.1", "10.88.0.2"
K_IP, O_IP = "192.168.42.1", "192.168.42.2"


def run(coro: Coroutine[Any, Any, T], timeout: float = 40.0) -> T:
    async def bounded() -> T:
        return await asyncio.wait_for(coro, timeout)

    return asyncio.run(bounded())


@dataclass
class Underlay:
    k: str  # the kernel's namespace
    o: str  # ours

    def kernel_vxlan(self, name: str, vni: int, *how: str, inner: str) -> None:
        sh("ip", "-n", self.k, "link", "add", name, "type", "vxlan", "id", str(vni),
           *how, "dstport", "4789", "dev", "va")  # fmt: skip
        sh("ip", "-n", self.k, "addr", "add", inner, "dev", name)
        sh("ip", "-n", self.k, "link", "set", name, "up")
        set_tx_checksum(self.k, name, False)  # see tests/netns.py: no NIC finishes them


@pytest.fixture
def underlay() -> Iterator[Underlay]:
    with namespaces("k", "o") as (k, o):
        sh("ip", "-n", k, "link", "add", "va", "type", "veth", "peer", "name", "vb", "netns", o)
        sh("ip", "-n", k, "addr", "add", f"{K_UNDER}/24", "dev", "va")
        sh("ip", "-n", o, "addr", "add", f"{O_UNDER}/24", "dev", "vb")
        sh("ip", "-n", k, "link", "set", "va", "up")
        sh("ip", "-n", o, "link", "set", "vb", "up")
        yield Underlay(k, o)


async def with_node(
    u: Underlay, body: Callable[[Node], Awaitable[None]], *, group: str | None = None
) -> None:
    if group is None:
        u.kernel_vxlan("vx0", VNI, "remote", O_UNDER, inner=f"{K_IP}/24")
        cfg = VxlanConfig(VNI, local=(O_UNDER, 4789), remotes=[(K_UNDER, 4789)], netns=u.o)
    else:
        u.kernel_vxlan("vx0", VNI, "group", group, inner=f"{K_IP}/24")
        cfg = VxlanConfig(VNI, local=(O_UNDER, 4789), group=group, netns=u.o)
    node = await Node.start(cfg, f"{O_IP}/24")
    try:
        assert node.netif.mtu == 1450
        await body(node)
        assert node.stack.internal_errors == 0
        c = node.netif.counters
        assert c.rx_short == c.rx_bad_flags == c.rx_bad_vni == c.tx_errors == 0
        st = node.netif.get_stats_counters()
        assert st.rx_pkts == node.stack.ethif.counters.rx_frames
        assert st.tx_pkts == node.stack.ethif.counters.tx_frames
    finally:
        await node.stop()


def test_kernel_pings_us_through_the_overlay(underlay: Underlay) -> None:
    async def body(node: Node) -> None:
        rc, out = await ns_exec(underlay.k, "ping", "-c", "3", "-i", "0.2", "-W", "2", O_IP)
        assert rc == 0 and b"3 received" in out, out
        assert node.stack.ipv4.icmp.counters.tx_echo_replies == 3
        # We learned the kernel's MAC at its underlay address and the segment port.
        assert (K_UNDER, 4789) in node.netif.fdb().values()
        # And we ping the kernel.
        assert await node.ping(ipaddress.IPv4Address(K_IP), 1)

    run(with_node(underlay, body))


def test_fragmented_ping_within_the_overlay_mtu(underlay: Underlay) -> None:
    async def body(node: Node) -> None:
        rc, out = await ns_exec(
            underlay.k, "ping", "-c", "2", "-i", "0.2", "-W", "2", "-s", "4000", O_IP
        )
        assert rc == 0 and b"2 received" in out and b"4008 bytes from" in out, out
        assert node.stack.ipv4.reassembler.counters.reassembled == 2
        assert node.netif.counters.tx_oversize == 0

    with kernel_clean(underlay.k):
        run(with_node(underlay, body))


def test_udp_both_ways(underlay: Underlay) -> None:
    async def body(node: Node) -> None:
        rc, out = await ns_exec(
            underlay.k, "socat", "-t", "2", "-", f"UDP:{O_IP}:7", stdin=b"hello overlay\n"
        )
        assert rc == 0 and out == b"hello overlay\n", out
        big = bytes(range(256)) * 12  # 3072 bytes: fragmented inside the overlay
        rc, out = await ns_exec(underlay.k, "socat", "-t", "2", "-", f"UDP:{O_IP}:7", stdin=big)
        assert rc == 0 and out == big, (rc, len(out))
        assert node.stack.udp.counters.rx_delivered == 2

        p = await asyncio.create_subprocess_exec(
            "ip", "netns", "exec", underlay.k, "socat", "-u", "UDP-RECV:9000", "STDOUT",
            stdout=subprocess.PIPE,
        )  # fmt: skip
        assert p.stdout is not None
        try:
            line = b""
            for _ in range(50):  # until socat is bound
                node.stack.udp.send(
                    b"from the stack\n", dest_ip=ipaddress.IPv4Address(K_IP), dest_port=9000
                )
                try:
                    line = await asyncio.wait_for(p.stdout.readline(), 0.2)
                    break
                except TimeoutError:
                    continue
            assert line == b"from the stack\n"
        finally:
            p.kill()
            await p.wait()

    with kernel_clean(underlay.k):
        run(with_node(underlay, body))


def test_multicast_group_with_the_kernel(underlay: Underlay) -> None:
    """Both sides flood to 239.1.1.1 on the veth; unicast then goes to learned endpoints."""

    async def body(node: Node) -> None:
        assert node.netif.flood_targets() == [("239.1.1.1", 4789)]
        rc, out = await ns_exec(underlay.k, "ping", "-c", "2", "-i", "0.2", "-W", "2", O_IP)
        assert rc == 0 and b"2 received" in out, out
        assert await node.ping(ipaddress.IPv4Address(K_IP), 7)
        assert (K_UNDER, 4789) in node.netif.fdb().values()

    run(with_node(underlay, body, group="239.1.1.1"))


def test_vni_mismatch_is_counted(underlay: Underlay) -> None:
    """A kernel device on another VNI reaches our socket; its frames are dropped."""

    async def body(node: Node) -> None:
        underlay.kernel_vxlan("vx9", VNI + 1, "remote", O_UNDER, inner="192.168.43.1/24")
        rc, _ = await ns_exec(underlay.k, "ping", "-c", "2", "-i", "0.2", "-W", "1", "192.168.43.2")
        assert rc != 0
        assert node.netif.counters.rx_bad_vni >= 2
        node.netif.counters.rx_bad_vni = 0  # for the common checks

    run(with_node(underlay, body))


def test_joined_to_a_linux_bridge(underlay: Underlay) -> None:
    """docs/vxlan.md's recipe: namespace ``k`` stands in for the host, with a bridge whose
    ports are a kernel vxlan device (to our underlay address) and a veth to a "container"
    namespace ``c``; the container pings us and talks UDP with us through the bridge.

    (Our socket cannot share the kernel device's namespace and address family locally:
    the kernel delivers vxlan traffic to a local destination straight to its own vxlan
    devices -- "local bypass" -- and drops it when none matches.)"""

    async def main(c: str) -> None:
        u = underlay
        cfg = VxlanConfig(VNI, local=(O_UNDER, 4789), remotes=[(K_UNDER, 4789)], netns=u.o)
        node = await Node.start(cfg, f"{O_IP}/24")
        try:
            rc, out = await ns_exec(c, "ping", "-c", "2", "-i", "0.2", "-W", "2", O_IP)
            assert rc == 0 and b"2 received" in out, out
            rc, out = await ns_exec(c, "socat", "-t", "2", "-", f"UDP:{O_IP}:7", stdin=b"hi\n")
            assert rc == 0 and out == b"hi\n", out
            assert await node.ping(ipaddress.IPv4Address("192.168.42.10"), 3)
            assert set(node.netif.fdb().values()) == {(K_UNDER, 4789)}
            assert node.stack.udp.counters.rx_bad_checksum == 0
        finally:
            await node.stop()

    with namespaces("c") as (c,):
        k = underlay.k
        for cmd in (
            "link add br0 type bridge",
            "link set br0 up",
            f"link add vx42 type vxlan id {VNI} dstport 4789 remote {O_UNDER} dev va",
            "link set vx42 master br0 up",
            f"link add vc type veth peer name eth0 netns {c}",
            "link set vc master br0 up",
        ):
            sh("ip", "-n", k, *cmd.split())
        set_tx_checksum(k, "vx42", False)
        sh("ip", "-n", c, "addr", "add", "192.168.42.10/24", "dev", "eth0")
        sh("ip", "-n", c, "link", "set", "eth0", "up")
        run(main(c))


def test_bounded_send_queue_when_the_socket_would_block(underlay: Underlay) -> None:
    """A slow underlay (a 1 Mbit/s token bucket on the veth) fills the socket's send
    buffer: datagrams then wait in our bounded queue, the excess is dropped and counted,
    and the queue drains when the socket becomes writable again."""

    async def main() -> None:
        u = underlay
        sh("ip", "netns", "exec", u.o, "tc", "qdisc", "add", "dev", "vb", "root", "tbf",
           "rate", "1mbit", "burst", "1600", "limit", "1000000")  # fmt: skip
        cfg = VxlanConfig(
            VNI, local=(O_UNDER, 4789), remotes=[(K_UNDER, 4789)], netns=u.o, tx_queue_limit=8
        )
        r = await VxlanNetif.connect(cfg)
        assert isinstance(r, Ok), r
        netif = r.value
        try:
            netif._sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
            frame = b"\xff" * 6 + netif.mac().packed + b"\x88\xb5" + bytes(1400)
            for _ in range(40):
                netif.send(frame)
            c = netif.counters
            assert c.tx_queued == 8  # the bound
            assert c.tx_dropped == 40 - 8 - c.tx_datagrams > 0
            assert netif.get_stats_counters().tx_pkts == 40
            for _ in range(500):  # 8 datagrams at 1 Mbit/s: about 0.1 s (slow when loaded)
                if c.tx_datagrams == 40 - c.tx_dropped:
                    break
                await asyncio.sleep(0.02)
            assert c.tx_datagrams == 40 - c.tx_dropped and not netif._txq
            assert c.tx_errors == 0
            netif.send(frame)  # writable again: straight out
            assert c.tx_queued == 8 and c.tx_datagrams == 41 - c.tx_dropped
        finally:
            await netif.disconnect()

    run(main())
