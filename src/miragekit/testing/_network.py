"""A conformance suite for NETWORK devices (and their FrameLink fast path, if offered).

Why: every backend (TAP, the virtual switch, the pcap wrapper, VXLAN) must behave alike,
so the stack above cannot tell them apart. Run :func:`check_network_pair` against a
factory for two connected devices: a frame written on one must arrive on the other,
whole, whatever its size, however many are sent. Other traffic on the link (a kernel's
neighbour discovery, say) is ignored: the suite only looks at frames of its own
ethertype. Each check (:data:`NETWORK_CHECKS`) gets a fresh pair and disconnects it; a
failure raises :class:`~miragekit.testing.ConformanceError` naming the check.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Collection

from ..macaddr import MacAddr
from ..v1 import Network
from ._conformance import expect, fail, on_pair, run_on_fresh

#: IEEE 802 "local experimental" ethertype: no stack answers it.
ETHERTYPE_TEST = b"\x88\xb5"

#: How long frames may take to arrive before the check fails.
ARRIVAL = 5.0

NetworkPairFactory = Callable[[], Awaitable[tuple[Network, Network]]]


def _frame(dst: MacAddr, src: MacAddr, payload: bytes) -> bytes:
    return dst.packed + src.packed + ETHERTYPE_TEST + payload


def _numbered(dst: MacAddr, src: MacAddr, i: int, size: int) -> bytes:
    """A test frame of ``size`` bytes whose payload starts with ``i`` and is unique to it."""
    head = _frame(dst, src, i.to_bytes(4, "big"))
    body = bytes((i * 31 + k) & 0xFF for k in range(size - len(head)))
    return head + body


class _Rx:
    """Collects the test frames a device passes to ``listen``."""

    def __init__(self, dev: Network) -> None:
        self.got: list[bytes] = []
        self.arrived = asyncio.Event()
        self.task = asyncio.ensure_future(dev.listen(self.on_frame))

    async def on_frame(self, frame: memoryview) -> None:
        if not isinstance(frame, memoryview):
            fail(f"listen passed a {type(frame).__name__}, not a memoryview")
        if bytes(frame[12:14]) == ETHERTYPE_TEST:
            self.got.append(bytes(frame))
            self.arrived.set()

    async def wait(self, n: int, what: str | None) -> list[bytes]:
        """The frames once ``n`` arrived; after :data:`ARRIVAL` fail naming ``what``, or
        (``what`` None) return those that came."""

        async def until() -> None:
            while len(self.got) < n:
                self.arrived.clear()
                await self.arrived.wait()

        try:
            await asyncio.wait_for(until(), ARRIVAL)
        except TimeoutError:
            if what is not None:
                fail(f"{what}: {len(self.got)} of {n} frames arrived within {ARRIVAL:g} s")
        return self.got


def _max_frame(dev: Network) -> int:
    mtu = getattr(dev, "mtu", 1500)
    return 14 + (mtu if isinstance(mtu, int) and mtu >= 68 else 1500)


async def _macs(a: Network, b: Network) -> None:
    ma, mb = a.mac(), b.mac()
    expect(isinstance(ma, MacAddr) and isinstance(mb, MacAddr), "mac() must be a MacAddr")
    expect(ma != mb, "the two devices need distinct MACs")
    expect(not ma.is_multicast and not mb.is_multicast, "mac() must be unicast")


async def _write_writev(a: Network, b: Network) -> None:
    ma, mb = a.mac(), b.mac()
    rx = _Rx(b)
    await asyncio.sleep(0)
    f1 = _frame(mb, ma, b"conformance: write" + bytes(40))
    buf = bytearray(f1)
    await a.write(buf)
    buf[14:] = bytes(len(buf) - 14)  # the device must not keep a reference to buf
    f2 = _frame(mb, ma, b"conformance: writev, " + b"in three parts" + bytes(30))
    await a.writev([f2[:6], memoryview(f2)[6:20], bytearray(f2[20:])])
    got = await rx.wait(2, "write/writev")
    expect(got[:2] == [f1, f2], "frames must arrive whole, in order and unchanged")


async def _stats(a: Network, b: Network) -> None:
    ma, mb = a.mac(), b.mac()
    rx = _Rx(b)
    await asyncio.sleep(0)
    a.reset_stats_counters()
    b.reset_stats_counters()
    s = a.get_stats_counters()
    expect((s.tx_pkts, s.tx_bytes) == (0, 0), "reset_stats_counters must zero the counters")
    frames = [_numbered(mb, ma, i, 60 + 10 * i) for i in range(3)]
    for f in frames:
        await a.write(f)
    await rx.wait(3, "frames for the counters")
    total = sum(len(f) for f in frames)
    sa, sb = a.get_stats_counters(), b.get_stats_counters()
    expect(sa.tx_pkts >= 3 and sa.tx_bytes >= total, f"tx stats wrong after 3 frames: {sa}")
    expect(sb.rx_pkts >= 3 and sb.rx_bytes >= total, f"rx stats wrong after 3 frames: {sb}")


async def _frame_sizes(a: Network, b: Network) -> None:
    """Small, middling and full-size frames all arrive whole (none cut, none dropped)."""
    ma, mb = a.mac(), b.mac()
    top = min(_max_frame(a), _max_frame(b))
    sizes = sorted({60, 64, 99, 100, 101, 128, 512, 999, 1000, 1001, 1200, top - 1, top})
    sizes = [n for n in sizes if n <= top]
    rx = _Rx(b)
    await asyncio.sleep(0)
    frames = [_numbered(mb, ma, i, n) for i, n in enumerate(sizes)]
    for f in frames:
        await a.write(f)
    got = await rx.wait(len(frames), None)
    by_id = {g[14:18]: g for g in got}
    for f in frames:
        g = by_id.get(f[14:18])
        if g is None:
            missing = [len(f) for f in frames if f[14:18] not in by_id]
            fail(f"frames of {missing} bytes never arrived (of sizes {sizes})")
        expect(g == f, f"a frame of {len(f)} bytes arrived as {len(g)} bytes or changed")


async def _many_frames(a: Network, b: Network) -> None:
    """Hundreds of frames in a row all arrive (in batches, so no queue has to hold all)."""
    ma, mb = a.mac(), b.mac()
    rx = _Rx(b)
    await asyncio.sleep(0)
    sent: list[bytes] = []
    for batch in range(10):
        for i in range(batch * 30, batch * 30 + 30):
            f = _numbered(mb, ma, i, 60 + i % 200)
            sent.append(f)
            await a.write(f)
        await rx.wait(len(sent), f"frames {batch * 30 + 1}-{batch * 30 + 30} of 300")
    expect(sorted(rx.got) == sorted(sent), "300 frames did not all arrive unchanged")


async def _fast_path(a: Network, b: Network) -> None:
    if not all(hasattr(d, "set_receiver") for d in (a, b)):
        return  # the FrameLink fast path is optional
    ma, mb = a.mac(), b.mac()
    fast: list[bytes] = []
    arrived = asyncio.Event()

    def receiver(frame: memoryview) -> None:
        if bytes(frame[12:14]) == ETHERTYPE_TEST:
            fast.append(bytes(frame))
            arrived.set()

    mtu = getattr(a, "mtu", None)
    expect(isinstance(mtu, int) and mtu >= 68, f"mtu must be an int >= 68, got {mtu!r}")
    a.set_receiver(receiver)  # type: ignore[attr-defined]
    f3 = _frame(ma, mb, b"conformance: send" + bytes(50))
    f4 = _frame(ma, mb, b"conformance: sendv" + bytes(49))
    b.send(memoryview(f3))  # type: ignore[attr-defined]
    b.sendv([f4[:14], f4[14:]])  # type: ignore[attr-defined]
    try:
        async with asyncio.timeout(ARRIVAL):
            while len(fast) < 2:
                arrived.clear()
                await arrived.wait()
    except TimeoutError:
        fail(f"send/sendv/set_receiver: {len(fast)} of 2 frames within {ARRIVAL:g} s")
    expect(fast[:2] == [f3, f4], "fast-path frames must arrive whole and in order")
    a.set_receiver(None)  # type: ignore[attr-defined]


async def _disconnect(a: Network, b: Network) -> None:
    rx = _Rx(b)
    await asyncio.sleep(0)
    await b.disconnect()
    try:
        await asyncio.wait_for(rx.task, ARRIVAL)
    except TimeoutError:
        fail("listen must return once the device is disconnected")


_CHECKS: dict[str, Callable[[Network, Network], Awaitable[None]]] = {
    "macs": _macs,
    "write_writev": _write_writev,
    "stats": _stats,
    "frame_sizes": _frame_sizes,
    "many_frames": _many_frames,
    "fast_path": _fast_path,
    "disconnect": _disconnect,
}

NETWORK_CHECKS: tuple[str, ...] = tuple(_CHECKS)
"""The names of the checks :func:`check_network_pair` runs, in order."""


async def check_network_pair(
    make_pair: NetworkPairFactory,
    *,
    only: Collection[str] | None = None,
    timeout: float = 60.0,
) -> None:
    """Run the NETWORK checks (all, or those in ``only``), each on a fresh pair."""

    async def disconnect_both(pair: tuple[Network, Network]) -> None:
        await pair[0].disconnect()
        await pair[1].disconnect()

    checks = {name: on_pair(c) for name, c in _CHECKS.items()}
    await run_on_fresh(make_pair, checks, disconnect_both, only, timeout)
