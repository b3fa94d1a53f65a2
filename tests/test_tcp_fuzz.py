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
from tests.tcp_harness import Harness, WireModel, bulk_transfer
from tests.tcp_helpers import LOCAL_SEQ, PLAIN, REMOTE_SEQ, established, seg_in, syn_received

from miragekit.tcp import Config, ConnectionClosed, State, TCPEndpoint
from miragekit.wire.tcp import TCPRepr

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
