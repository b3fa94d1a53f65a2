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

from miragekit import sim
from miragekit.link import VnetSwitch
from miragekit.net import TCP
from miragekit.net._ipstack import IPv4Stack
from miragekit.result import Ok
from miragekit.wire.tcp import ACK, SYN, TCPRepr


async def _pair() -> tuple[IPv4Stack, IPv4Stack, TCP[Any], TCP[Any]]:
    sw = VnetSwitch()
    sa = await IPv4Stack.connect(sw.add_interface("a"), cidr="10.0.0.1/24")
    sb = await IPv4Stack.connect(sw.add_interface("b"), cidr="10.0.0.2/24")
    return sa, sb, TCP(sa.ipv4), TCP(sb.ipv4)


def _counts(s: IPv4Stack, t: TCP[Any]) -> tuple[int, ...]:
    """Frames, IPv4 packets, IPv4 deliveries, TCP segments and frames merged into runs
    (each run of n frames is one segment of the endpoint's) or pure ACKs merged (a
    later one stood for them)."""
    e, c = s.ipv4.id().counters, s.ipv4.counters
    merged = t.frames_merged + t.acks_merged
    return (e.rx_frames, c.rx_packets, c.rx_delivered, t.stats["segments_in"], merged)


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


def _with_checksum(seg: bytes, field: int) -> bytes:
    return seg[:16] + field.to_bytes(2, "big") + seg[18:]


