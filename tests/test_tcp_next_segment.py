"""Header prediction (``Connection.handle_next``, ``TCPEndpoint.handle_next``): an
established connection's next expected segment taken in one step, from the frame's
fields without a TCPRepr on the driver's frame path. Whatever it takes must end in the
state the full RFC 9293 walk of ``handle_segment`` leaves (every field of the
connection, its output and timers), what it declines must leave the connection as it
was, and on the wire a request/response exchange must be byte for byte the general
way's."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st
from tests.tcp_helpers import LOCAL_PORT, REMOTE_SEQ, established, seg_in
from tests.test_tcp_ecn import negotiated
from tests.test_tcp_small_send import RICH, _ts, _wire, clone, history, snapshot

from miragekit.tcp import Config, Connection, TCPEndpoint
from miragekit.wire.tcp import ACK, PSH, TCPRepr

KEEPALIVE = Config(recv_buffer=64000, send_buffer=64000, keepalive_idle=7.0)


def connection(cfg: str) -> Connection:
    """An established connection of the histories' configurations: ``plain`` (the
    defaults), ``rich`` (timestamps, SACK, delayed ACK) or ``keepalive``."""
    if cfg == "plain":
        return established()
    return established(
        RICH if cfg == "rich" else KEEPALIVE,
        mss=1460,
        timestamp=(100, 0),
        sack_permitted=True,
    )


step = st.tuples(
    st.sampled_from(["data", "hole", "ack", "send", "wait", "read"]), st.integers(0, 3000)
)


def _general(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every segment through the full walk of ``handle_segment``: no prediction."""
    monkeypatch.setattr(Connection, "handle_next", lambda self, *a, **kw: False)


