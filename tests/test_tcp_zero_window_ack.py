"""A zero receive window still takes the peer's ACKs (RFC 9293 3.10.7.4: "special
allowance should be made to accept valid ACKs"): a data segment at the window's edge has
its data dropped but its acknowledgment and window taken.

Without it, two ends whose windows are both shut with data in flight both ways (an echo
through a forwarder, each side waiting to write before it reads) each drop the other's
ACKs, which ride on data, and wait on retransmission timers that back off each round: a
1 MiB echo that takes 0.4 s stalled for over a minute under load."""

from __future__ import annotations

from tests.tcp_helpers import (
    LOCAL_SEQ,
    REMOTE_SEQ,
    WINDOW,
    due,
    established,
    events,
    out,
    seg_in,
    seg_out,
)

from miragekit.tcp import Connection
from miragekit.wire.tcp import ACK, FIN, PSH


def shut(mss: int = 1000) -> tuple[Connection, int]:
    """An established connection with 3000 bytes of ours in flight and a receive buffer
    the peer has filled (a zero window announced); the peer's next sequence number."""
    c = established(mss=mss)
    assert c.send(b"r" * 3000) == 3000
    assert [len(s.payload) for s in out(c)] == [1000, 1000, 1000]
    peer = REMOTE_SEQ
    for _ in range(WINDOW // 1000):
        c.handle_segment(0.01, seg_in(ACK, peer, LOCAL_SEQ, bytes(1000)))
        peer += 1000
    assert out(c, 0.01)[-1].window == 0
    events(c)
    return c, peer


def test_data_at_a_zero_window_has_its_ack_taken_and_its_data_dropped() -> None:
    c, peer = shut()
    c.handle_segment(0.02, seg_in(ACK | PSH, peer, LOCAL_SEQ + 3000, b"more"))
    assert c.snd_una == (LOCAL_SEQ + 3000) & 0xFFFFFFFF  # our data is acknowledged
    assert c.readable == WINDOW  # the data did not fit: dropped
    # Answered at once: the window is still shut, the peer's data not taken.
    assert out(c, 0.02) == [seg_out(ACK, LOCAL_SEQ + 3000, peer, window=0)]
    assert c.poll_at() is None  # nothing in flight: no retransmission timer
    # The peer's persist probe after the application read: now taken.
    assert len(c.receive()) == WINDOW
    out(c, 0.03)
    c.handle_segment(0.04, seg_in(ACK | PSH, peer, LOCAL_SEQ + 3000, b"more"))
    assert bytes(c.receive()) == b"more"


def test_a_zero_window_takes_the_window_update_riding_on_data() -> None:
    """The peer's window (here: shut too) comes on its data; taking it puts our sender
    into persist mode instead of retransmitting into a window it believes open."""
    c, peer = shut()
    c.send(b"s" * 500)
    c.handle_segment(0.02, seg_in(ACK, peer, LOCAL_SEQ + 3000, b"x" * 1000, window=0))
    assert c.snd_una == (LOCAL_SEQ + 3000) & 0xFFFFFFFF
    assert out(c, 0.02) == [seg_out(ACK, LOCAL_SEQ + 3000, peer, window=0)]  # no data: shut


def test_a_zero_window_still_drops_what_is_not_at_its_edge() -> None:
    """Only a segment at the window's edge is taken for its ACK: one beyond it (or old)
    is dropped whole, as before, and answered with an ACK."""
    c, peer = shut()
    c.handle_segment(0.02, seg_in(ACK | PSH, peer + 1, LOCAL_SEQ + 3000, b"more"))
    assert c.snd_una == LOCAL_SEQ & 0xFFFFFFFF
    assert out(c, 0.02) == [seg_out(ACK, LOCAL_SEQ + 3000, peer, window=0)]
    c.handle_segment(0.02, seg_in(ACK | PSH, peer - 10, LOCAL_SEQ + 3000, b"more"))
    assert c.snd_una == LOCAL_SEQ & 0xFFFFFFFF


def test_a_fin_after_data_beyond_a_zero_window_is_not_taken() -> None:
    c, peer = shut()
    c.handle_segment(0.02, seg_in(ACK | FIN, peer, LOCAL_SEQ + 3000, b"end"))
    assert c.snd_una == (LOCAL_SEQ + 3000) & 0xFFFFFFFF
    assert c.state.name == "ESTABLISHED"  # the FIN came after data that did not fit
    assert out(c, 0.02) == [seg_out(ACK, LOCAL_SEQ + 3000, peer, window=0)]


def test_a_window_reopening_after_a_timeout_sends_a_whole_segment() -> None:
    """Data in flight when the peer shuts its window, a timeout (cwnd down to one
    segment), a probe: when the window reopens, a whole segment goes from snd.una at
    once. (A probe of a new byte, which the shut window dropped, moved SND.NXT past it:
    what was left was a runt, which sender SWS avoidance held back until the next,
    backed-off, timeout.)"""
    c = established(mss=1000)
    c.send(b"r" * 5000)
    assert [len(s.payload) for s in out(c)] == [1000] * 5
    c.handle_segment(0.01, seg_in(ACK, REMOTE_SEQ, LOCAL_SEQ, window=0))
    t = due(c)
    c.handle_timer(t)
    assert out(c, t) == [seg_out(ACK, LOCAL_SEQ - 1, REMOTE_SEQ)]  # the probe: old, no data
    assert c.snd_nxt == c.snd_una
    c.handle_segment(t + 0.01, seg_in(ACK, REMOTE_SEQ, LOCAL_SEQ, window=0))  # not taken
    assert out(c, t + 0.01) == []
    c.handle_segment(t + 0.02, seg_in(ACK, REMOTE_SEQ, LOCAL_SEQ, window=WINDOW))
    assert out(c, t + 0.02) == [seg_out(ACK, LOCAL_SEQ, REMOTE_SEQ, b"r" * 1000)]


def test_an_ack_after_a_probe_carries_the_window_edge() -> None:
    """While the peer's window is shut, our ACKs (of the peer's data) carry the window's
    edge, the one number a shut window accepts (an ACK it drops leaves the peer's data
    unacknowledged): the probe, of an old sequence number, took none past it."""
    c = established(mss=1000)
    c.handle_segment(0.0, seg_in(ACK, REMOTE_SEQ, LOCAL_SEQ, window=0))
    c.send(b"hello")
    assert out(c) == []  # nothing fits: the persist timer
    t = due(c)
    c.handle_timer(t)
    assert out(c, t) == [seg_out(ACK, LOCAL_SEQ - 1, REMOTE_SEQ)]  # the probe
    c.handle_segment(t + 0.01, seg_in(ACK | PSH, REMOTE_SEQ, LOCAL_SEQ, b"data", window=0))
    assert out(c, t + 0.01) == [seg_out(ACK, LOCAL_SEQ, REMOTE_SEQ + 4, window=WINDOW - 4)]


def test_an_ack_after_a_timeout_is_numbered_from_the_highest_sent() -> None:
    """A timeout moves SND.NXT back; our ACKs keep the highest number sent, so the peer
    (whose SND.WL1 an earlier ACK moved there) still takes the window they announce: a
    window shut by its data is then heard, and the peer stops sending into it."""
    c = established(mss=1000)
    c.send(b"r" * 3000)
    assert [len(s.payload) for s in out(c)] == [1000] * 3
    t = due(c)
    c.handle_timer(t)
    assert [s.seq for s in out(c, t)] == [LOCAL_SEQ & 0xFFFFFFFF]  # snd.nxt went back
    c.handle_segment(t + 0.01, seg_in(ACK | PSH, REMOTE_SEQ, LOCAL_SEQ, b"data"))
    assert out(c, t + 0.01) == [seg_out(ACK, LOCAL_SEQ + 3000, REMOTE_SEQ + 4, window=WINDOW - 4)]
