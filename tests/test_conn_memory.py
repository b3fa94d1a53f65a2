"""What a connection end holds between echoes: counters as fields until a rare one is
counted, no send deque once everything is acknowledged, one weak map entry per task."""

from __future__ import annotations

import asyncio
import weakref
from typing import Any, cast

from tests.test_tcp_conn_costs import CPORT, SECRET, A, B, _accepted

from miragekit import sim
from miragekit.sim._loop import SimLoop
from miragekit.tcp import Config, Connection, TCPEndpoint
from miragekit.tcp._conn import _STATS
from miragekit.tcp._sendbuf import _NO_CHUNKS
from miragekit.wire.tcp import ACK, PSH, TCPRepr


def test_counters_are_fields_until_a_rare_one_is_counted() -> None:
    ep = TCPEndpoint(secret=SECRET)
    conn, our = _accepted(ep)
    ep.handle_segment(0.0, B, A, TCPRepr(CPORT, 80, 1001, our, ACK | PSH, 64000, b"ping"))
    assert conn.receive() == b"ping"
    conn.send(b"pong")
    ep.wake(conn)
    (_, _, pong), *rest = ep.segments_to_send(0.0)
    assert not rest and pong.payload == b"pong"
    assert conn._sndbuf._chunks is not _NO_CHUNKS
    ep.handle_segment(0.01, B, A, TCPRepr(CPORT, 80, 1005, our + 4, ACK, 64000))
    # Segments in and out, everything acknowledged: no counter dict, no send deque.
    assert conn._xstats is None and conn._sndbuf._chunks is _NO_CHUNKS
    stats = conn.stats
    assert list(stats) == list(_STATS)
    assert (stats["segs_in"], stats["segs_out"]) == (3, 2)
    assert not any(v for k, v in stats.items() if k not in ("segs_in", "segs_out"))
    conn._count("dropped")
    conn._count("lost_retransmits", 3)
    stats = conn.stats
    assert list(stats) == list(_STATS)  # the same order whatever was counted first
    assert stats["dropped"] == 1 and stats["lost_retransmits"] == 3
    assert stats["segs_in"] == 3 and stats["rto"] == 0
    fresh = Connection(Config(), 1, 2, 3)
    assert fresh.stats == dict.fromkeys(_STATS, 0) and fresh.stats is not fresh.stats


def test_a_task_costs_one_weak_reference_and_keeps_its_host_and_rank() -> None:
    """The loop notes each task once (rank and host in one weak map entry): the host a
    task runs for and the creation order read as before."""
    seen: dict[str, object] = {}

    async def main() -> None:
        loop = asyncio.get_running_loop()
        me = asyncio.current_task()
        assert me is not None

        async def child() -> None:
            await asyncio.sleep(1)

        notes = cast(SimLoop, loop)._task_notes
        before = len(notes)
        kid = asyncio.create_task(child())
        seen["one_more"] = len(notes) == before + 1
        await asyncio.sleep(0)
        owner = cast(Any, loop).owner
        seen["hosts"] = (owner.get(me), owner.get(kid))
        seen["refs"] = weakref.getweakrefcount(kid)
        order = cast(SimLoop, loop).tasks_in_creation_order()
        seen["order"] = order.index(me) < order.index(kid)
        seen["kid_note"] = type(notes[kid]).__name__
        await kid

    net = sim.Network(seed=1)
    net.host("h0", main=main)
    net.run(until=3)
    assert seen["hosts"] == ("h0", "h0")
    # asyncio's set of all tasks and the loop's notes (two maps, rank and host: 3).
    assert seen["refs"] == 2
    assert seen["order"] is True  # main before its child
    assert seen["kid_note"] == "_TaskNote"
    assert seen["one_more"] is True
