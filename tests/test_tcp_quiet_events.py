"""Loop events the TCP driver saves when they would do nothing (``miragekit.net._tcp``).

A pure ACK that only moves its connection's timers (a request/response peer's delayed
ACK) schedules no flush: the driver takes it at once and, with nothing to send, no
news for a flow and no earlier deadline for the loop's timer, leaves the loop alone
(``TCP._ack_quiet``). An ACK of everything sent is not held for a later ACK to stand
for it: none can acknowledge more."""

from __future__ import annotations

import asyncio

from tests.test_tcp_ack_merge import _connect

from miragekit import sim
from miragekit.result import Ok


def test_an_ack_of_everything_sent_schedules_no_flush() -> None:
    async def main() -> None:
        tcp, flow, peer, _ = await _connect(ca=False)
        conn = flow.connection
        assert await flow.write(b"x" * 100) == Ok(None)
        await asyncio.sleep(0.001)
        (seg,) = [s for s in peer.new_segments() if s.payload]
        assert seg.timestamp is not None
        peer.tsval = seg.timestamp[0]
        peer.rcv_nxt = (seg.seq + len(seg.payload)) & 0xFFFFFFFF
        assert conn.snd_una != conn.snd_nxt
        assert tcp._flush_handle is None
        peer.batch([peer.frame(peer.rcv_nxt)])
        # Taken at once, and nothing for a flush to do: none is scheduled.
        assert conn.snd_una == conn.snd_nxt
        assert tcp._rx_ack is None
        assert tcp._flush_handle is None
        assert tcp._rx_now is None
        flow.abort()
        await tcp.disconnect()

    sim.run(main(), seed=1)


def test_an_ack_of_everything_sent_is_not_held_in_congestion_avoidance() -> None:
    async def main() -> None:
        tcp, flow, peer, _ = await _connect(ca=True)
        conn = flow.connection
        assert await flow.write(b"x" * 100) == Ok(None)
        await asyncio.sleep(0.001)
        (seg,) = [s for s in peer.new_segments() if s.payload]
        assert seg.timestamp is not None
        peer.tsval = seg.timestamp[0]
        peer.rcv_nxt = (seg.seq + len(seg.payload)) & 0xFFFFFFFF
        peer.batch([peer.frame(peer.rcv_nxt)])
        assert tcp._rx_ack is None  # not held
        assert conn.snd_una == conn.snd_nxt
        assert tcp._flush_handle is None
        flow.abort()
        await tcp.disconnect()

    sim.run(main(), seed=1)


def test_an_ack_that_leaves_work_still_flushes() -> None:
    """An ACK that lets queued data go (the window it opens) schedules the flush that
    sends it, as before."""

    async def main() -> None:
        tcp, flow, peer, _ = await _connect(ca=False)
        conn = flow.connection
        # More than the initial window: the rest waits for the first ACKs.
        writer = asyncio.ensure_future(flow.write(b"y" * 100_000))
        await asyncio.sleep(0.001)
        segs = [s for s in peer.new_segments() if s.payload]
        assert segs and conn.unsent
        last = segs[-1]
        assert last.timestamp is not None
        peer.tsval = last.timestamp[0]
        peer.rcv_nxt = (last.seq + len(last.payload)) & 0xFFFFFFFF
        peer.batch([peer.frame(peer.rcv_nxt)])
        assert tcp._flush_handle is not None
        await asyncio.sleep(0.001)
        assert [s for s in peer.new_segments() if s.payload]
        writer.cancel()
        flow.abort()
        await tcp.disconnect()

    sim.run(main(), seed=1)
