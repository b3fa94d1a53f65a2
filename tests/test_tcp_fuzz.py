"""Property tests: any segment in any state is handled without raising, within bounds.

In the spirit of h2's tests over every (state, input) pair: hypothesis drives a
connection through random segments (numbers near and far from the expected ones, every
flag combination, options), application calls and clock jumps, and checks invariants.
"""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tests.fuzzkit import fix_l4, mutation
from tests.tcp_harness import Harness, WireModel, bulk_transfer
from tests.tcp_helpers import LOCAL_SEQ, PLAIN, REMOTE_SEQ, established, seg_in, syn_received

from miragekit.tcp import Config, ConnectionClosed, State, TCPEndpoint
from miragekit.wire.tcp import ACK, FIN, PSH, RST, SYN, TCPRepr

OFFSETS = st.sampled_from([0, 1, -1, 5, 1000, -1000, 70000, 2**31, 2**32 - 1])

segment = st.builds(
    lambda flags, dseq, dack, payload, window, ts, sack: seg_in(
        flags,
        REMOTE_SEQ + dseq,
        LOCAL_SEQ + dack,
        payload,
        window,
        timestamp=ts,
        sack_blocks=sack,
    ),
    st.integers(0, 63),
    OFFSETS,
    OFFSETS,
    st.binary(max_size=3000),
    st.integers(0, 65535),
    st.none() | st.tuples(st.integers(0, 2**32 - 1), st.integers(0, 2**32 - 1)),
    st.lists(st.tuples(st.integers(0, 2**32 - 1), st.integers(0, 2**32 - 1)), max_size=3).map(
        tuple
    ),
)

action = st.one_of(
    st.tuples(st.just("seg"), segment),
    st.tuples(st.just("send"), st.binary(max_size=5000)),
    st.tuples(st.just("recv"), st.integers(-1, 5000)),
    st.tuples(st.just("close"), st.none()),
    st.tuples(st.just("abort"), st.none()),
    st.tuples(st.just("time"), st.floats(0.0, 100.0)),
)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(
    st.sampled_from(["syn_received", "established", "established_opts"]),
    st.lists(action, max_size=40),
)
def test_random_inputs_keep_invariants(start: str, actions: list[tuple[str, object]]) -> None:
    cfg = dataclasses.replace(
        PLAIN, recv_buffer=8000, send_buffer=8000, sack=True, timestamps=True, tail_loss_probe=True
    )
    if start == "syn_received":
        c = syn_received(cfg)
    elif start == "established":
        c = established(cfg)
    else:
        c = established(cfg, sack_permitted=True, timestamp=(5, 0), wscale=3)
    now = 0.0
    closed_events = 0
    for kind, arg in actions:
        if kind == "seg":
            assert isinstance(arg, TCPRepr)
            c.handle_segment(now, arg)
        elif kind == "send":
            assert isinstance(arg, bytes)
            try:
                n = c.send(arg)
                assert 0 <= n <= len(arg)
            except ValueError:
                assert c.state in (State.CLOSED, State.TIME_WAIT) or c._fin_queued
        elif kind == "recv":
            assert isinstance(arg, int)
            data = c.receive(arg)
            assert arg < 0 or len(data) <= arg
        elif kind == "close":
            c.close()
        elif kind == "abort":
            c.abort()
        else:
            assert isinstance(arg, float)
            now += arg
            t = c.poll_at()
            if t is not None and t <= now:
                c.handle_timer(now)
        for seg in c.segments_to_send(now):
            assert seg.buffer_len() <= 20 + 40 + 65535
            assert 0 <= seg.seq < 2**32 and 0 <= seg.ack < 2**32 and 0 <= seg.window <= 65535
        while (e := c.next_event()) is not None:
            if isinstance(e, ConnectionClosed):
                closed_events += 1
        assert c.readable <= cfg.recv_buffer + 65535
        assert c.send_queued <= cfg.send_buffer
        assert closed_events <= 1
        if c.state == State.CLOSED:
            assert c.poll_at() is None or c.poll_at() == 0.0
    # Whatever happened, once the application closes, running the clock forward
    # reaches CLOSED: no state can strand the connection.
    c.close()
    for _ in range(200):
        c.segments_to_send(now)
        t = c.poll_at()
        if t is None:
            break
        now = max(now, t)
        c.handle_timer(now)
    assert c.state == State.CLOSED


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=100), st.integers(0, 2))
def test_endpoint_never_raises_on_garbage(raw: bytes, listen: int) -> None:
    ep = TCPEndpoint(secret=b"k" * 16)
    if listen:
        ep.listen(80)
    ep.handle_packet(0.0, b"\x01\x02\x03\x04", b"\x05\x06\x07\x08", raw)
    ep.handle_packet(
        0.0, b"\x01\x02\x03\x04", b"\x05\x06\x07\x08", bytes(raw[:12]) + b"\x50" + raw[13:]
    )
    ep.segments_to_send(0.0)


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ({"sack": False}, {}),
        ({"timestamps": False}, {}),
        ({"window_scaling": False}, {"recv_buffer": 1 << 20}),
        ({"congestion": "cubic", "delayed_ack": False}, {"timestamps": False, "sack": False}),
        ({"mss": 536}, {"mss": 9000, "recv_buffer": 1 << 20}),
    ],
)
def test_mismatched_options_interoperate(a: dict[str, object], b: dict[str, object]) -> None:
    ca = dataclasses.replace(Config(), **a)  # type: ignore[arg-type]
    cb = dataclasses.replace(Config(), **b)  # type: ignore[arg-type]
    h = Harness(ca, cb, WireModel(loss=0.02, reorder=0.02, duplicate=0.01), seed=9)
    sent, got, _ = bulk_transfer(h, 1_000_000)
    assert got == sent


