"""Runs: back-to-back in-order data frames of one connection, merged by TCP's whole-frame
shortcut into one segment for the endpoint (as Linux's GRO merges them). The same frames
fed one by one through the layers (no shortcut, so no runs) must give the application
the same bytes and the peer the same ACKs, batch by batch: one ACK at least every second
full-sized segment (RFC 5681 4.2), a duplicate ACK with SACK blocks for each frame past a
hole, an immediate ACK when the hole fills."""

from __future__ import annotations

import asyncio
import struct
from typing import Any

from miragekit.link import VnetSwitch
from miragekit.net import TCP
from miragekit.net._ipstack import IPv4Stack
from miragekit.result import Ok
from miragekit.wire.tcp import ACK, PSH, SYN, TCPRepr

PEER, US = bytes([10, 0, 0, 1]), bytes([10, 0, 0, 2])
PEER_MAC = b"\x02\x00\x00\x00\x00\x01"
MSS = 1448  # 1500 - 20 - 20 - 12 (timestamps)
ISS = 1_000_000


def frame(dst_mac: bytes, seg: TCPRepr) -> memoryview:
    tcp = seg.to_bytes(PEER, US)
    iph = bytearray(struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(tcp), 1, 0x4000, 64, 6, 0,
                                PEER, US))  # fmt: skip
    v = sum(struct.unpack("!10H", iph))
    v = (v & 0xFFFF) + (v >> 16)
    v = (v & 0xFFFF) + (v >> 16)
    iph[10:12] = (~v & 0xFFFF).to_bytes(2, "big")
    return memoryview(dst_mac + PEER_MAC + b"\x08\x00" + bytes(iph) + tcp)


# Each batch: frames handed to the stack in one go (as one device wake-up reads them),
# given as (length, extra flags, window); a length of -N is a hole of N bytes (a frame
# not sent), None sends the frame that was left out before.
W = 20000
PLAN: list[list[tuple[int | None, int, int]]] = [
    [(MSS, 0, W)] * 3,
    [(MSS, 0, W)] * 2,  # two full-sized: ACKed at once
    [(MSS, 0, W)],  # one: the ACK is delayed
    [(MSS, PSH if i == 4 else 0, W) for i in range(12)],  # a run of 11 after the first
    [(MSS, 0, W)] * 2,  # after that run, two full-sized segments are still ACKed at once
    [(MSS, 0, W), (700, 0, W), (MSS, 0, W), (MSS, 0, W)],  # a shorter frame ends a run
    [(MSS, 0, W), (MSS, 0, W + 1), (MSS, 0, W + 1)],  # the window changes within the batch
    [(MSS, 0, W), (MSS, 0, W), (-MSS, 0, W), (-MSS, 0, W), (MSS, 0, W), (MSS, 0, W)],
    [(None, 0, W), (None, 0, W)],  # the hole fills, one frame at a time
    [(MSS, 0, W)] * 6,  # quick ACKs after the hole
]
BATCHES: list[list[tuple[int, int, int, int]]] = []  # (offset, length, flags, window)
_at = 0
_holes: list[tuple[int, int]] = []
for _plan in PLAN:
    BATCHES.append([])
    for _n, _flags, _window in _plan:
        if _n is None:
            BATCHES[-1].append((*_holes.pop(0), _flags, _window))
        elif _n < 0:
            _holes.append((_at, -_n))
            _at -= _n
        else:
            BATCHES[-1].append((_at, _n, _flags, _window))
            _at += _n
TOTAL = _at


Acks = list[list[tuple[int, int, int, Any]]]


def interleaved(a: list[Any], b: list[Any]) -> list[Any]:
    """The frames of two connections mixed as a device could hand them over: in turns,
    bursts of 3, 1, 2, 4, 3, 1, ... frames of one connection."""
    out: list[Any] = []
    queues = [list(a), list(b)]
    k = 0
    while queues[0] or queues[1]:
        q = queues[k % 2]
        out.extend(q[: (3, 1, 2, 4)[k % 4]])
        del q[: (3, 1, 2, 4)[k % 4]]
        k += 1
    return out


