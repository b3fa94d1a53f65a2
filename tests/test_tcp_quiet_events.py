"""Loop events the TCP driver saves when they would do nothing (``miragekit.net._tcp``).

A pure ACK that only moves its connection's timers (a request/response peer's delayed
ACK) schedules no flush: the driver takes it at once and, with nothing to send, no
news for a flow and no earlier deadline for the loop's timer, leaves the loop alone
(``TCP._ack_quiet``). An ACK of everything sent is not held for a later ACK to stand
for it: none can acknowledge more.

The endpoint's timer entries: a new one (an idle connection's, no loop timer armed for
it yet) follows its connection's deadline later, and an ACK that leaves a connection
no deadline removes its entry, so the loop's timer is not armed for, or re-armed from,
deadlines that are gone (``TCPEndpoint.armed_unseen``, ``TCPEndpoint.handle_next``)."""

from __future__ import annotations

import asyncio
import ipaddress
from typing import Any

from tests.test_tcp_ack_merge import _connect
from tests.test_tcp_frame_input import _pair

from miragekit import sim
from miragekit.net import TCP
from miragekit.result import Ok
from miragekit.tcp import Connection


async def _sent_unacked(flow: Any, peer: Any) -> Connection:
    """Write 100 bytes and let the peer see them: it is then ready to ACK all of it."""
    assert await flow.write(b"x" * 100) == Ok(None)
    await asyncio.sleep(0.001)
    (seg,) = [s for s in peer.new_segments() if s.payload]
    assert seg.timestamp is not None
    peer.tsval = seg.timestamp[0]
    peer.rcv_nxt = (seg.seq + len(seg.payload)) & 0xFFFFFFFF
    conn: Connection = flow.connection
    return conn


def test_an_ack_of_everything_sent_schedules_no_flush() -> None:
    async def main() -> None:
        tcp, flow, peer, _ = await _connect(ca=False)
        conn = await _sent_unacked(flow, peer)
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
        conn = await _sent_unacked(flow, peer)
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


async def _echoes(n: int) -> tuple[TCP[Any], TCP[Any], Any, Connection]:
    """A client and an echo server (two stacks on a switch); ``n`` echoes of 100 bytes a
    second apart (past the server's quick ACKs: its delayed ACK armed by each request);
    the client's flow and the server's connection."""
    _, _, ta, tb = await _pair()

    async def echo(flow: Any) -> None:
        while isinstance(r := await flow.read(), Ok):
            await flow.write(bytes(r.value))

    tb.listen(7, echo)
    r = await ta.create_connection((ipaddress.IPv4Address("10.0.0.2"), 7))
    assert isinstance(r, Ok)
    flow = r.value
    for _ in range(n):
        await asyncio.sleep(1.0)
        assert await flow.write(b"x" * 100) == Ok(None)
        got = await flow.read()
        assert isinstance(got, Ok) and len(got.value) == 100
    (conn,) = tb.endpoint.connections.values()
    return ta, tb, flow, conn


def test_a_new_timer_entry_follows_the_deadline_the_reply_leaves() -> None:
    """The request's delayed ACK made the server connection's entry; the reply, in the
    same loop turn and before the driver armed its timer, carried the ACK and left the
    retransmission deadline: the entry is that deadline, not the delayed ACK's, so no
    loop timer fires for the delayed ACK."""

    async def main() -> None:
        _, tb, _, conn = await _echoes(20)
        ep = tb.endpoint
        key = ep.key_of(conn)
        assert key is not None
        deadline = conn.poll_at()
        assert deadline is not None and conn._ack_at is None  # the reply carried the ACK
        assert conn._ep_at == deadline  # the entry is the connection's own field
        assert ep.poll_at() == deadline

    sim.run(main(), seed=1)


def test_an_ack_that_leaves_no_deadline_drops_the_entry() -> None:
    """The client's delayed ACK acknowledges the echo: the server connection has no
    deadline left, and its entry goes at once (the timer that comes up for it finds
    nothing to look at)."""

    async def main() -> None:
        _, tb, _, conn = await _echoes(20)
        ep = tb.endpoint
        key = ep.key_of(conn)
        assert key is not None and conn._ep_at >= 0.0
        await asyncio.sleep(0.1)  # the client's delayed ACK (40 ms) came and went
        assert conn.poll_at() is None
        assert conn._ep_at < 0.0
        assert ep.poll_at() is None

    sim.run(main(), seed=1)
