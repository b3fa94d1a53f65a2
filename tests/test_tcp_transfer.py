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
        (5 * MB, 0.01, True, "newreno"),
        (5 * MB, 0.01, False, "newreno"),
        (5 * MB, 0.05, True, "newreno"),
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
