"""A reply that goes out whole without the general walk (``Connection.segment_now``,
which the driver asks for the flows that wrote since its last run): the segment and
every bit of the connection's state must be what ``segments_to_send`` gives, and on the
wire a request/response exchange must be byte for byte the one the general way sends. Also: an ACK of everything in flight
(every request of a request/response peer) skips the recovery branches and ends in the
state the general way leaves."""

from __future__ import annotations

import copy
import dataclasses
import ipaddress
from collections import deque
from enum import Enum
from typing import Any

import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st
from tests.tcp_helpers import LOCAL_SEQ, PLAIN, REMOTE_SEQ, established, out, seg_in

from miragekit import sim
from miragekit.link import LinkParams, VnetSwitch
from miragekit.net import TCP as TCPLayer
from miragekit.net import IPv4Stack
from miragekit.result import Ok
from miragekit.tcp import Config, Connection, TCPEndpoint
from miragekit.tcp._sendbuf import _NO_CHUNKS
from miragekit.tcp.seqnum import MASK
from miragekit.wire.tcp import ACK, PSH, TCPRepr

RICH = Config(recv_buffer=64000, send_buffer=64000)  # timestamps, SACK, delayed ACK, TLP


def snapshot(o: Any) -> Any:
    """Everything an object holds, recursively, as plain comparable values."""
    if o is None or isinstance(o, (bool, int, float, str, bytes, Enum)):
        return o
    if isinstance(o, (bytearray, memoryview)):
        return bytes(o)
    if isinstance(o, tuple):
        return tuple(snapshot(x) for x in o)
    if isinstance(o, (list, deque)):
        return [snapshot(x) for x in o]
    if isinstance(o, (set, frozenset)):
        return sorted(map(repr, o))
    if isinstance(o, dict):
        return {k: snapshot(v) for k, v in o.items()}
    if dataclasses.is_dataclass(o):
        return o
    names = [n for cls in type(o).__mro__ for n in getattr(cls, "__slots__", ())]
    names += list(getattr(o, "__dict__", {}))
    return (type(o).__name__, {n: snapshot(getattr(o, n)) for n in names if hasattr(o, n)})


def clone(c: Connection) -> Connection:
    """A deep copy; the send buffers' shared empty sentinel stays shared."""
    return copy.deepcopy(c, {id(_NO_CHUNKS): _NO_CHUNKS})


def _ts(c: Connection, tsv: int) -> dict[str, Any]:
    """The timestamp option a peer sends: its clock, our latest TSval echoed."""
    return {"timestamp": (tsv, c._ts_offset)} if c._ts_on else {}


# What the peer does, in turn: send data in order (acknowledging part or all of ours),
# send data beyond a hole, acknowledge without data, or we send; time moves on between.
step = st.tuples(st.sampled_from(["data", "hole", "ack", "send", "wait"]), st.integers(0, 3000))