SRC, DST = b"\x0a\x00\x00\x01", b"\x0a\x00\x00\x02"


def _seg(seg: TCPRepr) -> bytes:
    return bytes(seg.to_bytes(SRC, DST))


def _established(ep: TCPEndpoint, now: float) -> tuple[int, int]:
    """Open a connection from 10.0.0.1:40000 to the listener on port 80; (their next
    sequence number, ours)."""
    syn = TCPRepr(40000, 80, 1000, 0, SYN, 65535, mss=1460, wscale=7, sack_permitted=True,
                  timestamp=(1, 0))  # fmt: skip
    ep.handle_packet(now, SRC, DST, _seg(syn))
    (_, _, synack), *_ = ep.segments_to_send(now)
    assert synack.timestamp is not None
    ack = TCPRepr(40000, 80, 1001, synack.seq + 1, ACK, 65535, timestamp=(2, synack.timestamp[0]))
    ep.handle_packet(now, SRC, DST, _seg(ack))
    return 1001, synack.seq + 1


def tcp_seeds(rcv: int, snd: int) -> list[bytes]:
    """Segments with every option we parse, for a listener and for an open connection."""
    ts = (5, 0)
    return [
        _seg(
            TCPRepr(
                40001,
                80,
                7,
                0,
                SYN,
                65535,
                mss=1460,
                wscale=14,
                sack_permitted=True,
                timestamp=(3, 0),
                unknown_options=((30, b"\x00\x01"),),
            )
        ),
        _seg(TCPRepr(40000, 80, rcv, snd, ACK | PSH, 512, b"data" * 50, timestamp=ts)),
        _seg(
            TCPRepr(
                40000,
                80,
                rcv + 300,
                snd,
                ACK,
                512,
                b"x" * 100,
                timestamp=ts,
                sack_blocks=((snd, snd + 10), (snd + 20, snd + 30)),
            )
        ),
        _seg(TCPRepr(40000, 80, rcv, snd, ACK | FIN, 512, timestamp=ts)),
        _seg(TCPRepr(40000, 80, rcv, snd, RST, 0)),
        _seg(TCPRepr(40000, 81, 9, 0, SYN, 1024, mss=536)),  # a closed port
    ]


@given(st.data())
@settings(max_examples=400)
def test_endpoint_past_the_checksum(data: st.DataObject) -> None:
    """Mutated segments with their checksum recomputed: option parsing, connection
    lookup and the state machine get them (none is refused as a bad checksum)."""
    ep = TCPEndpoint(Config(mss=1460, sack=True, timestamps=True), secret=b"k" * 16)
    ep.listen(80)
    now = 1.0
    rcv, snd = _established(ep, now)
    seeds = tcp_seeds(rcv, snd)
    for _ in range(data.draw(st.integers(1, 4))):
        raw = bytearray(data.draw(mutation(data.draw(st.sampled_from(seeds)))))
        fix_l4(raw, 6, 0, len(raw), SRC, DST)
        now += data.draw(st.floats(0.0, 2.0))
        ep.handle_packet(now, SRC, DST, memoryview(raw))
        for _src, _dst, seg in ep.segments_to_send(now):
            assert seg.buffer_len() <= 20 + 40 + 65535
        t = ep.poll_at()
        if t is not None and t <= now:
            ep.handle_timer(now)
    assert ep.stats["bad_checksum"] == 0, ep.stats
    ep.segments_to_send(now)


def test_endpoint_past_the_checksum_reaches_the_options() -> None:
    """The mutations land beyond the sum: none fails the checksum; a bad option length
    is skipped and the segment processed (as Linux does, docs/hardening.md), and a data
    offset that cannot be fails as malformed."""
    ep = TCPEndpoint(Config(mss=1460, sack=True, timestamps=True), secret=b"k" * 16)
    ep.listen(80)
    rcv, snd = _established(ep, 1.0)
    syn = bytearray(tcp_seeds(rcv, snd)[0])
    for length in range(0, 41):  # the MSS option's length byte: 4 is right
        raw = bytearray(syn)
        raw[21] = length
        fix_l4(raw, 6, 0, len(raw), SRC, DST)
        ep.handle_packet(2.0, SRC, DST, memoryview(raw))
    s = dict(ep.stats)
    assert s["bad_checksum"] == 0 and s["malformed"] == 0 and s["segments_in"] >= 41, s
    for words in range(0, 5):  # a data offset below the 20-byte header
        raw = bytearray(syn)
        raw[12] = words << 4 | raw[12] & 0x0F
        fix_l4(raw, 6, 0, len(raw), SRC, DST)
        ep.handle_packet(2.0, SRC, DST, memoryview(raw))
    s = ep.stats
    assert s["bad_checksum"] == 0 and s["malformed"] == 5, s


def test_a_stray_ack_in_the_clocks_first_cookie_period_is_refused() -> None:
    """Found by the fuzzing above: an ACK for no connection, to a listener, while the
    clock is still in its first SYN-cookie period (simulated time starts at 0), made
    the cookie check hash a negative counter and raise."""
    ep = TCPEndpoint(secret=b"k" * 16)
    ep.listen(80)
    stray = TCPRepr(40000, 80, 7, 0xF800_0001, ACK, 1024)  # cookie counter bits: -1
    ep.handle_packet(1.0, SRC, DST, _seg(stray))
    assert ep.stats["syn_cookies_rejected"] == 1
    ((_, _, rst),) = ep.segments_to_send(1.0)
    assert rst.flags & RST
