"""TCP's whole-frame shortcut over IPv4 without offload (``TCP._frame_input``): it takes
the usual frames of a transfer and counts them exactly as the layer-by-layer path does;
everything else (a bad checksum, another MAC, an old address) goes the general way and is
judged and counted there."""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import ipaddress
import os
from typing import Any

from miragekit.link import VnetSwitch
from miragekit.net import TCP
from miragekit.net._ipstack import IPv4Stack
from miragekit.result import Ok
from miragekit.wire.tcp import ACK, TCPRepr


async def _pair() -> tuple[IPv4Stack, IPv4Stack, TCP[Any], TCP[Any]]:
    sw = VnetSwitch()
    sa = await IPv4Stack.connect(sw.add_interface("a"), cidr="10.0.0.1/24")
    sb = await IPv4Stack.connect(sw.add_interface("b"), cidr="10.0.0.2/24")
    return sa, sb, TCP(sa.ipv4), TCP(sb.ipv4)


def _counts(s: IPv4Stack, t: TCP[Any]) -> tuple[int, ...]:
    """Frames, IPv4 packets, IPv4 deliveries, TCP segments and frames merged into runs
    (each run of n frames is one segment of the endpoint's)."""
    e, c = s.ipv4.id().counters, s.ipv4.counters
    return (e.rx_frames, c.rx_packets, c.rx_delivered, t.stats["segments_in"], t.frames_merged)


async def _transfer(shortcut: bool) -> tuple[tuple[int, ...], tuple[int, ...], int, str]:
    sa, sb, ta, tb = await _pair()
    if not shortcut:
        sa.ipv4.frame_input = sb.ipv4.frame_input = None
    data = os.urandom(3 << 20)
    got: asyncio.Future[str] = asyncio.get_running_loop().create_future()

    async def sink(flow: Any) -> None:
        h = hashlib.sha256()
        while isinstance(r := await flow.read(), Ok):
            h.update(r.value)
        got.set_result(h.hexdigest())

    tb.listen(5001, sink)
    r = await ta.create_connection((ipaddress.IPv4Address("10.0.0.2"), 5001))
    assert isinstance(r, Ok), r
    assert await r.value.write(data) == Ok(None)
    await r.value.close()
    digest = await asyncio.wait_for(got, 30)
    assert digest == hashlib.sha256(data).hexdigest()
    fast = ta.frames_fast + tb.frames_fast
    counts = _counts(sa, ta), _counts(sb, tb)
    await ta.disconnect()
    await tb.disconnect()
    return counts[0], counts[1], fast, digest


def test_the_shortcut_takes_a_transfer_and_counts_as_the_layers_do() -> None:
    a1, b1, fast1, _ = asyncio.run(_transfer(shortcut=True))
    a0, b0, fast0, _ = asyncio.run(_transfer(shortcut=False))
    assert fast0 == 0
    # Nearly every frame of the transfer (not the handshake's, with their options).
    assert fast1 > 0.95 * (b1[0] + a1[0] - 10)
    # The receiver merged most data frames into runs; the layers never do.
    assert b1[4] > 0.5 * b1[1] and a0[4] == b0[4] == 0
    # The same frames are counted the same way whichever path took them (the number of
    # ACKs may differ a little with timing, so compare the relations, not the totals).
    for rx_frames, rx_packets, delivered, segments, merged in (a1, b1, a0, b0):
        assert rx_packets == delivered == segments + merged
        assert rx_frames >= rx_packets


def _frame(s: IPv4Stack, dst_mac: bytes, src: bytes, dst: bytes, seg: Any) -> memoryview:
    import struct

    iph = bytearray(struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(seg), 1, 0x4000, 64, 6, 0,
                                src, dst))  # fmt: skip
    v = sum(struct.unpack("!10H", iph))
    v = (v & 0xFFFF) + (v >> 16)
    v = (v & 0xFFFF) + (v >> 16)
    iph[10:12] = (~v & 0xFFFF).to_bytes(2, "big")
    return memoryview(dst_mac + b"\x02\x00\x00\x00\x00\x09" + b"\x08\x00" + bytes(iph) + seg)


def test_what_the_shortcut_does_not_take_is_judged_by_the_general_path() -> None:
    async def main() -> None:
        _, sb, ta, tb = await _pair()
        a, b = bytes([10, 0, 0, 1]), bytes([10, 0, 0, 2])
        mac = sb.ipv4.id().mac().packed
        tb.listen(80, lambda flow: asyncio.sleep(0))
        good = TCPRepr(40000, 80, 1, 0, ACK, 1000, b"x" * 100, timestamp=(1, 0)).to_bytes(a, b)
        assert len(good) == 132 and good[12] == 0x80
        bad = bytearray(good)
        bad[-1] ^= 0xFF  # the payload no longer matches the checksum
        recv = sb.iface.receive_frame
        recv(_frame(sb, mac, a, b, bytes(bad)))
        assert tb.stats["bad_checksum"] == 1
        # To another MAC: not for us (counted by Ethernet), neither path delivers it.
        recv(_frame(sb, b"\x02\x00\x00\x00\x00\x77", a, b, good))
        assert sb.ipv4.id().counters.rx_not_for_us == 1
        # To an address we no longer have: the shortcut follows the change.
        await sb.ipv4.set_ip(ipaddress.IPv4Address("10.0.0.3"))
        recv(_frame(sb, mac, a, b, good))
        assert sb.ipv4.counters.rx_not_for_us == 1
        # A good frame to our address: taken by the shortcut, answered by the endpoint
        # (no connection: a reset).
        c = bytes([10, 0, 0, 3])
        good3 = TCPRepr(40000, 80, 1, 5, ACK, 1000, b"x" * 100, timestamp=(1, 0)).to_bytes(a, c)
        recv(_frame(sb, mac, a, c, good3))
        assert tb.frames_fast == 1
        assert tb.stats["segments_in"] == 1
        await ta.disconnect()
        await tb.disconnect()
        assert sb.ipv4.frame_input is None

    asyncio.run(main())


def test_a_frame_counts_the_same_on_either_path() -> None:
    async def one(shortcut: bool) -> tuple[dict[str, int], dict[str, int], dict[str, int], int]:
        _, sb, ta, tb = await _pair()
        if not shortcut:
            sb.ipv4.frame_input = None
        a, b = bytes([10, 0, 0, 1]), bytes([10, 0, 0, 2])
        mac = sb.ipv4.id().mac().packed
        seg = TCPRepr(40000, 80, 1, 5, ACK, 1000, b"y" * 200, timestamp=(9, 0)).to_bytes(a, b)
        sb.iface.receive_frame(_frame(sb, mac, a, b, seg))
        out = (
            dataclasses.asdict(sb.ipv4.id().counters),
            dataclasses.asdict(sb.ipv4.counters),
            dict(tb.stats),
            tb.frames_fast,
        )
        await ta.disconnect()
        await tb.disconnect()
        return out

    fast = asyncio.run(one(True))
    slow = asyncio.run(one(False))
    assert (fast[3], slow[3]) == (1, 0)
    assert fast[:3] == slow[:3]
    assert fast[1]["rx_delivered"] == 1 and fast[2]["rst_sent"] == 1
