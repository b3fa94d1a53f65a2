"""Two connections over a lossy, reordering, duplicating, corrupting wire (manual clock).

Every transfer is checked byte-exact by SHA-256 end to end; the randomness is seeded.
"""

from __future__ import annotations

import pytest
from tests.tcp_harness import Harness, WireModel, bulk_transfer, state

from miragekit.tcp import Config, ConnectionTimedOut, State

MB = 1_000_000


@pytest.mark.parametrize(
    ("size", "loss", "sack", "congestion"),
    [
        (5 * MB, 0.0, True, "newreno"),
        (20 * MB, 0.01, True, "newreno"),
        (5 * MB, 0.01, False, "newreno"),
        (20 * MB, 0.05, True, "newreno"),
        (5 * MB, 0.05, False, "newreno"),
        (5 * MB, 0.01, True, "cubic"),
        (5 * MB, 0.05, True, "cubic"),
    ],
)
def test_bulk_transfer_is_byte_exact(size: int, loss: float, sack: bool, congestion: str) -> None:
    cfg = Config(sack=sack, congestion=congestion)
    model = WireModel(
        loss=loss,
        reorder=0.02 if loss else 0.0,
        duplicate=0.01 if loss else 0.0,
        corrupt=0.005 if loss else 0.0,
    )
    h = Harness(cfg, cfg, model, seed=int(loss * 1000) + sack)
    sent, got, _t = bulk_transfer(h, size, time_limit=3600)
    assert got == sent
    assert h.b is not None and h.b.state == State.CLOSED
    assert h.a.state in (State.TIME_WAIT, State.CLOSED)
    if loss:
        assert h.stats.dropped > 0 and h.a.stats["retransmits"] > 0
        assert h.stats.bad_checksum > 0  # corruption was caught by the checksum


def test_no_options_and_small_buffers() -> None:
    cfg = Config(
        window_scaling=False, timestamps=False, sack=False, recv_buffer=8192, send_buffer=8192
    )
    h = Harness(cfg, cfg, WireModel(loss=0.02, reorder=0.02), seed=3)
    sent, got, _ = bulk_transfer(h, 1 * MB, chunk=3000)
    assert got == sent


def test_vanished_peer_times_out_in_bounded_time() -> None:
    cfg = Config(max_retransmits=6, max_rto=10.0)
    h = Harness(cfg, cfg, WireModel(), seed=5)
    while h.a.state != State.ESTABLISHED:
        h.step()
    h.a.send(b"x" * 100_000)
    t0 = h.now
    h.blackhole = True
    events = []
    while state(h.a) != State.CLOSED and h.now - t0 < 1000:
        h.step()
        while (e := h.a.next_event()) is not None:
            events.append(e)
    assert state(h.a) == State.CLOSED
    assert ConnectionTimedOut() in events
    # Backoff doubles from the measured RTO and is capped at 10 s: well under a minute.
    assert h.now - t0 < 60
    assert h.a.send_queued == 0 and h.a.readable == 0


def test_partition_that_heals() -> None:
    cfg = Config(max_retransmits=15)
    h = Harness(cfg, cfg, WireModel(), seed=11)
    import hashlib
    import random

    data = random.Random(2).randbytes(3 * MB)
    got = bytearray()
    off = 0
    partition = (0.05, 20.05)
    while h.now < 600:
        h.blackhole = partition[0] <= h.now < partition[1]
        if off < len(data) and state(h.a) in (State.ESTABLISHED, State.SYN_SENT):
            off += h.a.send(memoryview(data)[off : off + 65536])
        if h.b is not None:
            got += h.b.receive()
        if len(got) == len(data):
            break
        if not h.step():
            break
    assert hashlib.sha256(got).digest() == hashlib.sha256(data).digest()
    assert h.now > partition[1]  # the transfer really waited out the partition
    assert h.a.stats["rto"] >= 3


def test_idle_connection_memory_is_small() -> None:
    import tracemalloc

    from miragekit.tcp import Connection

    cfg = Config()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        pairs = []
        for i in range(500):
            a = Connection.connect(cfg, 1000 + i, 80, 12345, 0.0)
            b = Connection.accept(cfg, a.segments_to_send(0.0)[0], 999, 0.0)
            for s in b.segments_to_send(0.0):
                a.handle_segment(0.0, s)
            for s in a.segments_to_send(0.0):
                b.handle_segment(0.0, s)
            assert a.state == b.state == State.ESTABLISHED
            pairs.append((a, b))
        per_conn = (tracemalloc.get_traced_memory()[0] - before) / 1000
    finally:
        tracemalloc.stop()
    assert per_conn < 16 * 1024  # the budget per idle connection (docs/performance.md)