def _zero_checksum_segment(a: bytes, b: bytes, plen: int) -> bytes:
    """A segment whose correct checksum field is 0x0000: its last payload word is chosen
    so that everything else sums to 0xFFFF."""
    payload = bytes(range(256)) * (plen // 256) + bytes(plen % 256)
    seg = TCPRepr(40000, 80, 1, 5, ACK, 1000, payload, timestamp=(9, 0)).to_bytes(a, b)
    word = seg[16:18]  # the complement of the rest's sum, which the last word held as 0
    assert bytes(seg[-2:]) == b"\0\0" and len(seg) % 2 == 0
    rep = TCPRepr(40000, 80, 1, 5, ACK, 1000, payload[:-2] + word, timestamp=(9, 0))
    out = bytes(rep.to_bytes(a, b))
    assert out[16:18] == b"\0\0"
    return out


def test_checksum_edge_cases_are_judged_alike_on_either_path() -> None:
    """The shortcut's checksum (little-endian residue, wire.sums_to_zero) accepts and
    drops exactly what the general path does: odd lengths, full-sized segments (the
    folded sum), a correct zero field and its ones'-complement twin 0xFFFF (both mean
    -0; Linux takes both), a zero field where the sum is not zero, one flipped bit."""
    a, b = bytes([10, 0, 0, 1]), bytes([10, 0, 0, 2])

    def seg(plen: int) -> bytes:
        data = bytes((i * 31 + 7) & 0xFF for i in range(plen))
        return bytes(TCPRepr(40000, 80, 1, 5, ACK, 1000, data, timestamp=(9, 0)).to_bytes(a, b))

    def flipped(s: bytes) -> bytes:
        return s[:-1] + bytes([s[-1] ^ 0x10])

    zero = _zero_checksum_segment(a, b, 1448)
    zero_small = _zero_checksum_segment(a, b, 100)
    cases: dict[str, tuple[bytes, bool]] = {
        "odd, small": (seg(101), True),
        "odd, full-sized": (seg(1447), True),
        "even, full-sized": (seg(1448), True),
        "odd, full-sized, one bit flipped": (flipped(seg(1447)), False),
        "even, full-sized, one bit flipped": (flipped(seg(1448)), False),
        "odd, small, one bit flipped": (flipped(seg(101)), False),
        "zero field, correct": (zero, True),
        "zero field, correct, small": (zero_small, True),
        "0xFFFF for a zero field": (_with_checksum(zero, 0xFFFF), True),
        "zero field where the sum is not zero": (_with_checksum(seg(1448), 0), False),
        "zero field, small, sum not zero": (_with_checksum(seg(100), 0), False),
    }
    assert seg(1448)[16:18] != b"\0\0" and seg(100)[16:18] != b"\0\0"

    async def judge(shortcut: bool) -> dict[str, tuple[int, int, int]]:
        out = {}
        for name, (s, _) in cases.items():
            _, sb, ta, tb = await _pair()
            if not shortcut:
                sb.ipv4.frame_input = None
            mac = sb.ipv4.id().mac().packed
            sb.iface.receive_frame(_frame(sb, mac, a, b, s))
            out[name] = (tb.stats["segments_in"], tb.stats["bad_checksum"], tb.frames_fast)
            await ta.disconnect()
            await tb.disconnect()
        return out

    fast = asyncio.run(judge(True))
    slow = asyncio.run(judge(False))
    for name, (_, good) in cases.items():
        assert fast[name] == ((1, 0, 1) if good else (0, 1, 0)), name
        assert slow[name] == ((1, 0, 0) if good else (0, 1, 0)), name


def _syn_wire(shortcut: bool) -> tuple[list[bytes], tuple[dict[str, int], ...], int]:
    """Every frame, in simulated time, of a connection to a listener (its SYN with MSS,
    SACK, timestamps and window scale; 1 byte each way; closed), a SYN to a closed port,
    and a SYN with a bad checksum; then the server stack's counters and its
    :attr:`TCP.syns_fast`."""
    frames: list[bytes] = []
    out: list[Any] = []

    async def main() -> None:
        sw = VnetSwitch()
        sw.add_interface("mon", mirror=True).set_receiver(lambda f: frames.append(bytes(f)))
        sa = await IPv4Stack.connect(sw.add_interface("a"), cidr="10.0.0.1/24")
        sb = await IPv4Stack.connect(sw.add_interface("b"), cidr="10.0.0.2/24")
        ta, tb = TCP(sa.ipv4), TCP(sb.ipv4)
        if not shortcut:
            sb.ipv4.frame_input = None

        async def echo(flow: Any) -> None:
            while isinstance(r := await flow.read(), Ok):
                await flow.write(r.value)

        tb.listen(80, echo)
        server = ipaddress.IPv4Address("10.0.0.2")
        r = await ta.create_connection((server, 80))
        assert isinstance(r, Ok), r
        assert await r.value.write(b"q") == Ok(None)
        got = await r.value.read()
        assert isinstance(got, Ok) and bytes(got.value) == b"q"
        await r.value.close()
        refused = await ta.create_connection((server, 81))
        assert not isinstance(refused, Ok)
        a, b = bytes([10, 0, 0, 1]), bytes([10, 0, 0, 2])
        syn = bytearray(TCPRepr(40001, 80, 7, 0, SYN, 1000, mss=1460).to_bytes(a, b))
        syn[16] ^= 0x01  # the checksum no longer matches
        sb.iface.receive_frame(_frame(sb, sb.ipv4.id().mac().packed, a, b, bytes(syn)))
        await asyncio.sleep(1)
        out.append((
            dataclasses.asdict(sb.ipv4.id().counters),
            dataclasses.asdict(sb.ipv4.counters),
            dict(tb.stats),
        ))  # fmt: skip
        out.append(tb.syns_fast)
        await ta.disconnect()
        await tb.disconnect()

    sim.run(main(), seed=1)
    return frames, out[0], out[1]


def test_a_syn_is_taken_whole_and_answered_and_counted_as_by_the_layers() -> None:
    fast_frames, fast_counts, fast_syns = _syn_wire(shortcut=True)
    slow_frames, slow_counts, slow_syns = _syn_wire(shortcut=False)
    # The listener's SYN and the closed port's; the bad checksum goes the general way.
    assert (fast_syns, slow_syns) == (2, 0)
    assert fast_counts == slow_counts
    assert fast_counts[2]["bad_checksum"] == 1 and fast_counts[2]["rst_sent"] == 1
    # SYN-ACK (with its options), the RST for port 81: the same frames, byte for byte.
    assert len(fast_frames) >= 10
    assert fast_frames == slow_frames
