"""DirectStackV4 on a TAP device with checksum and segmentation offload, against the kernel.

The kernel hands us TCP segments of up to 64 KiB (GSO, ``NEEDS_CSUM``) and takes ours:
byte-exact 100 MB transfers are the proof that the checksums we leave to the kernel are
right, and the device's counters show that large frames were used both ways.
"""

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
from tests.apprun import running, sh
from tests.flowkit import drain_hash, http_once
from tests.kernelnet import KERNEL_IP, OUR_IP, KernelNet, run, socat_receives
from tests.nstat import kernel_clean

from miragekit.link import PcapNetif, TapNetif
from miragekit.net._tcp import SOFT_GSO_MAX
from miragekit.result import Ok
from miragekit.stack import DirectStackV4, Static
from miragekit.v1 import StackConfig

pytestmark = pytest.mark.kernel

MB = 1 << 20


async def with_offload(
    k: KernelNet, body: Callable[[DirectStackV4, TapNetif], Awaitable[None]]
) -> None:
    r = await TapNetif.connect(k.tap, offload=True)
    assert isinstance(r, Ok), r
    netif = r.value
    k.move_in()
    s = await DirectStackV4.connect(StackConfig("tap", None, netif, Static(f"{OUR_IP}/24")))
    assert isinstance(s, Ok), s
    stack = s.value
    assert stack.ipv4().offload is netif
    assert stack.tcpv4().config.tso_max > 60000
    try:
        await body(stack, netif)
        assert stack.tcpv4().internal_errors == 0
        assert stack.ip_stack.internal_errors == 0
    finally:
        await stack.disconnect()
        await netif.disconnect()


def test_kernel_sends_100mb_to_us_in_gso_frames(knet: KernelNet, tmp_path: Path) -> None:
    src = tmp_path / "src.bin"
    src.write_bytes(os.urandom(100 * MB))
    want = hashlib.sha256(src.read_bytes()).hexdigest()

    async def body(stack: DirectStackV4, netif: TapNetif) -> None:
        done: asyncio.Future[tuple[int, str]] = asyncio.get_running_loop().create_future()

        async def sink(flow: Any) -> None:
            done.set_result(await drain_hash(flow))

        stack.listen_tcpv4(port=9, callback=sink)
        rc, out = await knet.exec("socat", "-u", f"FILE:{src}", f"TCP:{OUR_IP}:9", timeout=150)
        assert rc == 0, out
        assert await asyncio.wait_for(done, 60) == (100 * MB, want)
        c = netif.counters
        assert c.rx_gso > 0 and c.rx_csum_needed > 0
        # Most of the 100 MB came in large frames, far above the 1500-byte MTU.
        assert c.rx_gso_bytes > 50 * MB
        assert c.rx_gso_bytes / c.rx_gso > 4 * 1500
        assert stack.tcpv4().stats["bad_checksum"] == 0

    with kernel_clean(knet.ns, offload=True):
        run(with_offload(knet, body), timeout=200)


def test_we_send_100mb_to_the_kernel_with_tso(knet: KernelNet, tmp_path: Path) -> None:
    payload = os.urandom(100 * MB)
    dst = tmp_path / "dst.bin"

    async def body(stack: DirectStackV4, netif: TapNetif) -> None:
        await socat_receives(
            knet,
            lambda: stack.tcpv4().create_connection((ipaddress.IPv4Address(KERNEL_IP), 9000)),
            payload,
            dst,
        )
        c = netif.counters
        assert c.tx_gso > 0 and c.tx_gso_bytes > 50 * MB
        assert c.tx_gso_bytes / c.tx_gso > 8 * 1500
        assert c.tx_csum_offload >= c.tx_gso

    with kernel_clean(knet.ns, offload=True):
        run(with_offload(knet, body), timeout=200)


HTTP_BODY = os.urandom(8 * MB)


