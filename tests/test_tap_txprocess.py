"""DirectStackV4 on a TAP device whose writes a helper process makes (``tx_process``).

The ring must lose, duplicate and reorder nothing: byte-exact 100 MB transfers each way
(our data frames out, our ACKs out) against the kernel prove it, with and without
offload, and the helper's counters show that it, not our thread, wrote the frames.
"""

from __future__ import annotations

import asyncio
import hashlib
import ipaddress
import os
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from tests.apprun import running, sh
from tests.flowkit import drain_hash
from tests.kernelnet import KERNEL_IP, OUR_IP, KernelNet, run, socat_receives

from miragekit.net import TapNetif
from miragekit.result import Ok
from miragekit.stack import DirectStackV4, Static
from miragekit.v1 import StackConfig

pytestmark = pytest.mark.kernel

MB = 1 << 20


async def with_tx_process(
    k: KernelNet, offload: bool, body: Callable[[DirectStackV4, TapNetif], Awaitable[None]]
) -> None:
    r = await TapNetif.connect(k.tap, offload=offload, tx_process=True)
    assert isinstance(r, Ok), r
    netif = r.value
    assert netif.tx_process
    k.move_in()
    s = await DirectStackV4.connect(StackConfig("tap", None, netif, Static(f"{OUR_IP}/24")))
    assert isinstance(s, Ok), s
    stack = s.value
    ring = netif._ring
    assert ring is not None
    try:
        await body(stack, netif)
        assert stack.tcpv4().internal_errors == 0
        written, errors, _ = ring.counters()
        # Everything we sent went through the helper: nothing was written directly.
        assert netif.tx_process and errors == 0
        assert written + ring.pending == netif.get_stats_counters().tx_pkts
        assert netif.counters.tx_dropped == 0
    finally:
        await stack.disconnect()
        await netif.disconnect()
    assert ring._proc.returncode == 0  # the helper drained and stopped with the device


@pytest.mark.parametrize("offload", [False, True], ids=["plain", "offload"])
def test_we_send_100mb_through_the_helper(knet: KernelNet, tmp_path: Path, offload: bool) -> None:
    payload = os.urandom(100 * MB)

    async def body(stack: DirectStackV4, netif: TapNetif) -> None:
        await socat_receives(
            knet,
            lambda: stack.tcpv4().create_connection((ipaddress.IPv4Address(KERNEL_IP), 9000)),
            payload,
            tmp_path / "dst.bin",
        )
        assert (netif.counters.tx_gso > 0) == offload

    run(with_tx_process(knet, offload, body), timeout=200)


def test_the_kernel_sends_100mb_and_our_acks_go_through_the_helper(
    knet: KernelNet, tmp_path: Path
) -> None:
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
        assert netif.get_stats_counters().tx_pkts > 100  # our ACKs (one per batch read)

    run(with_tx_process(knet, False, body), timeout=200)


def test_runner_tx_process_echo(knet: KernelNet) -> None:
    """``miragekit run examples/echo --net tap:NAME --tx-process`` inside the namespace."""
    knet.move_in()
    args = ["--net", f"tap:{knet.tap}", "--ip", f"{OUR_IP}/24", "--tx-process"]
    with running("examples/echo", *args, netns=knet.ns,
                 ready=f"echo: TCP\\+UDP echo on {OUR_IP} port 7"):  # fmt: skip
        data = os.urandom(2 * MB)
        ns = ("ip", "netns", "exec", knet.ns)
        assert sh(*ns, "socat", "-t", "10", "-", f"TCP:{OUR_IP}:7", input=data) == data
        assert sh(*ns, "ping", "-c", "2", "-i", "0.2", "-W", "2", OUR_IP).count(b"bytes from") == 2
