"""A run whose only output is one connection's pure ACK (its delayed ACK's timer fired)
sends it from the ACK's fields (``Connection.ack_now``, ``TCPEndpoint.ack_now``,
``TCP._send_ack``), not through a segment tuple and the general walk: the segment and
the bookkeeping are exactly those of ``segments_to_send``."""

from __future__ import annotations

import asyncio
from typing import Any

from tests.test_tcp_echo_keys import _established, _request
from tests.test_tcp_endpoint import A, B, Net
from tests.test_tcp_quiet_events import _echoes

from miragekit import sim
from miragekit.tcp import Connection, TCPEndpoint


def _owing_ack() -> tuple[Net, TCPEndpoint, Connection]:
    """The server got a request and its delayed ACK's timer has just fired."""
    net, client, server = _established()
    seg = _request(net, client)
    ep = net.eps[B]
    ep.handle_segment(net.now, A, B, seg)
    assert server.receive() == b"x" * 100
    net.now += 0.5
    assert ep.handle_timer(net.now)
    return net, ep, server


def _state(ep: TCPEndpoint, conn: Connection) -> Any:
    return (
        conn.poll_at(),
        conn._ack_now,
        conn._ack_at,
        conn._rcv_adv,
        conn._last_ack_sent,
        dict(conn.stats),
        conn._ep_at,
        ep.poll_at(),
        ep.has_work(),
    )


def test_the_ack_from_its_fields_is_segments_to_send_s() -> None:
    net, ep, conn = _owing_ack()
    r = ep.ack_now(net.now)
    assert r is not None
    got, laddr, raddr, fields = r
    assert got is conn
    fast = (laddr, raddr, conn.segment_of(fields))
    assert ep.segments_to_send(net.now) == []  # nothing else due, nothing twice
    after_fast = _state(ep, conn)

    net, ep, conn = _owing_ack()  # the same again, the general way
    (general,) = ep.segments_to_send(net.now)
    assert fast == general
    assert not general[2].payload and general[2].flags == 0x10
    assert after_fast == _state(ep, conn)


def test_not_taken_when_more_than_the_ack_is_due() -> None:
    net, ep, conn = _owing_ack()
    conn.send(b"y" * 10)  # a reply queued: the ACK goes with it
    ep.wake(conn)
    before = _state(ep, conn)
    assert ep.ack_now(net.now) is None
    assert _state(ep, conn) == before
    (seg,) = [s for _, _, s in ep.segments_to_send(net.now)]
    assert seg.payload == b"y" * 10


def test_a_client_s_delayed_acks_leave_without_the_general_walk() -> None:
    async def main() -> None:
        ta, tb, flow, _ = await _echoes(10)
        await asyncio.sleep(0.1)  # the last echo's delayed ACK
        # The handshake's last ACK and one delayed ACK an echo on the client, from the
        # ACK's fields; the server's replies carry theirs.
        assert ta.acks_fast == 1 + 10
        assert tb.acks_fast == 0
        flow.abort()
        await ta.disconnect()

    sim.run(main(), seed=1)
