"""Our stack on a TAP device against the Linux kernel in a network namespace.

The TAP device is created and opened in the root namespace, then moved into a fresh
namespace ``mk-<hex>`` (the open fd stays attached): the kernel side, 10.77.0.1/24, lives
in the namespace, our stack is 10.77.0.2. The kernel's own tools talk to us.
"""

from __future__ import annotations

import asyncio
import ipaddress
import subprocess
import sys
from collections.abc import Awaitable, Callable

import pytest
from tests.kernelnet import KERNEL_IP, OUR_IP, KernelNet, knet, run
from tests.nstat import kernel_clean

from miragekit.link import TapNetif
from miragekit.net import IPv4Stack
from miragekit.result import Ok

pytestmark = pytest.mark.kernel
# Re-exported: other kernel tests import these from here (they live in tests/kernelnet).
__all__ = ["KERNEL_IP", "OUR_IP", "KernelNet", "knet", "run"]


async def with_stack(
    k: KernelNet, body: Callable[[IPv4Stack], Awaitable[None]], *, vnet_hdr: bool = False
) -> None:
    r = await TapNetif.connect(k.tap, vnet_hdr=vnet_hdr)
    assert isinstance(r, Ok), r
    netif = r.value
    assert netif.mtu == 1500
    k.move_in()
    stack = await IPv4Stack.connect(netif, cidr=f"{OUR_IP}/24")
    try:
        await body(stack)
        assert stack.internal_errors == 0
        st = netif.get_stats_counters()
        assert st.tx_pkts == stack.ethif.counters.tx_frames - netif.counters.tx_dropped
        assert st.rx_pkts == stack.ethif.counters.rx_frames
        assert st.rx_bytes > 0 and st.tx_bytes > 0
    finally:
        await stack.disconnect()
        await netif.disconnect()


@pytest.mark.parametrize("vnet_hdr", [False, True], ids=["plain", "vnet_hdr"])
def test_ping(knet: KernelNet, vnet_hdr: bool) -> None:
    async def body(stack: IPv4Stack) -> None:
        rc, out = await knet.exec("ping", "-c", "3", "-i", "0.2", "-W", "2", OUR_IP)
        assert rc == 0, out
        assert b"3 received" in out
        assert stack.ipv4.icmp.counters.tx_echo_replies == 3
        assert stack.ipv4.arp.counters.replies_sent >= 1

    with kernel_clean(knet.ns):
        run(with_stack(knet, body, vnet_hdr=vnet_hdr))


def test_ping_fragmented_both_ways(knet: KernelNet) -> None:
    async def body(stack: IPv4Stack) -> None:
        rc, out = await knet.exec("ping", "-c", "2", "-i", "0.2", "-W", "2", "-s", "8000", OUR_IP)
        assert rc == 0, out
        assert b"2 received" in out and b"8008 bytes from" in out
        assert stack.ipv4.reassembler.counters.reassembled == 2
        assert stack.ipv4.counters.tx_fragments == 2 * 6  # 8028 bytes in 1480-byte pieces

    with kernel_clean(knet.ns):
        run(with_stack(knet, body))


def test_udp_kernel_to_us_echo(knet: KernelNet) -> None:
    async def body(stack: IPv4Stack) -> None:
        async def echo(
            src: ipaddress.IPv4Address, dst: ipaddress.IPv4Address, sport: int, buf: memoryview
        ) -> None:
            await stack.udp.write(buf, dest_ip=src, dest_port=sport, source_port=7)

        stack.listen_udpv4(port=7, callback=echo)
        rc, out = await knet.exec(
            "socat", "-t", "2", "-", f"UDP:{OUR_IP}:7", stdin=b"hello stack\n"
        )
        assert rc == 0 and out == b"hello stack\n", out
        big = bytes(range(256)) * 20  # 5120 bytes: fragmented both ways
        rc, out = await knet.exec("socat", "-t", "2", "-", f"UDP:{OUR_IP}:7", stdin=big)
        assert rc == 0 and out == big, (rc, len(out))
        assert stack.udp.counters.rx_delivered == 2

    with kernel_clean(knet.ns):
        run(with_stack(knet, body))


