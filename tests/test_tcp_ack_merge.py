"""A bulk sender's pure ACKs merged in a receive batch (``TCP._hold_ack``,
``Connection.takes_ack``): of the pure ACKs of one connection that come together, the
connection walks only the last, as if the receiver had sent one stretch ACK.

What is checked: a whole transfer to a scripted peer that acknowledges every second
segment, its ACKs coming in batches, sends the very same frames with and without the
merging; the merging happens only in congestion avoidance (slow start grows per ACK);
an ACK that must be judged alone (a duplicate, one of unsent data, an old TSval) is
never merged over, and the ones before it still count."""

from __future__ import annotations

import asyncio
import dataclasses
import ipaddress
import random
from typing import Any

import pytest
from tests.test_tcp_frame_input import _frame

from miragekit import sim
from miragekit.link import VnetSwitch
from miragekit.net import TCP
from miragekit.net._ipstack import IPv4Stack
from miragekit.result import Ok
from miragekit.tcp import Connection
from miragekit.wire.tcp import ACK, SYN, TCPRepr

US, PEER = bytes([10, 0, 0, 2]), bytes([10, 0, 0, 1])
PEER_MAC = b"\x02\x00\x00\x00\x00\x09"
PEER_ISS = 7_000_000


class Peer:
    """The receiving end, scripted: takes our frames in order, answers in batches."""

    def __init__(self, stack: IPv4Stack, sent: list[bytes]) -> None:
        self.stack = stack
        self.sent = sent
        self.seen = 0
        self.rcv_nxt = 0
        self.port = 0
        self.tsval = 0
        self.got = 0
        self.mac = stack.ipv4.id().mac().packed

    def new_segments(self) -> list[TCPRepr]:
        out = []
        for f in self.sent[self.seen :]:
            if f[12:14] == b"\x08\x00" and f[23] == 6:
                out.append(TCPRepr.parse(f[34:], US, PEER))
        self.seen = len(self.sent)
        return out

    def frame(self, ack: int, *, tsecr: int | None = None, window: int = 65535) -> memoryview:
        ts = (1000 + self.got // 1000, self.tsval if tsecr is None else tsecr)
        seg = TCPRepr(5201, self.port, PEER_ISS + 1, ack & 0xFFFFFFFF, ACK, window, b"",
                      timestamp=ts)  # fmt: skip
        return _frame(self.stack, self.mac, PEER, US, seg.to_bytes(PEER, US))

    def batch(self, frames: list[memoryview]) -> None:
        """Frames that arrive together: one device read, then the driver's flush."""
        for f in frames:
            self.stack.iface.receive_frame(f)


async def _connect(
    ca: bool, congestion: str = "newreno"
) -> tuple[TCP[Any], Any, Peer, list[bytes]]:
    sw = VnetSwitch()
    vif = sw.add_interface("ours")
    sent: list[bytes] = []
    send = vif._send

    def record(data: Any) -> None:
        sent.append(bytes(data))
        send(data)

    vif._send = record  # type: ignore[method-assign]
    stack = await IPv4Stack.connect(vif, cidr="10.0.0.2/24")
    loop = asyncio.get_running_loop()
    stack.ipv4.arp.add_static(int.from_bytes(PEER, "big"), PEER_MAC, loop.time())
    tcp = TCP(stack.ipv4)
    tcp.config = tcp.endpoint.config = dataclasses.replace(tcp.config, congestion=congestion)
    peer = Peer(stack, sent)
    task = asyncio.ensure_future(tcp.create_connection((ipaddress.IPv4Address("10.0.0.1"), 5201)))
    await asyncio.sleep(0.001)
    (syn,) = peer.new_segments()
    assert syn.flags & SYN and syn.timestamp is not None
    peer.port = syn.src_port
    peer.rcv_nxt = (syn.seq + 1) & 0xFFFFFFFF
    synack = TCPRepr(5201, syn.src_port, PEER_ISS, peer.rcv_nxt, SYN | ACK, 65535, b"",
                     mss=1460, wscale=7, sack_permitted=True,
                     timestamp=(1000, syn.timestamp[0]))  # fmt: skip
    peer.batch([_frame(stack, peer.mac, PEER, US, synack.to_bytes(PEER, US))])
    r = await task
    assert isinstance(r, Ok), r
    flow = r.value
    if ca:
        cc = flow.connection._cc
        cc.ssthresh = cc.cwnd  # congestion avoidance from the start
    return tcp, flow, peer, sent


async def _transfer(
    ca: bool, total: int = 600_000, congestion: str = "newreno"
) -> tuple[list[bytes], int, int]:
    """Our frames of a transfer of ``total`` bytes, the ACKs merged and the final cwnd."""
    tcp, flow, peer, sent = await _connect(ca, congestion)
    data = random.Random(3).randbytes(total)
    writer = asyncio.ensure_future(flow.write(data))
    start = peer.rcv_nxt
    while (peer.rcv_nxt - start) & 0xFFFFFFFF < total:
        await asyncio.sleep(0.001)
        acks = []
        for i, seg in enumerate(peer.new_segments()):
            if seg.payload and seg.seq == peer.rcv_nxt:
                peer.rcv_nxt = (seg.seq + len(seg.payload)) & 0xFFFFFFFF
                peer.got += len(seg.payload)
                assert seg.timestamp is not None
                peer.tsval = seg.timestamp[0]
                if i % 2:
                    acks.append(peer.frame(peer.rcv_nxt))
        acks.append(peer.frame(peer.rcv_nxt))
        peer.batch(acks)
    assert await writer == Ok(None)
    cwnd = flow.connection._cc.cwnd
    flow.abort()
    await tcp.disconnect()
    return sent, tcp.acks_merged, cwnd


def _no_merging(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(Connection, "takes_ack", lambda self, *a: False)


def test_merged_acks_send_the_same_frames(monkeypatch: pytest.MonkeyPatch) -> None:
    """Congestion avoidance (NewReno's byte counting, additive in the bytes ACKed): the
    same frames, byte for byte, whether the connection walks every ACK of a batch or
    only the last."""
    merged, n, cwnd = sim.run(_transfer(ca=True), seed=1)
    assert n > 100 and len(merged) > 400
    with monkeypatch.context() as m:
        _no_merging(m)
        each, n0, cwnd0 = sim.run(_transfer(ca=True), seed=1)
    assert n0 == 0
    assert cwnd == cwnd0
    assert merged == each


def test_merged_acks_with_cubic_are_one_stretch_ack(monkeypatch: pytest.MonkeyPatch) -> None:
    """CUBIC's growth per ACK is not additive (its target and divisor move with cwnd and
    SRTT), so merged ACKs are what they stand for, one stretch ACK: the same data in the
    same number of frames, and a window within a segment of the one of the walk of every
    ACK."""
    merged, n, cwnd = sim.run(_transfer(ca=True, congestion="cubic"), seed=1)
    assert n > 100 and len(merged) > 400
    with monkeypatch.context() as m:
        _no_merging(m)
        each, n0, cwnd0 = sim.run(_transfer(ca=True, congestion="cubic"), seed=1)
    assert n0 == 0
    assert abs(cwnd - cwnd0) < 1448

    def payload(frames: list[bytes]) -> bytes:
        return b"".join(f[66:] for f in frames if len(f) > 66)

    assert len(merged) == len(each) and payload(merged) == payload(each)


def test_slow_start_walks_every_ack() -> None:
    """Slow start grows cwnd per ACK (at most 2 SMSS each, RFC 3465): nothing merged."""
    _, n, _ = sim.run(_transfer(ca=False, total=200_000), seed=1)
    assert n == 0


def test_acks_that_must_be_judged_alone_are_not_merged_over() -> None:
    async def main() -> None:
        tcp, flow, peer, _ = await _connect(ca=True)
        conn = flow.connection
        assert await flow.write(b"x" * 20000) == Ok(None)
        await asyncio.sleep(0.001)
        segs = [s for s in peer.new_segments() if s.payload]
        assert len(segs) >= 6
        peer.tsval = segs[-1].timestamp[0] if segs[-1].timestamp else 0
        una = conn.snd_una
        ends = [(s.seq + len(s.payload)) & 0xFFFFFFFF for s in segs]
        # Two ACKs of new data, then one of data never sent: the two count (the first
        # merged into the second), the third is judged alone (an ACK of unsent data).
        peer.batch([peer.frame(ends[0]), peer.frame(ends[1]), peer.frame(ends[-1] + 5000)])
        assert tcp.acks_merged == 1
        await asyncio.sleep(0)
        assert conn.snd_una == una + (ends[1] - segs[0].seq) % 2**32
        # A duplicate ACK is not merged into the ACK before it: it is counted as one.
        peer.batch([peer.frame(ends[2]), peer.frame(ends[2]), peer.frame(ends[2])])
        assert tcp.acks_merged == 1
        await asyncio.sleep(0)
        assert conn._dupacks == 2
        # An ACK whose TSval is older than the one before it: not merged either.
        peer.got = 100_000
        newer = peer.frame(ends[3])
        peer.got = 0
        peer.batch([newer, peer.frame(ends[4])])
        assert tcp.acks_merged == 1
        await asyncio.sleep(0)
        flow.abort()
        await tcp.disconnect()

    sim.run(main(), seed=2)


class _CountingGets(dict[Any, Any]):
    """The endpoint's connection table, counting lookups."""

    gets = 0

    def get(self, key: Any, default: Any = None) -> Any:
        self.gets += 1
        return super().get(key, default)


def test_a_pure_ack_not_held_is_looked_up_once() -> None:
    """In slow start the connection declines to have its ACK held (``takes_ack``): the
    driver hands the ACK on with the connection it found, not looked up again, and
    header prediction takes it."""

    async def main() -> None:
        tcp, flow, peer, _ = await _connect(ca=False)
        conn = flow.connection
        assert await flow.write(b"x" * 3000) == Ok(None)
        await asyncio.sleep(0.001)
        segs = [s for s in peer.new_segments() if s.payload]
        peer.tsval = segs[-1].timestamp[0] if segs[-1].timestamp else 0
        end = (segs[-1].seq + len(segs[-1].payload)) & 0xFFFFFFFF
        table = _CountingGets(tcp.endpoint.connections)
        tcp.endpoint.connections = table
        fast = tcp.segments_next
        peer.batch([peer.frame(end)])
        assert tcp._rx_ack is None  # not held: slow start
        assert table.gets == 1
        assert tcp.segments_next == fast + 1  # taken by header prediction
        assert conn.snd_una == end
        flow.abort()
        await tcp.disconnect()

    sim.run(main(), seed=1)