@settings(max_examples=400, deadline=None)
@given(
    cfg=st.sampled_from(["plain", "rich", "keepalive"]),
    steps=st.lists(step, max_size=12),
    acked=st.sampled_from(["all", "part", "none", "beyond"]),
    plen=st.integers(0, 800),
    window=st.sampled_from([64000, 0, 1000, 70000]),
    seq_off=st.sampled_from([0, 0, 0, 1, -1]),
    ts_off=st.sampled_from([1, 1, 0, -5]),
    flags=st.sampled_from([ACK, ACK | PSH]),
    with_seg=st.booleans(),
)
def test_handle_next_is_the_full_walk(
    cfg: str,
    steps: list[tuple[str, int]],
    acked: str,
    plen: int,
    window: int,
    seq_off: int,
    ts_off: int,
    flags: int,
    with_seg: bool,
) -> None:
    c = connection(cfg)
    now, peer_seq, tsv = history(c, steps)
    now += 0.0007
    una, smax = c._snd_una, c._snd_max
    ack = {"all": smax, "part": una + (smax - una) // 2, "none": una, "beyond": smax + 1}[acked]
    seg = seg_in(
        flags,
        peer_seq + seq_off,
        ack,
        b"r" * plen,
        window=window,
        **_ts(c, tsv + ts_off),
    )
    before = snapshot(c)
    general = clone(c)
    fast = c
    if with_seg:
        taken = fast.handle_next(now, seg.seq, seg.ack, seg.window, seg.payload, seg.timestamp, seg)
    else:
        taken = fast.handle_next(now, seg.seq, seg.ack, seg.window, seg.payload, seg.timestamp)
    event(f"taken={taken} with_seg={with_seg}")
    if not taken:
        assert snapshot(fast) == before  # nothing changed: the general way takes it
        return
    with pytest.MonkeyPatch.context() as mp:
        _general(mp)
        general.handle_segment(now, seg)
    assert snapshot(fast) == snapshot(general)
    assert fast.poll_at() == general.poll_at()
    assert fast.segments_to_send(now) == general.segments_to_send(now)
    assert snapshot(fast) == snapshot(general)


def test_handle_next_takes_a_request_and_declines_the_rest() -> None:
    """The request that acknowledges the whole reply is taken without a TCPRepr; a FIN,
    a SACK block, data beyond a hole or an old timestamp go the general way."""
    c = established(RICH, mss=1460, timestamp=(100, 0), sack_permitted=True)
    c.send(b"reply")
    assert c.segment_now(0.01) is not None
    req = seg_in(ACK | PSH, REMOTE_SEQ, c._snd_max, b"GET /", **_ts(c, 200))
    assert c.handle_next(0.02, req.seq, req.ack, req.window, req.payload, req.timestamp)
    assert bytes(c.receive()) == b"GET /"
    assert c._snd_una == c._snd_max and c._rtx_at is None
    c.send(b"reply")
    assert c.segment_now(0.03) is not None
    # A hole before it: not the next expected segment.
    hole = seg_in(ACK, REMOTE_SEQ + 6, c._snd_max, b"x", **_ts(c, 201))
    assert not c.handle_next(0.04, hole.seq, hole.ack, hole.window, hole.payload, hole.timestamp)
    # A partial ACK (a bulk sender's usual one) is taken too, without the segment.
    una = c._snd_una
    part = seg_in(ACK, REMOTE_SEQ + 5, una + 2, b"", **_ts(c, 201))
    assert c.handle_next(0.04, part.seq, part.ack, part.window, part.payload, part.timestamp)
    assert c._snd_una == una + 2 and c._rtx_at is not None
    # An old timestamp (PAWS): the general way drops it.
    old = seg_in(ACK, REMOTE_SEQ + 5, c._snd_max, b"y", timestamp=(1, 0))
    assert not c.handle_next(0.04, old.seq, old.ack, old.window, old.payload, old.timestamp)


def test_an_ack_that_proves_a_retransmission_spurious_goes_the_general_way() -> None:
    """After a timeout's retransmission, an ACK of everything that echoes a TSval older
    than the retransmission undoes the loss response (RFC 3522 by timestamps): without
    the segment, handle_next declines it; with it, the general ACK processing runs."""
    for with_seg in (False, True):
        c = established(RICH, mss=1460, timestamp=(100, 0), sack_permitted=True)
        echo = c._ts_offset + 5  # our TSval of the original, at 5 ms
        c.send(b"reply")
        assert c.segment_now(0.005) is not None
        while c.stats["rto"] == 0:
            t = c.poll_at()
            assert t is not None
            c.handle_timer(t)
            c.segments_to_send(t)
        assert c._prior_cc is not None  # the loss response, to undo if spurious
        now = (c.poll_at() or 0.0) - 0.001
        late = seg_in(ACK, REMOTE_SEQ, c._snd_max, b"req", timestamp=(300, echo))
        general = clone(c)
        if with_seg:
            assert c.handle_next(
                now, late.seq, late.ack, late.window, late.payload, late.timestamp, late
            )
        else:
            assert not c.handle_next(
                now, late.seq, late.ack, late.window, late.payload, late.timestamp
            )
            c.handle_segment(now, late)
        with pytest.MonkeyPatch.context() as mp:
            _general(mp)
            general.handle_segment(now, late)
        assert c.stats["undos_by_timestamp"] == 1
        assert snapshot(c) == snapshot(general)


def _endpoint_pair(cfg: Config) -> tuple[TCPEndpoint, TCPEndpoint, Any, Any]:
    """A client and a server endpoint joined in memory, one connection established."""
    a, b = b"\x0a\0\0\x01", b"\x0a\0\0\x02"
    cli, srv = TCPEndpoint(cfg, secret=b"c" * 32), TCPEndpoint(cfg, secret=b"s" * 32)
    srv.listen(LOCAL_PORT)
    c = cli.connect(0.0, a, b, LOCAL_PORT)
    for _ in range(4):
        for x, y in ((cli, srv), (srv, cli)):
            for la, ra, seg in x.segments_to_send(0.0):
                y.handle_segment(0.0, la, ra, seg)
    s = srv.accept(LOCAL_PORT)
    assert s is not None
    c.set_nodelay(True)
    return cli, srv, c, s


def _exchange(cfg: Config, fields: bool, rounds: int) -> tuple[list[Any], list[Any], int]:
    """Requests and replies between two endpoints; the server's input by its fields
    (``fields``) or as TCPReprs: what the server sent, its timers, segments taken."""
    cli, srv, c, s = _endpoint_pair(cfg)
    sent: list[Any] = []
    timers: list[Any] = []
    taken = 0
    now = 0.0
    for i in range(rounds):
        now += 0.003
        c.send(b"GET /%d" % i)
        cli.wake(c)
        for la, ra, seg in cli.segments_to_send(now):
            assert isinstance(seg, TCPRepr)
            if (
                fields
                and seg.flags & 0x37 == ACK
                and not seg.sack_blocks
                and srv.handle_next(
                    now,
                    la,
                    ra,
                    seg.src_port,
                    seg.dst_port,
                    seg.seq,
                    seg.ack,
                    seg.window,
                    seg.payload,
                    seg.timestamp,
                )
            ):
                taken += 1
                continue
            srv.handle_segment(now, la, ra, seg)
        out = srv.segments_to_send(now)
        timers.append(srv.poll_at())
        for conn in srv.take_active():
            conn.take_events()
        assert bytes(s.receive()) == b"GET /%d" % i
        if i % 4 == 3:
            # The application is slow: the delayed ACK's timer fires first (after
            # any earlier entry, which finds nothing due and re-arms).
            while not out and (t := srv.poll_at()) is not None:
                now = max(now, t)
                srv.handle_timer(now)
                out += srv.segments_to_send(now)
                timers.append(srv.poll_at())
        s.send(b"HTTP/1.1 200 OK %d" % i)
        srv.wake(s)
        out += srv.segments_to_send(now)
        timers.append(srv.poll_at())
        sent += out
        for la, ra, seg in out:
            cli.handle_segment(now + 0.001, la, ra, seg)
        c.receive()
        cli.segments_to_send(now + 0.001)
        cli.take_active()
    return sent, timers, taken


@pytest.mark.parametrize("delayed_ack", [True, False])
def test_endpoint_handle_next_sends_and_times_as_the_general_way(delayed_ack: bool) -> None:
    """The endpoint's path arms a quiet connection's timer instead of walking it, and
    walks one with output due (an ACK at once without delayed ACKs): the segments sent,
    their order and every timer deadline are the general way's."""
    cfg = Config(mss=1460, delayed_ack=delayed_ack)
    fast, fast_timers, taken = _exchange(cfg, True, 24)
    general, general_timers, none = _exchange(cfg, False, 24)
    assert none == 0 and taken >= 20
    assert fast == general
    assert fast_timers == general_timers
    acks = [seg for _l, _r, seg in fast if seg.flags == ACK and not seg.payload]
    assert len(acks) == (6 if delayed_ack else 24)  # the timer's, or one per request


@pytest.mark.parametrize("how", ["send_now", "two writes"])
def test_requests_on_the_wire_are_the_general_ways(
    how: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two stacks over a virtual switch: the driver's frame path gives the server each
    request by its fields (counted in segments_next); with the endpoint's handle_next
    and without, every frame of the request/response exchange is the same."""
    fast, n_fast, tx_fast, taken = _wire(how)
    assert taken >= 19  # every request after the first ACKs the reply before it
    monkeypatch.setattr(TCPEndpoint, "handle_next", lambda self, *a: False)
    general, n_general, tx_general, none = _wire(how)
    assert none == 0
    assert fast == general
    assert (n_fast, tx_fast) == (n_general, tx_general)


def test_with_ecn_only_a_parsed_segment_is_predicted() -> None:
    """With ECN agreed, a segment's CE mark is in the parsed segment only: from its
    fields alone (the driver's frame path) prediction declines, changing nothing, both
    for data that acknowledges nothing new and for an ACK of new data; the parsed
    segment of the same data is taken."""
    c = negotiated()
    una = c._snd_una
    data = seg_in(ACK | PSH, REMOTE_SEQ, una, b"q" * 100, window=c._snd_wnd)
    before = snapshot(c)
    assert not c.handle_next(0.01, data.seq, data.ack, data.window, data.payload, None)
    assert snapshot(c) == before
    assert c.handle_next(0.01, data.seq, data.ack, data.window, data.payload, None, data)
    assert c._rcv_nxt - REMOTE_SEQ == 100
    c.send(b"r" * 10)
    c.segments_to_send(0.02)
    ack = seg_in(ACK, REMOTE_SEQ + 100, c._snd_max, window=c._snd_wnd)
    before = snapshot(c)
    assert not c.handle_next(0.03, ack.seq, ack.ack, ack.window, ack.payload, None)
    assert snapshot(c) == before