def test_slow_reader_bounds_buffers_and_window_reopens() -> None:
    import hashlib
    import random

    cfg = Config(recv_buffer=32 * 1024, send_buffer=48 * 1024)
    h = Harness(cfg, cfg, WireModel(loss=0.01), seed=4)
    data = random.Random(8).randbytes(1 * MB)
    got = bytearray()
    off = 0
    partial_sends = 0
    max_buffered = 0
    while h.now < 600 and len(got) < len(data):
        if off < len(data) and state(h.a) in (State.ESTABLISHED, State.SYN_SENT):
            want = min(65536, len(data) - off)
            n = h.a.send(memoryview(data)[off : off + want])
            partial_sends += n < want
            off += n
            assert h.a.send_queued <= cfg.send_buffer
        if h.b is not None:
            max_buffered = max(max_buffered, h.b.readable)
            got += h.b.receive(2000)  # the application reads slowly
        if not h.step():
            break
    assert hashlib.sha256(got).digest() == hashlib.sha256(data).digest()
    assert max_buffered <= cfg.recv_buffer
    assert max_buffered > cfg.recv_buffer // 2  # the window really filled up
    assert partial_sends > 0  # back-pressure reached the sender


def test_tso_bursts_cut_by_the_device_are_byte_exact() -> None:
    cfg = Config(tso_max=65000, send_buffer=1 << 20, recv_buffer=1 << 20)
    h = Harness(cfg, Config(recv_buffer=1 << 20), WireModel(loss=0.01, tso_split=1448), seed=12)
    sizes: list[int] = []
    orig = h._transmit

    def spy(direction: int, seg: object) -> None:
        from miragekit.wire.tcp import TCPRepr

        assert isinstance(seg, TCPRepr)
        if direction == 0:
            sizes.append(len(seg.payload))
        orig(direction, seg)

    h._transmit = spy  # type: ignore[method-assign]
    sent, got, _ = bulk_transfer(h, 5 * MB)
    assert got == sent
    assert max(sizes) >= 10 * 1448  # real bursts went out (the initial window at least)
    bad = [n for n in sizes if n > 65000 or (n % 1448 and n > 1448)]
    assert len(bad) <= 1, bad  # whole segments, except possibly the very end of the data


@pytest.mark.parametrize("loss", [0.0, 0.03])
def test_bidirectional_transfer_and_simultaneous_close(loss: float) -> None:
    import hashlib
    import random

    cfg = Config(msl=1.0)
    h = Harness(cfg, cfg, WireModel(loss=loss, reorder=0.02 if loss else 0.0), seed=21)
    rng = random.Random(5)
    data = {0: rng.randbytes(2 * MB), 1: rng.randbytes(2 * MB)}
    off = {0: 0, 1: 0}
    got: dict[int, bytearray] = {0: bytearray(), 1: bytearray()}
    closed = {0: False, 1: False}
    while h.now < 600:
        conns = {0: h.a, 1: h.b}
        for i, c in conns.items():
            if c is None or state(c) not in (State.ESTABLISHED, State.CLOSE_WAIT, State.FIN_WAIT_1):
                continue
            if off[i] < len(data[i]) and not closed[i]:
                off[i] += c.send(memoryview(data[i])[off[i] : off[i] + 65536])
        for i, c in conns.items():
            if c is not None:
                got[1 - i] += c.receive()  # side i receives what side 1 - i sent
        # Both sides close in the same instant once everything is queued.
        if not closed[0] and off[0] == len(data[0]) and off[1] == len(data[1]) and h.b is not None:
            h.a.close()
            h.b.close()
            closed[0] = closed[1] = True
        if h.b is not None and state(h.a) == State.CLOSED and state(h.b) == State.CLOSED:
            break
        if not h.step():
            break
    # got[i] holds what the other side received from side i.
    assert hashlib.sha256(got[0]).digest() == hashlib.sha256(data[0]).digest()
    assert hashlib.sha256(got[1]).digest() == hashlib.sha256(data[1]).digest()
    assert h.b is not None and state(h.a) == State.CLOSED and state(h.b) == State.CLOSED
