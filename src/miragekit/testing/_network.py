"""A conformance suite for NETWORK devices (and their FrameLink fast path, if offered).

Why: every backend (TAP, the virtual switch, the pcap wrapper) must behave alike, so the
stack above cannot tell them apart. Run :func:`check_network_pair` against a factory for
two connected devices: a frame written on one must arrive on the other. Other traffic
on the link (a kernel's neighbour discovery, say) is ignored: the suite only looks at
frames of its own ethertype.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from ..macaddr import MacAddr
from ..v1 import Network

#: IEEE 802 "local experimental" ethertype: no stack answers it.
ETHERTYPE_TEST = b"\x88\xb5"

NetworkPairFactory = Callable[[], Awaitable[tuple[Network, Network]]]


def _frame(dst: MacAddr, src: MacAddr, payload: bytes) -> bytes:
    return dst.packed + src.packed + ETHERTYPE_TEST + payload


async def _collect(
    got: list[bytes], n: int, timeout: float, what: str, event: asyncio.Event
) -> None:
    async def wait() -> None:
        while len(got) < n:
            event.clear()
            await event.wait()

    try:
        await asyncio.wait_for(wait(), timeout)
    except TimeoutError:
        raise AssertionError(f"{what}: got {len(got)} of {n} frames within {timeout}s") from None


async def check_network_pair(make_pair: NetworkPairFactory, *, timeout: float = 5.0) -> None:
    """Check write/writev/listen/stats/disconnect (and send/sendv/set_receiver/mtu)."""
    a, b = await make_pair()
    try:
        ma, mb = a.mac(), b.mac()
        assert isinstance(ma, MacAddr) and isinstance(mb, MacAddr), "mac() must be a MacAddr"
        assert ma != mb, "the two devices need distinct MACs"
        assert not ma.is_multicast and not mb.is_multicast, "mac() must be unicast"

        got: list[bytes] = []
        arrived = asyncio.Event()

        async def on_frame(frame: memoryview) -> None:
            assert isinstance(frame, memoryview), "listen must pass a memoryview"
            if bytes(frame[12:14]) == ETHERTYPE_TEST:
                got.append(bytes(frame))
                arrived.set()

        listener = asyncio.create_task(b.listen(on_frame))
        await asyncio.sleep(0)
        a.reset_stats_counters()
        b.reset_stats_counters()
        s = a.get_stats_counters()
        assert (s.tx_pkts, s.tx_bytes) == (0, 0), "reset_stats_counters must zero the counters"

        f1 = _frame(mb, ma, b"conformance: write" + bytes(40))
        buf = bytearray(f1)
        await a.write(buf)
        buf[14:] = bytes(len(buf) - 14)  # the device must not keep a reference to buf
        f2 = _frame(mb, ma, b"conformance: writev, " + b"in three parts" + bytes(30))
        await a.writev([f2[:6], memoryview(f2)[6:20], bytearray(f2[20:])])
        await _collect(got, 2, timeout, "write/writev", arrived)
        assert got[:2] == [f1, f2], "frames must arrive whole, in order and unchanged"

        sa, sb = a.get_stats_counters(), b.get_stats_counters()
        assert sa.tx_pkts >= 2 and sa.tx_bytes >= len(f1) + len(f2), f"tx stats wrong: {sa}"
        assert sb.rx_pkts >= 2 and sb.rx_bytes >= len(f1) + len(f2), f"rx stats wrong: {sb}"

        # the fast path, where offered
        if all(hasattr(d, "set_receiver") for d in (a, b)):
            fast: list[bytes] = []
            fast_arrived = asyncio.Event()

            def receiver(frame: memoryview) -> None:
                if bytes(frame[12:14]) == ETHERTYPE_TEST:
                    fast.append(bytes(frame))
                    fast_arrived.set()

            mtu = getattr(a, "mtu", None)
            assert isinstance(mtu, int) and mtu >= 68, f"mtu must be an int >= 68, got {mtu!r}"
            a.set_receiver(receiver)  # type: ignore[attr-defined]
            f3 = _frame(ma, mb, b"conformance: send" + bytes(50))
            f4 = _frame(ma, mb, b"conformance: sendv" + bytes(49))
            b.send(memoryview(f3))  # type: ignore[attr-defined]
            b.sendv([f4[:14], f4[14:]])  # type: ignore[attr-defined]
            await _collect(fast, 2, timeout, "send/sendv/set_receiver", fast_arrived)
            assert fast[:2] == [f3, f4], "fast-path frames must arrive whole and in order"
            a.set_receiver(None)  # type: ignore[attr-defined]

        await b.disconnect()
        try:
            await asyncio.wait_for(listener, timeout)
        except TimeoutError:
            raise AssertionError("listen must return once the device is disconnected") from None
    finally:
        await a.disconnect()
        await b.disconnect()