def history(c: Connection, steps: list[tuple[str, int]]) -> tuple[float, int, int]:
    """Drive ``c`` through the peer's doings (``step``; also "read": the application
    takes what arrived); the time after, the peer's next sequence number and TSval."""
    now = 0.0
    peer_seq = REMOTE_SEQ
    tsv = 101
    for op, n in steps:
        now += 0.001 * (n % 50)
        tsv += 1
        sent = c._snd_max - c._snd_una
        ack = (c._snd_una + (sent if n % 3 else sent // 2)) & MASK
        if op == "data":
            c.handle_segment(now, seg_in(ACK, peer_seq, ack, b"q" * (n % 700 + 1), **_ts(c, tsv)))
            peer_seq += n % 700 + 1
        elif op == "hole":
            c.handle_segment(now, seg_in(ACK, peer_seq + 50, ack, b"h" * 10, **_ts(c, tsv)))
        elif op == "ack":
            c.handle_segment(now, seg_in(ACK, peer_seq, ack, **_ts(c, tsv)))
        elif op == "send":
            c.send(b"s" * n)
        elif op == "read":
            c.receive()
        else:
            at = c.poll_at()
            if at is not None and at <= now + 1.0:
                now = max(now, at)
                c.handle_timer(now)
        c.segments_to_send(now)
        c.take_events()
    return now, peer_seq, tsv


@settings(max_examples=300, deadline=None)
@given(
    rich=st.booleans(),
    steps=st.lists(step, max_size=12),
    sizes=st.lists(st.integers(0, 1000), max_size=3),
)
def test_segment_now_is_segments_to_send(
    rich: bool, steps: list[tuple[str, int]], sizes: list[int]
) -> None:
    c = (
        established(RICH, mss=1460, timestamp=(100, 0), sack_permitted=True)
        if rich
        else established()
    )
    now, _, _ = history(c, steps)
    now += 0.0005
    data = bytes(range(256)) * 4
    for size in sizes:  # the writes of one loop turn
        c.send(data[:size])
    before = snapshot(c)
    general = clone(c)
    fast = c
    seg = fast.segment_now(now)
    segs = general.segments_to_send(now)
    event("general" if seg is None else "one segment")
    if seg is None:
        assert snapshot(fast) == before  # nothing changed: the general way takes it
        return
    assert segs == [seg]
    assert seg.flags == ACK | PSH and bytes(seg.payload) == b"".join(data[:n] for n in sizes)
    assert snapshot(fast) == snapshot(general)
    assert fast.poll_at() == general.poll_at()


def test_segment_now_declines_what_the_general_way_must_send() -> None:
    """Nothing queued, more than one MSS, data in flight, a closed window, SACK news, a
    queued control segment: None, and the general way sends it."""
    c = established()
    assert c.segment_now(0.0) is None
    c.send(b"x" * (c.mss + 1))
    assert c.segment_now(0.0) is None
    assert [len(s.payload) for s in out(c)] == [c.mss]  # the runt waits (Nagle)
    c.handle_segment(0.0, seg_in(ACK, REMOTE_SEQ, LOCAL_SEQ + c.mss))
    runt = c.segment_now(0.0)  # nothing in flight now: the runt goes, one segment
    assert runt is not None and bytes(runt.payload) == b"x"
    c.handle_segment(0.0, seg_in(ACK, REMOTE_SEQ, LOCAL_SEQ + c.mss + 1))
    c.send(b"first")
    seg = c.segment_now(0.0)
    assert seg is not None and bytes(seg.payload) == b"first"
    assert seg.seq == (LOCAL_SEQ + c.mss + 1) & MASK and seg.ack == REMOTE_SEQ & MASK
    c.send(b"second")
    assert c.segment_now(0.0) is None  # "first" is in flight
    una = LOCAL_SEQ + c.mss + 1 + 5
    c.handle_segment(0.0, seg_in(ACK, REMOTE_SEQ, una, window=0))
    assert c.segment_now(0.0) is None  # zero window: the persist timer's business
    c.handle_segment(0.0, seg_in(ACK, REMOTE_SEQ, una))
    c.handle_segment(0.0, seg_in(ACK, REMOTE_SEQ + 10, una, b"beyond"))
    assert c.segment_now(0.0) is None  # the duplicate ACK for the hole is due
    c.abort()
    assert c.segment_now(0.0) is None


def test_an_ack_of_everything_in_flight_ends_as_the_general_way() -> None:
    """The short branch of ``_on_ack`` (everything acknowledged, nothing SACKed, no
    recovery) against the same ACK taken by the general branches."""
    for cfg, opts in ((PLAIN, {}), (RICH, {"timestamp": (100, 0), "sack_permitted": True})):
        c = established(cfg, mss=1460, **opts)
        for i in range(3):
            c.send(b"reply")
            assert c.segment_now(0.01 * i) is not None
            general = clone(c)
            general._tlp_end = -1  # not None: the general branches; no episode below it
            req = seg_in(ACK, REMOTE_SEQ + 3 * i, c._snd_max, b"req", **_ts(c, 200 + i))
            c.handle_segment(0.01 * i + 0.005, req)
            general.handle_segment(0.01 * i + 0.005, req)
            general._tlp_end = None
            assert snapshot(c) == snapshot(general)
            assert c.poll_at() == general.poll_at()
            assert c._rtx_at is None and c._tlp_at is None
            c.receive()
            general.receive()


def _wire(how: str) -> tuple[list[bytes], int, int, int]:
    """A request/response exchange between two stacks in simulated time, the server
    replying with ``how`` (``send_now``, as the asyncio transport does, or ``write``):
    every frame on the wire, the server's fast sends and the frames the server sent."""
    frames: list[bytes] = []
    counts = [0, 0, 0]

    async def main() -> None:
        sw = VnetSwitch()
        sw.add_interface("mon", mirror=True).set_receiver(lambda f: frames.append(bytes(f)))
        link = LinkParams(latency=0.0005)
        sa = await IPv4Stack.connect(sw.add_interface("a", link=link), cidr="10.0.0.1/24")
        sb = await IPv4Stack.connect(sw.add_interface("b", link=link), cidr="10.0.0.2/24")
        client, server = TCPLayer(sa.ipv4), TCPLayer(sb.ipv4)

        async def serve(flow: Any) -> None:
            while isinstance(r := await flow.read(), Ok):
                reply = b"HTTP/1.1 200 OK\r\n\r\n" + bytes(r.value)
                if how == "send_now":
                    assert flow.send_now(reply) == len(reply)
                elif how == "write":
                    assert await flow.write(reply) == Ok(None)
                else:  # two writes in one turn: still one segment
                    assert flow.send_now(reply[:10]) == 10
                    assert flow.send_now(reply[10:]) == len(reply) - 10

        server.listen(80, serve)
        r = await client.create_connection((ipaddress.IPv4Address("10.0.0.2"), 80))
        assert isinstance(r, Ok)
        flow = r.value
        for i in range(20):
            assert await flow.write(b"GET /%d" % i) == Ok(None)
            got = await flow.read()
            assert isinstance(got, Ok) and bytes(got.value).endswith(b"GET /%d" % i)
        await flow.close()
        counts[0] = server.sends_fast
        counts[1] = sb.ipv4.id().counters.tx_frames
        counts[2] = server.segments_next

    sim.run(main(), seed=1)
    return frames, counts[0], counts[1], counts[2]


@pytest.mark.parametrize("how", ["send_now", "write", "two writes"])
def test_replies_on_the_wire_are_the_general_ways(
    how: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    fast, n_fast, tx_fast, _ = _wire(how)
    assert n_fast >= 20  # every reply after the handshake
    monkeypatch.setattr(TCPEndpoint, "segment_now", lambda self, conn, now: None)
    general, n_general, tx_general, _ = _wire(how)
    assert n_general == 0
    assert fast == general
    assert tx_fast == tx_general
    # One frame per reply, carrying the request's ACK: no pure ACK before it.
    replies = [f for f in fast if f[26:30] == bytes([10, 0, 0, 2]) and len(f) > 66 + 12]
    assert len(replies) == 20
    assert all(TCPRepr.parse(f[34:]).flags == ACK | PSH for f in replies)


def test_a_flow_keeps_its_connections_prebuilt_headers() -> None:
    """A reply's frame comes from the TcpSender the flow bound at its first reply: the
    one the general way uses for the 4-tuple (one IPv4 ID counter). The flow owns it:
    when the driver's table of them is cleared the flow keeps it, and the general way's
    next lookup of the 4-tuple finds that one again (no second sender)."""
    seen: list[bool] = []

    async def main() -> None:
        sw = VnetSwitch()
        sa = await IPv4Stack.connect(sw.add_interface("a"), cidr="10.0.0.1/24")
        sb = await IPv4Stack.connect(sw.add_interface("b"), cidr="10.0.0.2/24")
        client, server = TCPLayer(sa.ipv4), TCPLayer(sb.ipv4)

        async def serve(flow: Any) -> None:
            while isinstance(r := await flow.read(), Ok):
                assert flow.send_now(b"re:" + bytes(r.value)) > 0

        server.listen(80, serve)
        r = await client.create_connection((ipaddress.IPv4Address("10.0.0.2"), 80))
        assert isinstance(r, Ok)
        flow = r.value

        async def ask(i: int) -> None:
            assert await flow.write(b"GET /%d" % i) == Ok(None)
            got = await flow.read()
            assert isinstance(got, Ok) and bytes(got.value) == b"re:GET /%d" % i

        await ask(0)
        (sflow,) = server._flows.values()
        senders = server._senders
        assert senders is not None
        (key,) = senders
        fast = server.sends_fast
        own = sflow._tx
        assert fast >= 1 and own is senders[key]
        for port in range(4096):  # other 4-tuples fill the table: it is cleared
            server._sender(key[0], key[1], 81, port)
        assert key not in senders and sflow._tx is own
        await ask(1)
        assert server.sends_fast == fast + 1
        seen.append(sflow._tx is own and server._sender(*key) is own and senders[key] is own)
        await flow.close()

    sim.run(main(), seed=1)
    assert seen == [True]


def test_acks_drop_the_send_times_they_cover() -> None:
    """RACK's record of when data left: an ACK of part drops the entries it covers, an
    ACK of everything (the per-request case, which skips the search) drops them all."""
    c = established(RICH, mss=1460, timestamp=(100, 0), sack_permitted=True)
    una, m = c._snd_una, c.mss
    c.send(b"x" * m)
    assert len(c.segments_to_send(0.0)) == 1
    c.send(b"y" * m)
    assert len(c.segments_to_send(0.001)) == 1
    sb = c._scoreboard
    assert (sb.sent_end, sb.sent_time) == ([una + m, una + 2 * m], [0.0, 0.001])
    c.handle_segment(0.01, seg_in(ACK, REMOTE_SEQ, una + m, **_ts(c, 200)))
    assert (sb.sent_end, sb.sent_time) == ([una + 2 * m], [0.001])
    c.handle_segment(0.02, seg_in(ACK, REMOTE_SEQ, una + 2 * m, **_ts(c, 201)))
    assert (sb.sent_end, sb.sent_time) == ([], [])
