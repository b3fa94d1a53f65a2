"""ImpairedLink: the switch's impairment model over other devices (VXLAN, TAP)."""

from __future__ import annotations

import asyncio
import re

import pytest
from tests.kernelnet import OUR_IP, KernelNet, knet, run
from tests.vxlan.test_netif import BCAST, Tap, frame, netifs

from miragekit.link import ImpairedLink, LinkParams, TapNetif, VxlanNetif
from miragekit.net import IPv4Stack
from miragekit.result import Ok

__all__ = ["knet"]


async def arrival_delay(src: ImpairedLink | VxlanNetif, got: list[bytes], payload: bytes) -> float:
    """Seconds from sending one frame on ``src`` until the list ``got`` holds it."""
    loop = asyncio.get_running_loop()
    n = len(got)
    t0 = loop.time()
    src.send(frame(BCAST, src.mac(), payload))
    while len(got) == n:
        await asyncio.sleep(0.002)
    return loop.time() - t0


def test_vxlan_port_loss_and_latency_both_ways() -> None:
    async def main() -> None:
        async with netifs(2) as (a, b):
            a.add_remote(b.local_addr)
            b.add_remote(a.local_addr)
            imp = ImpairedLink(a, LinkParams(loss=1.0), seed=1)
            ta = Tap(b)  # what b receives
            ours: list[bytes] = []
            imp.set_receiver(lambda f: ours.append(bytes(f)))
            for i in range(5):
                imp.send(frame(BCAST, a.mac(), b"lost %d" % i))
            b.send(frame(BCAST, b.mac(), b"lost inward"))
            await asyncio.sleep(0.1)
            assert ta.frames == [] and ours == []
            assert imp.counters.dropped_loss == 6
            # The same device without loss but with 80 ms of latency, both directions.
            imp.link.loss = 0.0
            imp.link.latency = 0.08
            assert await arrival_delay(imp, ta.frames, b"out") >= 0.075
            assert await arrival_delay(b, ours, b"in") >= 0.075
            assert ours[-1].endswith(b"in")
            imp.link.latency = 0.0
            assert await arrival_delay(imp, ta.frames, b"fast") < 0.075
            await imp.disconnect()
            assert not a.connected

    run(main())


def test_same_seed_same_losses() -> None:
    async def losses(seed: int) -> list[int]:
        async with netifs(2) as (a, b):
            a.add_remote(b.local_addr)
            imp = ImpairedLink(a, LinkParams(loss=0.5), seed=seed)
            tb = Tap(b)
            for i in range(40):
                imp.send(frame(BCAST, a.mac(), b"%02d" % i))
            await tb.wait(40, timeout=0.3)
            return sorted(int(f[-2:]) for f in tb.frames)

    first = run(losses(7))
    assert 5 < len(first) < 35
    assert run(losses(7)) == first
    assert run(losses(8)) != first


def test_bad_params_rejected() -> None:
    async def main() -> None:
        async with netifs(1) as (a,):
            with pytest.raises(TypeError, match="LinkParams"):
                ImpairedLink(a, {"loss": 0.1})  # type: ignore[arg-type]
            with pytest.raises(ValueError, match="probability"):
                ImpairedLink(a, LinkParams()).link.loss = 2

    run(main())


@pytest.mark.kernel
def test_tap_port_latency_seen_by_kernel_ping(knet: KernelNet) -> None:
    async def main() -> None:
        r = await TapNetif.connect(knet.tap)
        assert isinstance(r, Ok), r
        imp = ImpairedLink(r.value, LinkParams(latency=0.05), seed=3)
        knet.move_in()
        stack = await IPv4Stack.connect(imp, cidr=f"{OUR_IP}/24")
        try:
            rc, out = await knet.exec("ping", "-c", "3", "-i", "0.2", "-W", "2", OUR_IP)
            assert rc == 0, out
            m = re.search(rb"= ([\d.]+)/", out)
            assert m is not None, out
            assert float(m.group(1)) >= 100.0, out  # 50 ms in, 50 ms out
        finally:
            await stack.disconnect()
            await imp.disconnect()

    run(main())