def test_udp_us_to_kernel(knet: KernelNet) -> None:
    async def body(stack: IPv4Stack) -> None:
        p = await asyncio.create_subprocess_exec(
            "ip",
            "netns",
            "exec",
            knet.ns,
            "socat",
            "-u",
            "UDP-RECV:9000",
            "STDOUT",
            stdout=subprocess.PIPE,
        )
        assert p.stdout is not None
        try:
            line = b""
            for _ in range(50):  # until socat is bound
                await stack.udp.write(
                    b"from the stack\n", dest_ip=ipaddress.IPv4Address(KERNEL_IP), dest_port=9000
                )
                try:
                    line = await asyncio.wait_for(p.stdout.readline(), 0.2)
                    break
                except TimeoutError:
                    continue
            assert line == b"from the stack\n"
            assert stack.ipv4.arp.counters.resolved + len(stack.ipv4.arp.entries(0.0)) >= 1
        finally:
            p.kill()
            await p.wait()

    with kernel_clean(knet.ns):
        run(with_stack(knet, body))


PROBE = """
import socket
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(3)
s.connect(("10.77.0.2", 9999))
s.send(b"anyone?")
try:
    s.recv(100)
    print("answered")
except ConnectionRefusedError:
    print("refused")
except TimeoutError:
    print("timeout")
"""


def test_port_unreachable_seen_by_kernel(knet: KernelNet) -> None:
    async def body(stack: IPv4Stack) -> None:
        rc, out = await knet.exec(sys.executable, "-c", PROBE)
        assert rc == 0 and out.strip() == b"refused", out
        assert stack.udp.counters.rx_no_listener == 1
        assert stack.ipv4.icmp.counters.tx_errors == 1

    run(with_stack(knet, body))


def test_tap_write_listen_and_disconnect(knet: KernelNet) -> None:
    """The seed's API alone: write an ARP request, listen for the kernel's reply, and
    ``disconnect`` makes ``listen`` return."""

    async def main() -> None:
        r = await TapNetif.connect(knet.tap, mac="02:00:00:00:00:aa")
        assert isinstance(r, Ok)
        netif = r.value
        assert str(netif.mac()) == "02:00:00:00:00:aa" and netif.id() == knet.tap
        knet.move_in()
        replies: list[bytes] = []

        async def fn(frame: memoryview) -> None:
            if bytes(frame[12:14]) == b"\x08\x06" and frame[21] == 2:
                replies.append(bytes(frame))
                await netif.disconnect()

        listener = asyncio.create_task(netif.listen(fn))
        mac = netif.mac().packed
        request = (
            b"\xff" * 6 + mac + b"\x08\x06"
            + b"\x00\x01\x08\x00\x06\x04\x00\x01"
            + mac + ipaddress.IPv4Address(OUR_IP).packed
            + bytes(6) + ipaddress.IPv4Address(KERNEL_IP).packed
        )  # fmt: skip
        for _ in range(20):
            await netif.writev([request[:14], request[14:]])
            done, _ = await asyncio.wait([listener], timeout=0.2)
            if done:
                break
        await asyncio.wait_for(listener, 5)  # returned because of disconnect
        (reply,) = replies
        assert reply[:6] == mac and reply[28:32] == ipaddress.IPv4Address(KERNEL_IP).packed
        st = netif.get_stats_counters()
        assert st.tx_pkts >= 1 and st.tx_bytes == 42 * st.tx_pkts and st.rx_pkts >= 1
        netif.reset_stats_counters()
        assert netif.get_stats_counters().rx_pkts == 0
        await netif.write(request)  # after disconnect: dropped and counted, no error
        assert netif.counters.tx_dropped == 1

    run(main())


def test_tap_name_too_long() -> None:
    with pytest.raises(ValueError, match="id"):
        run(TapNetif.connect("x" * 16))
