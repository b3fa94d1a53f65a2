"""What a connection end holds between echoes: counters as fields until a rare one is
counted, no send deque once everything is acknowledged, one weak map entry per task."""

from __future__ import annotations

import asyncio
import hashlib
import ipaddress
import random
import weakref
from collections.abc import Callable
from ipaddress import IPv4Address as A4
from typing import Any, cast

from tests.test_direct_stack import connect, two_stacks
from tests.test_tcp_conn_costs import CPORT, SECRET, A, B, _accepted

from miragekit import sim
from miragekit.net._ipid import IpIdGenerator
from miragekit.result import Ok
from miragekit.sim._loop import SimLoop
from miragekit.tcp import Config, Connected, Connection, DataReceived, EndOfStream, TCPEndpoint
from miragekit.tcp._conn import _STATS
from miragekit.tcp._sendbuf import _NO_CHUNKS
from miragekit.wire.tcp import ACK, FIN, PSH, RST, TCPRepr


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


def test_a_reader_with_a_list_is_appended_to_it_not_called() -> None:
    """``set_reader(callback, into)``: readable data lists the callback (once until read)
    with no call and no callable made per connection; a flow's on_readable uses it with
    the driver's list."""
    ep = TCPEndpoint(secret=SECRET)
    conn, our = _accepted(ep)
    told: list[Callable[[], None]] = []

    def reader() -> None:
        raise AssertionError("listed, not called")

    conn.take_events()  # Connected
    conn.set_reader(reader, told)
    ep.handle_segment(0.0, B, A, TCPRepr(CPORT, 80, 1001, our, ACK | PSH, 64000, b"ab"))
    ep.handle_segment(0.0, B, A, TCPRepr(CPORT, 80, 1003, our, ACK | PSH, 64000, b"cd"))
    assert told == [reader] and conn.next_event() is None
    assert conn.receive() == b"abcd"
    ep.handle_segment(0.0, B, A, TCPRepr(CPORT, 80, 1005, our, ACK | PSH, 64000, b"e"))
    assert told == [reader, reader]
    conn.set_reader(None, told)  # events again: the list is let go too
    assert conn._reader_list is None
    conn.receive()
    ep.handle_segment(0.0, B, A, TCPRepr(CPORT, 80, 1006, our, ACK | PSH, 64000, b"f"))
    assert told == [reader, reader] and isinstance(conn.next_event(), DataReceived)


def test_connections_share_their_addresses_text() -> None:
    """Two connections between the same hosts name the addresses with the same strings
    (one per address, not two per connection), and the names read as asyncio's would."""
    got: list[tuple[Any, Any]] = []

    async def serve(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        got.append((w.get_extra_info("sockname"), w.get_extra_info("peername")))
        await r.read()
        w.close()

    async def server() -> None:
        await asyncio.start_server(serve, None, 7000)
        await asyncio.sleep(10)

    async def client() -> None:
        await asyncio.sleep(0.5)
        ws = [(await asyncio.open_connection("srv", 7000))[1] for _ in range(2)]
        for w in ws:
            got.append((w.get_extra_info("sockname"), w.get_extra_info("peername")))
            w.close()

    net = sim.Network(seed=1)
    net.host("srv", main=server)
    net.host("cli", main=client)
    net.run(until=5)
    assert len(got) == 4
    texts = [n for pair in got for n, _ in pair]  # 8: each end's own and its peer's
    assert len(set(texts)) == 2 and all(isinstance(ipaddress.ip_address(n), A4) for n in texts)
    for t in texts:
        assert all(u is t for u in texts if u == t)


def test_ip_ids_per_destination_are_one_int_each_and_read_as_before() -> None:
    """The ID cache holds one int per destination (index << 16 | offset), not a tuple,
    and the IDs are the keyed hash's as RFC 7739 5.3 describes."""
    gen = IpIdGenerator(random.Random(7))
    key, table = gen._key, gen._table.tolist()
    dsts = [0x0A000001, 0x0A000002, 0xC0A80001, 0x0A000001]
    for _ in range(3):
        for dst in dsts:
            h = int.from_bytes(
                hashlib.blake2s(dst.to_bytes(4, "big"), key=key, digest_size=8).digest(), "big"
            )
            slot, offset = (h >> 16) % 2048, h & 0xFFFF
            table[slot] = (table[slot] + 1) & 0xFFFF
            assert gen.next(dst) == (table[slot] + offset) & 0xFFFF
    assert all(type(v) is int for v in gen._cache.values()) and len(gen._cache) == 3


def test_control_segments_queue_in_a_list_made_by_the_first() -> None:
    """No list of control segments while none is due (almost always): the first queued
    makes it, sending them lets it go, and they go out in the order queued."""
    ep = TCPEndpoint(secret=SECRET)
    conn, _ = _accepted(ep)
    assert conn._ctl_out is None
    rst = TCPRepr(80, CPORT, 1, 0, RST, 0)
    conn._queue_ctl(rst)
    conn._queue_ctl(rst)
    assert conn._ctl_out == [rst, rst]
    assert conn.segments_to_send(0.0) == [rst, rst] and conn._ctl_out is None
    # An abort's RST is one.
    conn.abort()
    assert conn._ctl_out is not None and len(conn._ctl_out) == 1
    (reset,) = conn.segments_to_send(0.0)
    assert reset.flags == RST | ACK and conn._ctl_out is None


def test_a_connected_flow_lets_its_connect_future_go() -> None:
    """Once connected, a flow holds no resolved future of its connect (each client flow
    kept one); the flow still works and closes as before."""

    async def main() -> None:
        _, client, server = await two_stacks()

        async def echo_once(flow: Any) -> None:
            r = await flow.read()
            assert isinstance(r, Ok)
            await flow.write(r.value)

        server.listen_tcpv4(port=7, callback=echo_once)
        flow = await connect(client, 7)
        assert flow._connected is None
        await flow.write(b"x")
        r = await flow.read()
        assert isinstance(r, Ok) and bytes(r.value) == b"x"
        await flow.close()

    asyncio.run(main())


def test_events_queue_in_a_list_made_by_the_first() -> None:
    """No event list while no event waits (a flow read through a reader has none most of
    the time): the first event makes it, taking them all lets it go; the order holds."""
    ep = TCPEndpoint(secret=SECRET)
    conn, our = _accepted(ep)
    assert conn.take_events() == [Connected()] and conn._events is None
    assert conn.take_events() == [] and conn._events is None
    ep.handle_segment(0.0, B, A, TCPRepr(CPORT, 80, 1001, our, ACK | PSH, 64000, b"ab"))
    assert conn._events == [DataReceived()]
    assert conn.next_event() == DataReceived() and conn.next_event() is None
    conn.receive()
    ep.handle_segment(0.0, B, A, TCPRepr(CPORT, 80, 1003, our, ACK | PSH | FIN, 64000, b"c"))
    assert conn.take_events() == [DataReceived(), EndOfStream()] and conn._events is None
    assert conn.take_events() == [] and conn.next_event() is None