async def exchange(
    shortcut: bool, ports: tuple[int, ...] = (40000,)
) -> tuple[Acks, list[bytes], int]:
    """The ACKs our stack sent after each batch (port, ACK number, window, SACK blocks),
    the bytes the application read on each connection (from ``ports``, their frames
    interleaved), and the frames merged into runs."""
    sw = VnetSwitch()
    sb = await IPv4Stack.connect(sw.add_interface("b"), cidr="10.0.0.2/24")
    peer = sw.add_interface("p", mac="02:00:00:00:00:01")
    sent: list[TCPRepr] = []
    peer.set_receiver(
        lambda f: (
            sent.append(TCPRepr.parse(bytes(f[34:]), US, PEER))
            if f[12:14].tobytes() == b"\x08\x00"
            else None
        )
    )
    loop = asyncio.get_running_loop()
    sb.ipv4.arp.add_static(int.from_bytes(PEER, "big"), PEER_MAC, loop.time())
    tb = TCP(sb.ipv4)
    if not shortcut:
        sb.ipv4.frame_input = None
    got = {port: bytearray() for port in ports}
    done = {port: loop.create_future() for port in ports}

    async def sink(flow: Any) -> None:
        port = flow.get_dest()[1]
        while isinstance(r := await flow.read(), Ok):
            got[port].extend(r.value)
            if len(got[port]) >= TOTAL:
                done[port].set_result(None)

    tb.listen(80, sink)
    mac = sb.ipv4.id().mac().packed
    recv = sb.iface.receive_frame

    async def turns() -> None:
        for _ in range(6):
            await asyncio.sleep(0)

    ours: dict[int, int] = {}
    tsecr = 0
    for port in ports:
        syn = TCPRepr(port, 80, ISS, 0, SYN, 65535, b"", mss=1460, wscale=0,
                      sack_permitted=True, timestamp=(1, 0))  # fmt: skip
        recv(frame(mac, syn))
        await turns()
        synack = sent.pop()
        assert synack.flags == SYN | ACK
        ours[port] = (synack.seq + 1) & 0xFFFFFFFF
        tsecr = synack.timestamp[0] if synack.timestamp else 0
        recv(frame(mac, TCPRepr(port, 80, ISS + 1, ours[port], ACK, W, b"", timestamp=(2, tsecr))))
        await turns()
    data = bytes(i * 7 & 0xFF for i in range(TOTAL))
    acks: Acks = []
    for n, batch in enumerate(BATCHES):
        per_flow = [
            [
                TCPRepr(
                    port,
                    80,
                    ISS + 1 + off,
                    ours[port],
                    ACK | flags,
                    window,
                    data[off : off + length],
                    timestamp=(10 + n, tsecr),
                )
                for off, length, flags, window in batch
            ]
            for port in ports
        ]
        segs = per_flow[0] if len(ports) == 1 else interleaved(*per_flow)
        for seg in segs:
            recv(frame(mac, seg))
        await turns()
        acks.append([(s.dst_port, s.ack - ISS - 1, s.window, s.sack_blocks) for s in sent])
        sent.clear()
    for port in ports:
        await asyncio.wait_for(done[port], 5)
        assert bytes(got[port]) == data
    merged = tb.frames_merged
    await tb.disconnect()
    return acks, [bytes(got[port]) for port in ports], merged


def test_runs_send_the_acks_and_deliver_the_bytes_of_frame_by_frame() -> None:
    runs, data_runs, merged = asyncio.run(exchange(shortcut=True))
    one_by_one, data_one, merged_one = asyncio.run(exchange(shortcut=False))
    assert merged_one == 0 and merged >= 10  # runs were made; the layers make none
    assert data_runs == data_one
    assert runs == one_by_one
    # What the peer sees, spelt out for the first batches.
    assert [a for _, a, _, _ in runs[0]] == [3 * MSS]
    assert [a for _, a, _, _ in runs[1]] == [5 * MSS]  # every second full-sized segment
    assert runs[2] == []  # a lone segment: the ACK waits for the delayed-ACK timer
    assert [a for _, a, _, _ in runs[4]] == [20 * MSS]
    assert len(runs[7]) == 2 and all(blocks for *_, blocks in runs[7])  # dup ACKs, SACK


def test_interleaved_connections_make_short_runs_and_the_same_acks() -> None:
    """Two connections' frames mixed in every batch: a run ends where the other
    connection's frame comes, each connection's bytes and ACKs stay its own."""
    ports = (40000, 40001)
    runs, data_runs, merged = asyncio.run(exchange(shortcut=True, ports=ports))
    one_by_one, data_one, merged_one = asyncio.run(exchange(shortcut=False, ports=ports))
    assert merged_one == 0 and merged > 0
    assert data_runs == data_one
    assert runs == one_by_one
    assert {p for batch in runs for p, *_ in batch} == set(ports)
