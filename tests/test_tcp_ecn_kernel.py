"""ECN against the Linux kernel over TAP, both directions, read from the kernel's counters.

The kernel side runs with ``net.ipv4.tcp_ecn=1`` (ask and accept). Our TAP sits behind
an :class:`ImpairedLink` that marks ECN-capable packets CE with a small probability, in
both directions, as an AQM would; it never touches a Not-ECT packet. The kernel's own
counters then show what it saw: ECT(0) and CE packets arriving (``IpExtInECT0Pkts``,
``IpExtInCEPkts``) and ACKs echoing ECE for data it sent (``TcpExtTCPDeliveredCE``).
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import ipaddress
import os
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from tests.flowkit import drain_hash
from tests.kernelnet import KERNEL_IP, OUR_IP, KernelNet, direct_on_tap, run, socat_receives
from tests.nstat import kernel_clean

from miragekit import tcp as tcpcore
from miragekit.link import ImpairedLink, LinkParams, TapNetif
from miragekit.stack import DirectStackV4

pytestmark = pytest.mark.kernel

MB = 1 << 20
MARK = 0.01


def with_marking_link(
    k: KernelNet,
    config: tcpcore.Config,
    body: Callable[[DirectStackV4, ImpairedLink], Awaitable[None]],
) -> Any:
    return direct_on_tap(
        k,
        body,
        sysctls=["net.ipv4.tcp_ecn=1"],
        wrap=lambda tap: ImpairedLink(tap, LinkParams(mark=MARK), seed=11),
        tcp_config=config,
    )


def test_we_send_with_ecn_to_the_kernel(knet: KernelNet, tmp_path: Path) -> None:
    """Our SYN asks (ECE+CWR), the kernel agrees; our data is ECT(0), the link marks
    some CE, the kernel echoes ECE and we reduce, nothing is resent."""
    payload = os.urandom(8 * MB)
    stats: dict[str, int] = {}
    marked: list[int] = []

    async def body(stack: DirectStackV4, link: ImpairedLink) -> None:
        flow = await socat_receives(
            knet,
            lambda: stack.tcpv4().create_connection((ipaddress.IPv4Address(KERNEL_IP), 9000)),
            payload,
            tmp_path / "dst.bin",
        )
        stats.update(flow.connection.stats)
        marked.append(link.counters.marked_ce)

    with kernel_clean(knet.ns) as k:
        run(with_marking_link(knet, tcpcore.Config(mss=1460, ecn="on"), body), timeout=120)
    d = k.delta
    assert marked[0] >= 10
    # Every data segment we sent arrived ECT(0) or CE (the kernel counts each once).
    data_segments = len(payload) // 1460
    assert d.get("IpExtInECT0Pkts", 0) + d.get("IpExtInCEPkts", 0) >= data_segments
    # Each mark arrived (a frame the TAP queue dropped under load would be one less).
    assert marked[0] - stats["retransmits"] <= d.get("IpExtInCEPkts", 0) <= marked[0]
    # The kernel echoed ECE (it had agreed to ECN): we reduced. No more reductions than
    # marks: the kernel ended each echo when our CWR came (else it would echo on every
    # ACK, and we would reduce once per window to the end). Marks are no losses: nothing
    # was resent (but what a loaded machine's TAP queue may drop; kernel_clean bounds it).
    assert 3 <= stats["ecn_reductions"] <= marked[0]
    assert stats["fast_retransmits"] + stats["rto"] <= 2
    print(f"marked {marked[0]}, ours {stats}, kernel ECT0/CE in", end=" ")
    print(d.get("IpExtInECT0Pkts"), d.get("IpExtInCEPkts"))


def test_kernel_sends_with_ecn_to_us(knet: KernelNet, tmp_path: Path) -> None:
    """The kernel's SYN asks, we agree (Config.ecn's default, "accept"); its data is
    ECT(0), the link marks some CE, we echo ECE until CWR and the kernel counts the
    echoes; our pure ACKs are never ECT."""
    src = tmp_path / "src.bin"
    src.write_bytes(os.urandom(8 * MB))
    want = hashlib.sha256(src.read_bytes()).hexdigest()
    stats: dict[str, int] = {}
    marked: list[int] = []

    async def body(stack: DirectStackV4, link: ImpairedLink) -> None:
        done: asyncio.Future[tuple[int, str]] = asyncio.get_running_loop().create_future()

        async def sink(flow: Any) -> None:
            got = await drain_hash(flow)
            stats.update(flow.connection.stats)
            done.set_result(got)

        stack.listen_tcpv4(port=9, callback=sink)
        rc, out = await knet.exec("socat", "-u", f"FILE:{src}", f"TCP:{OUR_IP}:9", timeout=60)
        assert rc == 0, out
        assert await asyncio.wait_for(done, 30) == (8 * MB, want)
        marked.append(link.counters.marked_ce)

    with kernel_clean(knet.ns) as k:
        run(with_marking_link(knet, tcpcore.Config(mss=1460), body), timeout=120)
    d = k.delta
    assert marked[0] >= 10
    assert stats["ce_received"] == marked[0]
    # The kernel reduced for our echo: its next data carried CWR (which ended the echo).
    assert 1 <= stats["cwr_received"] <= marked[0]
    # The kernel received ACKs with ECE for data it had sent.
    assert d.get("TcpExtTCPDeliveredCE", 0) >= marked[0]
    # We sent only pure ACKs (and the handshake, FIN): none of them ECT.
    assert d.get("IpExtInECT0Pkts", 0) == 0 and d.get("IpExtInCEPkts", 0) == 0
    print(f"marked {marked[0]}, ours {stats}, kernel {d.get('TcpExtTCPDeliveredCE')}")


def test_tso_segments_carry_ect(knet: KernelNet, tmp_path: Path) -> None:
    """With segmentation offload our large packets carry ECT(0) too: the kernel takes
    them whole (GRO-sized) and counts every one ECT(0), all but the handshake's, the
    FIN's and the odd pure ACK."""
    payload = os.urandom(16 * MB)
    stats: dict[str, int] = {}

    async def body(stack: DirectStackV4, tap: TapNetif) -> None:
        tcp = stack.tcpv4()
        assert tcp.config.tso_max > 60000
        tcp.config = tcp.endpoint.config = dataclasses.replace(tcp.config, ecn="on")
        flow = await socat_receives(
            knet,
            lambda: tcp.create_connection((ipaddress.IPv4Address(KERNEL_IP), 9000)),
            payload,
            tmp_path / "dst.bin",
        )
        stats.update(flow.connection.stats)
        assert tap.counters.tx_gso > 0

    with kernel_clean(knet.ns, offload=True) as k:
        run(
            direct_on_tap(knet, body, sysctls=["net.ipv4.tcp_ecn=1"], offload=True),
            timeout=120,
        )
    d = k.delta
    assert d.get("IpExtInECT0Pkts", 0) >= max(d.get("IpInReceives", 0) - 6, 100)
    assert d.get("IpExtInCEPkts", 0) == 0 and stats["ecn_reductions"] == 0
