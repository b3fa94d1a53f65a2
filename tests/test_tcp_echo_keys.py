"""The endpoint's 4-tuples: one key object per connection (``TCPEndpoint``).

A segment's addresses are fresh ``bytes`` (cut from its frame), so the 4-tuple made of
them matches the table's only by comparing both addresses. It is compared once, to find
the connection; every other dict and timer entry the segment touches (active, dirty,
scheduled, the timer queues) is then reached with the table's own tuple
(``Connection._ep_key``), found by identity. These tests count the address comparisons
a segment costs, and check that no entry holds a segment's tuple."""

from __future__ import annotations

from typing import Any

from tests.test_tcp_endpoint import A, B, Net

from miragekit.tcp import Connection, State, TCPEndpoint
from miragekit.wire.tcp import TCPRepr


class Counted(bytes):
    """An address that counts the comparisons made with it."""

    compared = 0

    def __eq__(self, other: object) -> bool:
        Counted.compared += 1
        return bytes.__eq__(self, other)

    __hash__ = bytes.__hash__


def _established() -> tuple[Net, Connection, Connection]:
    net = Net()
    net.eps[B].listen(80)
    client = net.eps[A].connect(net.now, A, B, 80)
    net.pump()
    server = net.eps[B].accept(80)
    assert server is not None and server.state == State.ESTABLISHED
    assert client.state == State.ESTABLISHED
    return net, client, server


def _request(net: Net, client: Connection) -> TCPRepr:
    """The client's 100 bytes, taken off the wire (not delivered)."""
    net.now += 1.0
    client.send(b"x" * 100)
    net.eps[A].wake(client)
    (seg,) = [s for _, _, s in net.eps[A].segments_to_send(net.now)]
    assert len(seg.payload) == 100
    return seg


def _entries(ep: TCPEndpoint) -> list[Any]:
    """Every 4-tuple the endpoint's per-connection dicts and timer queues hold."""
    keys: list[Any] = [*ep.connections, *ep._dirty, *ep._active]
    keys += [k for _, k in ep._timers]
    for q in ep._fifos:
        keys += [k for _, k in q]
    return keys


def _only_table_keys(ep: TCPEndpoint, conn: Connection) -> None:
    key = ep.key_of(conn)
    assert key is not None
    entries = _entries(ep)
    assert entries and all(k is key for k in entries)


def test_a_request_taken_by_handle_next_compares_its_addresses_once() -> None:
    net, client, server = _established()
    seg = _request(net, client)
    ep = net.eps[B]
    ts = seg.timestamp
    Counted.compared = 0
    assert ep.handle_next(
        net.now, Counted(A), Counted(B), seg.src_port, seg.dst_port, seg.seq, seg.ack,
        seg.window, seg.payload, ts,
    )  # fmt: skip
    # The connection's lookup (two addresses), and no other: its delayed ACK's timer
    # entry was reached with the table's tuple.
    assert Counted.compared == 2
    assert server.receive() == b"x" * 100
    _only_table_keys(ep, server)


def test_a_segment_taken_the_general_way_compares_its_addresses_once() -> None:
    net, client, server = _established()
    seg = _request(net, client)
    ep = net.eps[B]
    Counted.compared = 0
    ep.handle_segment(net.now, Counted(A), Counted(B), seg)
    assert Counted.compared == 2
    assert server.receive() == b"x" * 100
    _only_table_keys(ep, server)
    # Its output and timer after it reach the same entries by identity too.
    Counted.compared = 0
    net.now += 0.5  # past the delayed ACK
    ep.handle_timer(net.now)
    (ack,) = [s for _, _, s in ep.segments_to_send(net.now)]
    assert not ack.payload and ack.ack == (seg.seq + 100) & 0xFFFFFFFF
    assert Counted.compared == 0


def test_segment_now_gives_the_reply_s_fields_alone() -> None:
    """The reply's fields as the connection made them (no tuple of addresses around
    them, which the compiled build packed again with the fields); the addresses are
    the connection's key."""
    net, client, _ = _established()
    ep = net.eps[A]
    client.send(b"x" * 100)
    fields = ep.segment_now(client, net.now)
    assert fields is not None and len(fields) == 6
    _seq, _ack, flags, _window, payload, ts = fields
    assert bytes(payload) == b"x" * 100 and flags == 0x18 and ts is not None
    assert ep.key_of(client) == (A, client.local_port, B, 80)
