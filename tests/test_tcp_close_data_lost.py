"""A full close loses data the application will never read: RST, not FIN (RFC 1122
4.2.2.13, RFC 9293 3.10.4). A half-close (``close()`` without ``discard_input``) keeps
receiving as before."""

from __future__ import annotations

from tests.tcp_helpers import (
    LOCAL_SEQ,
    REMOTE_SEQ,
    established,
    events,
    out,
    seg_in,
    seg_out,
    state,
)

from miragekit.tcp import ConnectionClosed, State
from miragekit.wire.tcp import ACK, FIN, PSH, RST


def test_close_with_unread_data_sends_rst_at_once() -> None:
    c = established()
    c.handle_segment(0.0, seg_in(ACK | PSH, REMOTE_SEQ, LOCAL_SEQ, b"unread"))
    assert out(c) == [seg_out(ACK, LOCAL_SEQ, REMOTE_SEQ + 6, window=64000 - 6)]
    c.close(discard_input=True)
    (rst,) = out(c)
    assert (rst.flags, rst.seq, rst.ack) == (
        RST | ACK,
        LOCAL_SEQ & 0xFFFFFFFF,
        (REMOTE_SEQ + 6) & 0xFFFFFFFF,
    )
    assert state(c) == State.CLOSED
    assert isinstance(events(c)[-1], ConnectionClosed)
    assert c.stats["resets_data_lost"] == 1


def test_data_after_a_full_close_sends_rst() -> None:
    c = established()
    c.close(discard_input=True)
    assert out(c) == [seg_out(ACK | FIN, LOCAL_SEQ, REMOTE_SEQ)]
    assert state(c) == State.FIN_WAIT_1
    c.handle_segment(0.0, seg_in(ACK, REMOTE_SEQ, LOCAL_SEQ + 1))
    assert state(c) == State.FIN_WAIT_2
    c.handle_segment(0.1, seg_in(ACK | PSH, REMOTE_SEQ, LOCAL_SEQ + 1, b"more"))
    (rst,) = out(c, 0.1)
    assert rst.flags & RST and rst.seq == (LOCAL_SEQ + 1) & 0xFFFFFFFF
    assert state(c) == State.CLOSED
    assert c.stats["resets_data_lost"] == 1


def test_data_in_fin_wait_1_after_a_full_close_sends_rst() -> None:
    c = established()
    c.close(discard_input=True)
    out(c)
    # Data that crossed our FIN (it does not ACK it): still data nobody will read.
    c.handle_segment(0.0, seg_in(ACK | PSH, REMOTE_SEQ, LOCAL_SEQ, b"x" * 100))
    assert [s.flags & RST for s in out(c)] == [RST]
    assert state(c) == State.CLOSED


def test_an_old_duplicate_after_a_full_close_is_not_new_data() -> None:
    c = established()
    c.handle_segment(0.0, seg_in(ACK | PSH, REMOTE_SEQ, LOCAL_SEQ, b"read"))
    out(c)
    assert c.receive() == b"read"
    c.close(discard_input=True)
    out(c)
    c.handle_segment(0.0, seg_in(ACK, REMOTE_SEQ + 4, LOCAL_SEQ + 1))
    # The peer retransmits what we already acknowledged: ACKed again, no reset.
    c.handle_segment(0.5, seg_in(ACK | PSH, REMOTE_SEQ, LOCAL_SEQ + 1, b"read"))
    segs = out(c, 0.5)
    assert segs and not any(s.flags & RST for s in segs)
    assert state(c) == State.FIN_WAIT_2
    # The peer's FIN ends it the ordinary way.
    c.handle_segment(0.6, seg_in(ACK | FIN, REMOTE_SEQ + 4, LOCAL_SEQ + 1))
    assert state(c) == State.TIME_WAIT
    assert c.stats["resets_data_lost"] == 0


def test_a_half_close_keeps_receiving() -> None:
    c = established()
    c.close()
    out(c)
    c.handle_segment(0.0, seg_in(ACK | PSH, REMOTE_SEQ, LOCAL_SEQ + 1, b"still wanted"))
    segs = out(c)
    assert not any(s.flags & RST for s in segs)
    assert state(c) == State.FIN_WAIT_2
    assert c.receive() == b"still wanted"


def test_a_full_close_with_everything_read_is_an_ordinary_fin() -> None:
    c = established()
    c.handle_segment(0.0, seg_in(ACK | PSH, REMOTE_SEQ, LOCAL_SEQ, b"abc"))
    out(c)
    c.receive()
    c.close(discard_input=True)
    assert [s.flags for s in out(c)] == [ACK | FIN]
    assert state(c) == State.FIN_WAIT_1


def test_a_reset_after_a_zero_window_probe_uses_the_window_edge() -> None:
    """An RST after zero-window probes carries the window's edge, the one number a shut
    window accepts: the probes, of an old sequence number, took SND.NXT nowhere past it."""
    c = established()
    c.handle_segment(0.0, seg_in(ACK, REMOTE_SEQ, LOCAL_SEQ, window=0))
    c.send(b"blocked")
    assert out(c) == []  # nothing fits a zero window
    t = 0.0
    for _ in range(5):
        nxt = c.poll_at()
        assert nxt is not None
        t = nxt
        c.handle_timer(t)
        if any(s.seq == (LOCAL_SEQ - 1) & 0xFFFFFFFF and not s.payload for s in out(c, t)):
            break
    else:
        raise AssertionError("no zero-window probe")
    c.abort()
    (rst,) = out(c, t)
    assert rst.flags & RST and rst.seq == LOCAL_SEQ & 0xFFFFFFFF