def test_curl_and_ping_with_offload(knet: KernelNet, tmp_path: Path) -> None:
    out = tmp_path / "page"

    async def body(stack: DirectStackV4, netif: TapNetif) -> None:
        stack.listen_tcpv4(port=80, callback=http_once(HTTP_BODY))
        rc, msg = await knet.exec(
            "curl", "-sS", "--max-time", "30", "-o", str(out), f"http://{OUR_IP}/", timeout=40
        )
        assert rc == 0, msg
        assert out.read_bytes() == HTTP_BODY
        assert netif.counters.tx_gso > 0
        rc, msg = await knet.exec("ping", "-c", "3", "-i", "0.2", "-W", "2", OUR_IP)
        assert rc == 0, msg
        assert b"3 received" in msg
        assert stack.counters()["icmp"]["tx_echo_replies"] == 3

    with kernel_clean(knet.ns, offload=True):
        run(with_offload(knet, body), timeout=60)


BAD_SYN = """
import sys
from scapy.all import IP, TCP, send, conf
conf.verb = 0
send(IP(src=sys.argv[1], dst=sys.argv[2]) / TCP(sport=4444, dport=7, flags="S", chksum=0xDEAD))
"""


def test_bad_checksum_without_offload_flags_is_dropped(knet: KernelNet) -> None:
    async def body(stack: DirectStackV4, netif: TapNetif) -> None:
        async def echo(flow: Any) -> None:
            while isinstance(r := await flow.read(), Ok):
                await flow.write(r.value)

        stack.listen_tcpv4(port=7, callback=echo)
        # A raw-socket packet carries no offload flags: we must verify its checksum.
        rc, out = await knet.exec(sys.executable, "-c", BAD_SYN, KERNEL_IP, OUR_IP)
        assert rc == 0, out
        for _ in range(100):
            if stack.tcpv4().stats["bad_checksum"]:
                break
            await asyncio.sleep(0.02)
        assert stack.tcpv4().stats["bad_checksum"] == 1
        assert stack.tcpv4().connections() == 0

    run(with_offload(knet, body), timeout=60)


def test_runner_offload_echo(knet: KernelNet) -> None:
    """``miragekit run examples/echo --net tap:NAME --offload`` inside the namespace."""
    knet.move_in()
    args = ["--net", f"tap:{knet.tap}", "--ip", f"{OUR_IP}/24", "--offload"]
    with running("examples/echo", *args, netns=knet.ns,
                 ready=f"echo: TCP\\+UDP echo on {OUR_IP} port 7"):  # fmt: skip
        data = os.urandom(2 * MB)
        ns = ("ip", "netns", "exec", knet.ns)
        assert sh(*ns, "socat", "-t", "10", "-", f"TCP:{OUR_IP}:7", input=data) == data
        assert sh(*ns, "socat", "-t", "2", "-", f"UDP:{OUR_IP}:7", input=b"udp") == b"udp"


def test_a_plain_receiver_turns_the_offloads_off(knet: KernelNet, tmp_path: Path) -> None:
    """Under a wrapper without the offload protocol (the pcap recorder), the offload
    TAP device hands over plain frames only, and the stack works as without offload."""
    out = tmp_path / "page"

    async def body() -> None:
        r = await TapNetif.connect(knet.tap, offload=True)
        assert isinstance(r, Ok), r
        netif = r.value
        knet.move_in()
        rec = PcapNetif(netif, tmp_path / "x.pcap")
        s = await DirectStackV4.connect(StackConfig("tap", None, rec, Static(f"{OUR_IP}/24")))
        assert isinstance(s, Ok), s
        stack = s.value
        try:
            # As without offload: bursts are cut into frames here (software segmentation).
            assert stack.ipv4().offload is None and stack.tcpv4().config.tso_max == SOFT_GSO_MAX
            stack.listen_tcpv4(port=80, callback=http_once(HTTP_BODY))
            rc, msg = await knet.exec(
                "curl", "-sS", "--max-time", "30", "-o", str(out), f"http://{OUR_IP}/"
            )
            assert rc == 0, msg
            assert out.read_bytes() == HTTP_BODY
            # Had the kernel still left checksums to us, its ACKs would fail ours.
            assert stack.tcpv4().stats["bad_checksum"] == 0
            assert netif.counters.tx_gso == netif.counters.tx_csum_offload == 0
        finally:
            await stack.disconnect()
            await netif.disconnect()

    run(body(), timeout=60)
