"""Connection state machine, smoltcp style: exact segments out, and nothing else.

Both sides' sequence numbers start just below 2**32 (see ``tcp_helpers``).
"""

from __future__ import annotations

import dataclasses

import pytest
from tests.tcp_helpers import (
    LOCAL_ISS,
    LOCAL_SEQ,
    PLAIN,
    REMOTE_ISS,
    REMOTE_SEQ,
    WINDOW,
    due,
    established,
    events,
    out,
    seg_in,
    seg_out,
    state,
    syn_received,
)

from miragekit.tcp import (
    Config,
    Connected,
    Connection,
    ConnectionClosed,
    ConnectionReset,
    ConnectionTimedOut,
    DataReceived,
    EndOfStream,
    SendBufferAvailable,
    State,
)
from miragekit.wire.tcp import ACK, FIN, PSH, RST, SYN

CFG = PLAIN


def cfg(**kw: object) -> Config:
    return dataclasses.replace(PLAIN, **kw)  # type: ignore[arg-type]


# ---------------------------------------------------------------- passive open


def test_syn_received_sends_synack() -> None:
    c = syn_received()
    assert out(c) == [seg_out(SYN | ACK, LOCAL_ISS, REMOTE_SEQ, mss=1460)]
    assert out(c) == []


def test_syn_received_ack_establishes() -> None:
    c = syn_received()
    out(c)
    c.handle_segment(0.0, seg_in(ACK, REMOTE_SEQ, LOCAL_SEQ))
    assert state(c) == State.ESTABLISHED
    assert events(c) == [Connected()]
    assert out(c) == []


def test_syn_received_retransmitted_syn_resends_synack() -> None:
    c = syn_received()
    out(c)
    c.handle_segment(0.5, seg_in(SYN, REMOTE_ISS, mss=1460))
    assert out(c, 0.5) == [seg_out(SYN | ACK, LOCAL_ISS, REMOTE_SEQ, mss=1460)]
    assert state(c) == State.SYN_RECEIVED


def test_syn_received_bad_ack_sends_rst() -> None:
    c = syn_received()
    out(c)
    c.handle_segment(0.0, seg_in(ACK, REMOTE_SEQ, LOCAL_SEQ + 1000))
    assert out(c) == [seg_out(RST, LOCAL_SEQ + 1000, 0, window=0)]
    assert state(c) == State.SYN_RECEIVED


def test_an_ack_before_the_syn_ack_is_sent_is_refused_not_taken() -> None:
    # A SYN and an ACK of our ISS in one batch, before the driver sends the SYN-ACK: the
    # ACK acknowledges nothing we sent (RFC 9293 3.10.7.4: SND.UNA < SEG.ACK), so it is
    # answered with a reset and the handshake goes on. The fast handshake path took it
    # as complete, and the next send of data asked the send buffer for offset -1.
    c = syn_received()
    c.handle_segment(0.0, seg_in(ACK | PSH, REMOTE_SEQ, LOCAL_ISS, window=1))
    assert state(c) == State.SYN_RECEIVED
    assert out(c) == [
        seg_out(RST, LOCAL_ISS, 0, window=0),
        seg_out(SYN | ACK, LOCAL_ISS, REMOTE_SEQ, mss=1460),
    ]


def test_syn_received_rst_closes() -> None:
    c = syn_received()
    out(c)
    c.handle_segment(0.0, seg_in(RST, REMOTE_SEQ))
    assert state(c) == State.CLOSED
    assert events(c) == [ConnectionReset(), ConnectionClosed()]
    assert out(c) == []


def test_synack_retransmitted_with_backoff_then_gives_up() -> None:
    c = syn_received(cfg(syn_retries=2))
    synack = seg_out(SYN | ACK, LOCAL_ISS, REMOTE_SEQ, mss=1460)
    assert out(c) == [synack]
    assert c.poll_at() == 1.0
    c.handle_timer(1.0)
    assert out(c, 1.0) == [synack]
    assert c.poll_at() == 3.0
    c.handle_timer(3.0)
    assert out(c, 3.0) == [synack]
    assert c.poll_at() == 7.0
    c.handle_timer(7.0)
    assert state(c) == State.CLOSED
    assert events(c) == [ConnectionTimedOut(), ConnectionClosed()]
    assert out(c, 7.0) == []


def test_data_with_the_handshake_ack() -> None:
    c = syn_received()
    out(c)
    c.handle_segment(0.0, seg_in(ACK | PSH, REMOTE_SEQ, LOCAL_SEQ, b"hello"))
    assert events(c) == [Connected(), DataReceived()]
    assert c.receive() == b"hello"
    assert out(c) == [seg_out(ACK, LOCAL_SEQ, REMOTE_SEQ + 5, window=WINDOW - 5)]


# ---------------------------------------------------------------- active open


def active() -> Connection:
    c = Connection.connect(CFG, 80, 49500, LOCAL_ISS, 0.0)
    assert out(c) == [seg_out(SYN, LOCAL_ISS, 0, mss=1460)]
    return c


def test_syn_sent_synack_establishes() -> None:
    c = active()
    c.handle_segment(0.1, seg_in(SYN | ACK, REMOTE_ISS, LOCAL_SEQ, mss=1000))
    assert state(c) == State.ESTABLISHED
    assert events(c) == [Connected()]
    assert out(c, 0.1) == [seg_out(ACK, LOCAL_SEQ, REMOTE_SEQ)]
    assert c.mss == 1000
    assert c.rto == pytest.approx(0.3)  # srtt 0.1 + 4 * 0.05


def test_syn_sent_rst_is_refusal() -> None:
    c = active()
    c.handle_segment(0.1, seg_in(RST | ACK, 0, LOCAL_SEQ))
    assert state(c) == State.CLOSED
    assert events(c) == [ConnectionReset(refused=True), ConnectionClosed()]
    assert out(c) == []


def test_syn_sent_rst_without_acceptable_ack_ignored() -> None:
    c = active()
    c.handle_segment(0.1, seg_in(RST, 0))
    c.handle_segment(0.1, seg_in(RST | ACK, 0, LOCAL_SEQ + 5))
    assert state(c) == State.SYN_SENT
    assert out(c) == []
    assert events(c) == []


def test_syn_sent_bad_ack_gets_rst() -> None:
    c = active()
    c.handle_segment(0.1, seg_in(SYN | ACK, REMOTE_ISS, LOCAL_SEQ + 7))
    assert out(c) == [seg_out(RST, LOCAL_SEQ + 7, 0, window=0)]
    assert state(c) == State.SYN_SENT


def test_syn_retransmitted_then_timeout() -> None:
    c = Connection.connect(cfg(syn_retries=3), 80, 49500, LOCAL_ISS, 0.0)
    syn = seg_out(SYN, LOCAL_ISS, 0, mss=1460)
    assert out(c) == [syn]
    times: list[float] = []
    while state(c) != State.CLOSED:
        t = due(c)
        times.append(t)
        c.handle_timer(t)
        sent = out(c, t)
        assert sent in ([syn], [])
    assert c.poll_at() is None
    assert times == [1.0, 3.0, 7.0, 15.0]
    assert events(c) == [ConnectionTimedOut(), ConnectionClosed()]


def test_simultaneous_open() -> None:
    c = active()
    c.handle_segment(0.1, seg_in(SYN, REMOTE_ISS, mss=1460))
    assert state(c) == State.SYN_RECEIVED
    assert out(c, 0.1) == [seg_out(SYN | ACK, LOCAL_ISS, REMOTE_SEQ, mss=1460)]
    c.handle_segment(0.2, seg_in(SYN | ACK, REMOTE_ISS, LOCAL_SEQ, mss=1460))
    assert state(c) == State.ESTABLISHED
    assert events(c) == [Connected()]
    assert out(c, 0.2) == [seg_out(ACK, LOCAL_SEQ, REMOTE_SEQ)]


def test_close_in_syn_sent() -> None:
    c = active()
    c.close()
    assert state(c) == State.CLOSED
    assert events(c) == [ConnectionClosed()]
    assert out(c) == []


# ---------------------------------------------------------------- data


def test_a_reader_is_told_of_data_by_a_call_instead_of_an_event() -> None:
    """``set_reader``: newly readable data calls the reader once (until all of it has been
    read), and no DataReceived is queued; other events still are. None: events again."""
    c = established()
    calls: list[int] = []
    c.set_reader(lambda: calls.append(c.readable))
    c.handle_segment(0.0, seg_in(ACK | PSH, REMOTE_SEQ, LOCAL_SEQ, b"abc"))
    c.handle_segment(0.0, seg_in(ACK | PSH, REMOTE_SEQ + 3, LOCAL_SEQ, b"de"))
    assert calls == [3]  # once: the data was not read in between
    assert events(c) == []
    assert c.receive() == b"abcde"
    c.handle_segment(0.0, seg_in(ACK | PSH | FIN, REMOTE_SEQ + 5, LOCAL_SEQ, b"f"))
    assert calls == [3, 1]
    assert events(c) == [EndOfStream()]  # the end is still an event
    assert c.receive() == b"f"
    c2 = established()
    c2.set_reader(lambda: calls.append(-1))
    c2.set_reader(None)
    c2.handle_segment(0.0, seg_in(ACK | PSH, REMOTE_SEQ, LOCAL_SEQ, b"x"))
    assert events(c2) == [DataReceived()] and calls == [3, 1]


def test_receive_across_wraparound() -> None:
    c = established()
    data = bytes(range(200))  # REMOTE_SEQ is 15 below 2**32: crosses it
    c.handle_segment(0.0, seg_in(ACK | PSH, REMOTE_SEQ, LOCAL_SEQ, data))
    assert out(c) == [seg_out(ACK, LOCAL_SEQ, REMOTE_SEQ + 200, window=WINDOW - 200)]
    assert events(c) == [DataReceived()]
    assert c.receive(50) == data[:50]
    assert c.receive() == data[50:]
    assert c.receive() == b""
    assert c.rcv_nxt == (REMOTE_SEQ + 200) & 0xFFFFFFFF < 1000


def test_send_across_wraparound_and_ack() -> None:
    c = established()
    data = bytes(300)  # LOCAL_SEQ is 127 below 2**32
    assert c.send(data) == 300
    assert out(c) == [seg_out(ACK | PSH, LOCAL_SEQ, REMOTE_SEQ, data)]
    assert c.poll_at() == pytest.approx(0.2)
    c.handle_segment(0.05, seg_in(ACK, REMOTE_SEQ, LOCAL_SEQ + 300))
    assert c.poll_at() is None
    assert out(c, 0.05) == []
    assert c.send_queued == 0


def test_segments_split_at_mss_and_nagle_holds_runt() -> None:
    c = established(mss=1000)
    c.send(bytes(2500))
    assert out(c) == [
        seg_out(ACK, LOCAL_SEQ, REMOTE_SEQ, bytes(1000)),
        seg_out(ACK, LOCAL_SEQ + 1000, REMOTE_SEQ, bytes(1000)),
    ]
    # The 500-byte runt waits for the ACK of everything in flight (Nagle).
    c.handle_segment(0.01, seg_in(ACK, REMOTE_SEQ, LOCAL_SEQ + 1000))
    assert out(c, 0.01) == []
    c.handle_segment(0.02, seg_in(ACK, REMOTE_SEQ, LOCAL_SEQ + 2000))
    assert out(c, 0.02) == [seg_out(ACK | PSH, LOCAL_SEQ + 2000, REMOTE_SEQ, bytes(500))]


def test_nodelay_write_bypasses_nagle() -> None:
    c = established()
    c.send(b"a")
    assert out(c) == [seg_out(ACK | PSH, LOCAL_SEQ, REMOTE_SEQ, b"a")]
    c.send(b"b")
    assert out(c) == []
    c.send(b"c", nodelay=True)
    assert out(c) == [seg_out(ACK | PSH, LOCAL_SEQ + 1, REMOTE_SEQ, b"bc")]
    c2 = established(cfg(nodelay=True))
    c2.send(b"a")
    c2.send(b"b")
    assert len(out(c2)) == 1
    c2.send(b"c")
    assert out(c2) == [seg_out(ACK | PSH, LOCAL_SEQ + 2, REMOTE_SEQ, b"c")]


def test_delayed_ack_timer_and_every_second_segment() -> None:
    c = established(cfg(delayed_ack=True, delayed_ack_timeout=0.04))
    c.handle_segment(1.0, seg_in(ACK, REMOTE_SEQ, LOCAL_SEQ, b"x" * 10))
    assert out(c, 1.0) == []
    assert c.poll_at() == pytest.approx(1.04)
    c.handle_timer(1.04)
    assert out(c, 1.04) == [seg_out(ACK, LOCAL_SEQ, REMOTE_SEQ + 10, window=WINDOW - 10)]
    assert c.poll_at() is None
    # Small segments may wait for the timer; two full-sized ones are ACKed at once.
    c.handle_segment(2.0, seg_in(ACK, REMOTE_SEQ + 10, LOCAL_SEQ, b"y" * 1000))
    assert out(c, 2.0) == []
    c.handle_segment(2.0, seg_in(ACK, REMOTE_SEQ + 1010, LOCAL_SEQ, b"z" * 1000))
    assert out(c, 2.0) == [seg_out(ACK, LOCAL_SEQ, REMOTE_SEQ + 2010, window=WINDOW - 2010)]
    assert c.poll_at() is None


def test_ack_piggybacks_on_data() -> None:
    c = established(cfg(delayed_ack=True))
    c.handle_segment(0.0, seg_in(ACK, REMOTE_SEQ, LOCAL_SEQ, b"req"))
    c.send(b"resp")
    assert out(c) == [seg_out(ACK | PSH, LOCAL_SEQ, REMOTE_SEQ + 3, b"resp", window=WINDOW - 3)]
    assert c.poll_at() == pytest.approx(0.2)  # only the retransmission timer


def test_out_of_order_dupack_then_reassembly() -> None:
    c = established()
    c.handle_segment(0.0, seg_in(ACK, REMOTE_SEQ + 10, LOCAL_SEQ, b"B" * 10))
    assert out(c) == [seg_out(ACK, LOCAL_SEQ, REMOTE_SEQ)]
    assert events(c) == []
    c.handle_segment(0.0, seg_in(ACK, REMOTE_SEQ, LOCAL_SEQ, b"A" * 10))
    assert out(c) == [seg_out(ACK, LOCAL_SEQ, REMOTE_SEQ + 20, window=WINDOW - 20)]
    assert c.receive() == b"A" * 10 + b"B" * 10


def test_overlapping_and_duplicate_segments() -> None:
    c = established()
    c.handle_segment(0.0, seg_in(ACK, REMOTE_SEQ, LOCAL_SEQ, b"abcdef"))
    out(c)
    c.handle_segment(0.0, seg_in(ACK, REMOTE_SEQ + 3, LOCAL_SEQ, b"defghi"))
    c.handle_segment(0.0, seg_in(ACK, REMOTE_SEQ, LOCAL_SEQ, b"abc"))
    assert out(c) == [seg_out(ACK, LOCAL_SEQ, REMOTE_SEQ + 9, window=WINDOW - 9)]
    assert c.receive() == b"abcdefghi"


def test_receive_window_bounded_and_reopens_on_read() -> None:
    c = established(cfg(recv_buffer=3000), mss=1000)
    for i in range(3):
        c.handle_segment(0.0, seg_in(ACK, REMOTE_SEQ + 1000 * i, LOCAL_SEQ, bytes(1000)))
    assert out(c) == [seg_out(ACK, LOCAL_SEQ, REMOTE_SEQ + 3000, window=0)]
    # Beyond the window: not accepted, answered with an ACK.
    c.handle_segment(0.0, seg_in(ACK, REMOTE_SEQ + 3000, LOCAL_SEQ, bytes(1000)))
    assert out(c) == [seg_out(ACK, LOCAL_SEQ, REMOTE_SEQ + 3000, window=0)]
    assert c.readable == 3000
    # Reading a little does not reopen (receiver SWS avoidance) ...
    c.receive(500)
    assert out(c) == []
    # ... reading an MSS and more does.
    c.receive(1000)
    assert out(c) == [seg_out(ACK, LOCAL_SEQ, REMOTE_SEQ + 3000, window=1500)]


def test_send_buffer_backpressure_and_writable() -> None:
    c = established(cfg(send_buffer=4000))
    assert c.send(bytes(3000)) == 3000
    assert c.send(bytes(3000)) == 1000
    assert c.send(b"more") == 0
    assert c.send_buffer_free == 0
    assert [len(s.payload) for s in out(c)] == [1460, 1460]  # the runt waits (Nagle)
    c.handle_segment(0.01, seg_in(ACK, REMOTE_SEQ, LOCAL_SEQ + 2920))
    assert events(c) == [SendBufferAvailable()]
    assert [len(s.payload) for s in out(c, 0.01)] == [1080]
    assert c.send(bytes(4000)) == 2920


def test_zero_window_probe_with_backoff() -> None:
    """The persist timer's probe has an old sequence number (SND.UNA - 1) and no data, as
    Linux's: the peer must answer it with an ACK; SND.NXT stays at SND.UNA."""
    c = established()
    c.handle_segment(0.0, seg_in(ACK, REMOTE_SEQ, LOCAL_SEQ, window=0))
    c.send(b"hello")
    assert out(c) == []
    assert c.poll_at() == pytest.approx(0.2)
    c.handle_timer(0.2)
    probe = seg_out(ACK, LOCAL_SEQ - 1, REMOTE_SEQ)
    assert out(c, 0.2) == [probe]
    assert c.snd_nxt == c.snd_una == LOCAL_SEQ & 0xFFFFFFFF
    assert c.stats["window_probes"] == 1
    # The peer still has no room: its ACK says so.
    c.handle_segment(0.21, seg_in(ACK, REMOTE_SEQ, LOCAL_SEQ, window=0))
    assert out(c, 0.21) == []
    t = due(c)
    assert t == pytest.approx(0.6)  # backed off: 0.2 + 0.4
    c.handle_timer(t)
    assert out(c, t) == [probe]
    # The window opens: everything goes, from SND.UNA.
    c.handle_segment(0.7, seg_in(ACK, REMOTE_SEQ, LOCAL_SEQ, window=1000))
    assert out(c, 0.7) == [seg_out(ACK | PSH, LOCAL_SEQ, REMOTE_SEQ, b"hello")]


def test_a_zero_window_probe_is_answered_with_an_ack() -> None:
    """The receiving side of the probe: an old sequence number with no data is not
    acceptable, and is answered at once with an ACK carrying the window, shut or open."""
    c = established()
    c.handle_segment(0.0, seg_in(ACK, REMOTE_SEQ, LOCAL_SEQ, b"x" * 10))
    out(c)
    c.handle_segment(0.1, seg_in(ACK, REMOTE_SEQ + 9, LOCAL_SEQ))  # the peer's probe
    assert out(c, 0.1) == [seg_out(ACK, LOCAL_SEQ, REMOTE_SEQ + 10, window=WINDOW - 10)]


def test_sender_sws_avoidance_waits_for_useful_window() -> None:
    c = established(mss=1000)
    c.handle_segment(0.0, seg_in(ACK, REMOTE_SEQ, LOCAL_SEQ, window=3000))
    c.send(bytes(5000))
    assert [len(s.payload) for s in out(c)] == [1000, 1000, 1000]
    # 100 bytes of window opens up: too small (under half the max window) to send a runt.
    c.handle_segment(0.01, seg_in(ACK, REMOTE_SEQ, LOCAL_SEQ + 100, window=3000))
    assert out(c, 0.01) == []
    c.handle_segment(0.02, seg_in(ACK, REMOTE_SEQ, LOCAL_SEQ + 2000, window=3000))
    assert [len(s.payload) for s in out(c, 0.02)] == [1000, 1000]


# ---------------------------------------------------------------- close


def test_active_close_to_time_wait_and_expiry() -> None:
    c = established(cfg(msl=10.0))
    c.close()
    assert state(c) == State.FIN_WAIT_1
    assert out(c) == [seg_out(ACK | FIN, LOCAL_SEQ, REMOTE_SEQ)]
    c.handle_segment(0.1, seg_in(ACK, REMOTE_SEQ, LOCAL_SEQ + 1))
    assert state(c) == State.FIN_WAIT_2
    assert out(c, 0.1) == []
    c.handle_segment(0.2, seg_in(ACK | FIN, REMOTE_SEQ, LOCAL_SEQ + 1))
    assert state(c) == State.TIME_WAIT
    # The FIN takes one number: the right edge stays, so the window reads one less.
    assert out(c, 0.2) == [seg_out(ACK, LOCAL_SEQ + 1, REMOTE_SEQ + 1, window=WINDOW - 1)]
    assert events(c) == [EndOfStream()]
    assert c.poll_at() == pytest.approx(20.2)
    # A retransmitted FIN is acknowledged again and restarts the 2*MSL timer.
    c.handle_segment(5.0, seg_in(ACK | FIN, REMOTE_SEQ, LOCAL_SEQ + 1))
    assert out(c, 5.0) == [seg_out(ACK, LOCAL_SEQ + 1, REMOTE_SEQ + 1, window=WINDOW - 1)]
    assert c.poll_at() == pytest.approx(25.0)
    c.handle_timer(25.0)
    assert state(c) == State.CLOSED
    assert events(c) == [ConnectionClosed()]
    assert out(c, 25.0) == []


def test_close_sends_queued_data_then_fin() -> None:
    c = established()
    c.send(b"bye")
    c.close()
    assert out(c) == [seg_out(ACK | PSH | FIN, LOCAL_SEQ, REMOTE_SEQ, b"bye")]
    with pytest.raises(ValueError, match="send"):
        c.send(b"late")


def test_fin_and_ack_of_our_fin_together() -> None:
    c = established()
    c.close()
    out(c)
    c.handle_segment(0.1, seg_in(ACK | FIN, REMOTE_SEQ, LOCAL_SEQ + 1))
    assert state(c) == State.TIME_WAIT
    assert out(c, 0.1) == [seg_out(ACK, LOCAL_SEQ + 1, REMOTE_SEQ + 1, window=WINDOW - 1)]


def test_simultaneous_close_via_closing() -> None:
    c = established()
    c.close()
    out(c)
    c.handle_segment(0.1, seg_in(ACK | FIN, REMOTE_SEQ, LOCAL_SEQ))
    assert state(c) == State.CLOSING
    assert out(c, 0.1) == [seg_out(ACK, LOCAL_SEQ + 1, REMOTE_SEQ + 1, window=WINDOW - 1)]
    c.handle_segment(0.2, seg_in(ACK, REMOTE_SEQ + 1, LOCAL_SEQ + 1))
    assert state(c) == State.TIME_WAIT


def test_passive_close() -> None:
    c = established()
    c.handle_segment(0.0, seg_in(ACK | FIN, REMOTE_SEQ, LOCAL_SEQ, b"last"))
    assert state(c) == State.CLOSE_WAIT
    assert events(c) == [DataReceived(), EndOfStream()]
    assert out(c) == [seg_out(ACK, LOCAL_SEQ, REMOTE_SEQ + 5, window=WINDOW - 5)]
    assert not c.at_eof
    assert c.receive() == b"last"
    assert c.at_eof
    c.send(b"reply")
    c.close()
    assert state(c) == State.LAST_ACK
    assert out(c) == [
        seg_out(ACK | PSH | FIN, LOCAL_SEQ, REMOTE_SEQ + 5, b"reply", window=WINDOW - 5)
    ]
    c.handle_segment(0.1, seg_in(ACK, REMOTE_SEQ + 5, LOCAL_SEQ + 6))
    assert state(c) == State.CLOSED
    assert events(c) == [ConnectionClosed()]


def test_passive_close_ack_of_fin_rides_on_our_fin() -> None:
    # With delayed ACKs the ACK of the peer's FIN waits for the application's close:
    # one FIN|ACK segment instead of a bare ACK and then a FIN.
    c = established(cfg(delayed_ack=True, delayed_ack_timeout=0.04))
    c.handle_segment(1.0, seg_in(ACK | FIN, REMOTE_SEQ, LOCAL_SEQ))
    assert state(c) == State.CLOSE_WAIT
    assert events(c) == [EndOfStream()]
    assert out(c, 1.0) == []
    assert c.poll_at() == pytest.approx(1.04)
    c.close()
    assert state(c) == State.LAST_ACK
    assert out(c, 1.001) == [seg_out(ACK | FIN, LOCAL_SEQ, REMOTE_SEQ + 1, window=WINDOW - 1)]
    assert out(c, 1.001) == []
    c.handle_segment(1.01, seg_in(ACK, REMOTE_SEQ + 1, LOCAL_SEQ + 1))
    assert state(c) == State.CLOSED


def test_passive_close_data_ack_fin_in_one_segment() -> None:
    # Data with FIN, then the reply and close: the reply, its FIN and both ACKs together.
    c = established(cfg(delayed_ack=True, delayed_ack_timeout=0.04))
    c.handle_segment(1.0, seg_in(ACK | PSH | FIN, REMOTE_SEQ, LOCAL_SEQ, b"x"))
    assert events(c) == [DataReceived(), EndOfStream()]
    assert out(c, 1.0) == []
    assert c.receive() == b"x"
    c.send(b"x")
    c.close()
    assert out(c, 1.0) == [
        seg_out(ACK | PSH | FIN, LOCAL_SEQ, REMOTE_SEQ + 2, b"x", window=WINDOW - 2)
    ]


def test_passive_close_ack_of_fin_by_timer_without_close() -> None:
    # An application that does not close still ACKs the FIN, at the delayed-ACK timer.
    c = established(cfg(delayed_ack=True, delayed_ack_timeout=0.04))
    c.handle_segment(1.0, seg_in(ACK | FIN, REMOTE_SEQ, LOCAL_SEQ))
    assert out(c, 1.0) == []
    assert due(c) == pytest.approx(1.04)
    c.handle_timer(1.04)
    assert out(c, 1.04) == [seg_out(ACK, LOCAL_SEQ, REMOTE_SEQ + 1, window=WINDOW - 1)]
    assert c.poll_at() is None
    assert state(c) == State.CLOSE_WAIT


def test_passive_close_fin_keeps_earlier_delayed_ack_deadline() -> None:
    c = established(cfg(delayed_ack=True, delayed_ack_timeout=0.04))
    c.handle_segment(1.0, seg_in(ACK, REMOTE_SEQ, LOCAL_SEQ, b"ab"))
    c.handle_segment(1.03, seg_in(ACK | FIN, REMOTE_SEQ + 2, LOCAL_SEQ))
    assert out(c, 1.03) == []
    assert due(c) == pytest.approx(1.04)
    c.handle_timer(1.04)
    assert out(c, 1.04) == [seg_out(ACK, LOCAL_SEQ, REMOTE_SEQ + 3, window=WINDOW - 3)]


def test_fin_in_fin_wait_2_acked_at_once_with_delayed_acks() -> None:
    # Our own close came first: nothing to wait for, the FIN is ACKed at once.
    c = established(cfg(delayed_ack=True))
    c.close()
    out(c)
    c.handle_segment(0.1, seg_in(ACK, REMOTE_SEQ, LOCAL_SEQ + 1))
    assert state(c) == State.FIN_WAIT_2
    c.handle_segment(0.2, seg_in(ACK | FIN, REMOTE_SEQ, LOCAL_SEQ + 1))
    assert state(c) == State.TIME_WAIT
    assert out(c, 0.2) == [seg_out(ACK, LOCAL_SEQ + 1, REMOTE_SEQ + 1, window=WINDOW - 1)]


def test_out_of_order_fin_dupack_at_once_with_delayed_acks() -> None:
    c = established(cfg(delayed_ack=True))
    c.handle_segment(0.0, seg_in(ACK | FIN, REMOTE_SEQ + 3, LOCAL_SEQ, b"def"))
    assert out(c) == [seg_out(ACK, LOCAL_SEQ, REMOTE_SEQ)]
    c.handle_segment(0.0, seg_in(ACK, REMOTE_SEQ, LOCAL_SEQ, b"abc"))
    assert state(c) == State.CLOSE_WAIT
    assert out(c) == [seg_out(ACK, LOCAL_SEQ, REMOTE_SEQ + 7, window=WINDOW - 7)]


def test_out_of_order_fin_waits_for_data() -> None:
    c = established()
    c.handle_segment(0.0, seg_in(ACK | FIN, REMOTE_SEQ + 3, LOCAL_SEQ, b"def"))
    assert state(c) == State.ESTABLISHED
    assert out(c) == [seg_out(ACK, LOCAL_SEQ, REMOTE_SEQ)]
    c.handle_segment(0.0, seg_in(ACK, REMOTE_SEQ, LOCAL_SEQ, b"abc"))
    assert state(c) == State.CLOSE_WAIT
    assert out(c) == [seg_out(ACK, LOCAL_SEQ, REMOTE_SEQ + 7, window=WINDOW - 7)]
    assert c.receive() == b"abcdef"


def test_fin_wait_2_times_out() -> None:
    c = established(cfg(fin_wait_2_timeout=30.0))
    c.close()
    out(c)
    c.handle_segment(1.0, seg_in(ACK, REMOTE_SEQ, LOCAL_SEQ + 1))
    assert state(c) == State.FIN_WAIT_2
    assert c.poll_at() == pytest.approx(31.0)
    c.handle_timer(31.0)
    assert state(c) == State.CLOSED
    assert events(c) == [ConnectionTimedOut(), ConnectionClosed()]


def test_last_ack_fin_retransmitted_then_gives_up() -> None:
    c = established(cfg(max_retransmits=2))
    c.handle_segment(0.0, seg_in(ACK | FIN, REMOTE_SEQ, LOCAL_SEQ))
    out(c)
    c.close()
    fin = seg_out(ACK | FIN, LOCAL_SEQ, REMOTE_SEQ + 1, window=WINDOW - 1)
    assert out(c) == [fin]
    for expected in (0.2, 0.6):
        t = due(c)
        assert t == pytest.approx(expected)
        c.handle_timer(t)
        assert out(c, t) == [fin]
    t = due(c)
    assert t == pytest.approx(1.4)
    c.handle_timer(t)
    assert state(c) == State.CLOSED
    assert events(c)[-2:] == [ConnectionTimedOut(), ConnectionClosed()]


def test_abort_sends_rst() -> None:
    c = established()
    c.abort()
    assert out(c) == [seg_out(RST | ACK, LOCAL_SEQ, REMOTE_SEQ)]
    assert state(c) == State.CLOSED
    assert events(c) == [ConnectionClosed()]


# ---------------------------------------------------------------- RST and RFC 5961


def test_rst_with_exact_sequence_resets() -> None:
    c = established()
    c.handle_segment(0.0, seg_in(RST, REMOTE_SEQ))
    assert state(c) == State.CLOSED
    assert events(c) == [ConnectionReset(), ConnectionClosed()]
    assert out(c) == []


def test_rst_in_window_gets_challenge_ack() -> None:
    c = established()
    c.handle_segment(0.0, seg_in(RST, REMOTE_SEQ + 100))
    assert state(c) == State.ESTABLISHED
    assert out(c) == [seg_out(ACK, LOCAL_SEQ, REMOTE_SEQ)]
    assert c.stats["challenge_acks"] == 1


def test_rst_outside_window_ignored() -> None:
    c = established()
    c.handle_segment(0.0, seg_in(RST, REMOTE_SEQ + WINDOW + 10))
    c.handle_segment(0.0, seg_in(RST, REMOTE_SEQ - 1))
    assert state(c) == State.ESTABLISHED
    assert out(c) == []


def test_syn_in_established_gets_challenge_ack() -> None:
    c = established()
    c.handle_segment(0.0, seg_in(SYN, REMOTE_SEQ + 5))
    assert state(c) == State.ESTABLISHED
    assert out(c) == [seg_out(ACK, LOCAL_SEQ, REMOTE_SEQ)]


def test_blind_data_injection_with_old_ack_challenged() -> None:
    c = established()
    # ACK far below SND.UNA - MAX.SND.WND (RFC 5961 5.2): not accepted, challenge ACK.
    c.handle_segment(0.0, seg_in(ACK, REMOTE_SEQ, LOCAL_SEQ - 200_000, b"evil"))
    assert c.readable == 0
    assert out(c) == [seg_out(ACK, LOCAL_SEQ, REMOTE_SEQ)]
    # An ACK for data never sent is also refused.
    c.handle_segment(0.0, seg_in(ACK, REMOTE_SEQ, LOCAL_SEQ + 10, b"evil"))
    assert c.readable == 0
    assert out(c) == [seg_out(ACK, LOCAL_SEQ, REMOTE_SEQ)]


def test_challenge_acks_rate_limited() -> None:
    c = established(cfg(challenge_ack_limit=3))
    for _ in range(10):
        c.handle_segment(5.5, seg_in(RST, REMOTE_SEQ + 100))
        out(c, 5.5)
    assert c.stats["challenge_acks"] == 3
    c.handle_segment(6.1, seg_in(RST, REMOTE_SEQ + 100))
    assert len(out(c, 6.1)) == 1


def test_old_duplicate_segment_is_acked() -> None:
    c = established()
    c.handle_segment(0.0, seg_in(ACK, REMOTE_SEQ, LOCAL_SEQ, b"abc"))
    out(c)
    c.handle_segment(0.0, seg_in(ACK, REMOTE_SEQ, LOCAL_SEQ, b"abc"))
    assert out(c) == [seg_out(ACK, LOCAL_SEQ, REMOTE_SEQ + 3, window=WINDOW - 3)]
    assert c.receive() == b"abc"


def test_segment_without_ack_dropped() -> None:
    c = established()
    c.handle_segment(0.0, seg_in(PSH, REMOTE_SEQ, 0, b"abc"))
    assert c.readable == 0
    assert out(c) == []


def test_rst_in_time_wait_closes_quietly() -> None:
    c = established()
    c.close()
    out(c)
    c.handle_segment(0.1, seg_in(ACK | FIN, REMOTE_SEQ, LOCAL_SEQ + 1))
    out(c, 0.1)
    events(c)
    c.handle_segment(0.2, seg_in(RST, REMOTE_SEQ + 1))
    assert state(c) == State.CLOSED
    assert events(c) == [ConnectionClosed()]


def test_closed_connection_ignores_segments() -> None:
    c = established()
    c.abort()
    out(c)
    c.handle_segment(0.0, seg_in(ACK, REMOTE_SEQ, LOCAL_SEQ, b"x"))
    assert out(c) == []
    assert c.poll_at() is None


def test_close_in_syn_received_waits_for_established() -> None:
    c = syn_received()
    out(c)
    c.close()
    assert state(c) == State.SYN_RECEIVED
    assert out(c) == []
    c.handle_segment(0.1, seg_in(ACK, REMOTE_SEQ, LOCAL_SEQ))
    assert state(c) == State.FIN_WAIT_1
    assert out(c, 0.1) == [seg_out(ACK | FIN, LOCAL_SEQ, REMOTE_SEQ)]


def test_keepalive_probes_then_times_out() -> None:
    c = established(cfg(keepalive_idle=100.0, keepalive_interval=10.0, keepalive_probes=2))
    assert c.poll_at() == pytest.approx(100.0)
    probe = seg_out(ACK, LOCAL_SEQ - 1, REMOTE_SEQ)
    c.handle_timer(100.0)
    assert out(c, 100.0) == [probe]
    # The peer answers: the idle period starts again.
    c.handle_segment(100.1, seg_in(ACK, REMOTE_SEQ, LOCAL_SEQ))
    assert out(c, 100.1) == []
    assert c.poll_at() == pytest.approx(200.1)
    for t in (200.1, 210.1):
        c.handle_timer(t)
        assert out(c, t) == [probe]
    c.handle_timer(220.1)
    assert state(c) == State.CLOSED
    assert events(c) == [ConnectionTimedOut(), ConnectionClosed()]


def test_keepalive_off_by_default() -> None:
    c = established()
    assert c.poll_at() is None


def test_tso_emits_whole_mss_multiples() -> None:
    c = established(cfg(tso_max=10000, send_buffer=64000), mss=1000)
    c.handle_segment(0.0, seg_in(ACK, REMOTE_SEQ, LOCAL_SEQ, window=60000))
    c.send(bytes(40000))
    # cwnd is 10 MSS: one burst of 10 segments for the device to cut.
    assert [len(s.payload) for s in out(c)] == [10000]
    c.handle_segment(0.1, seg_in(ACK, REMOTE_SEQ, LOCAL_SEQ + 10000, window=60000))
    # Slow start: 10 more + 8 new MSS of room (HyStart++'s L = 8 per ACK, RFC 9406);
    # the burst is capped at tso_max.
    assert [len(s.payload) for s in out(c, 0.1)] == [10000, 8000]
    assert c.mss == 1000  # the gso_size for the device


def test_unsent_counts_bytes_not_yet_transmitted() -> None:
    c = established(mss=1000)
    c.handle_segment(0.0, seg_in(ACK, REMOTE_SEQ, LOCAL_SEQ, window=2000))
    c.send(bytes(5000))
    assert c.unsent == 5000
    out(c)
    assert c.unsent == 3000 and c.send_queued == 5000
    c.handle_segment(0.1, seg_in(ACK, REMOTE_SEQ, LOCAL_SEQ + 2000, window=10000))
    out(c, 0.1)
    assert c.unsent == 0 and c.send_queued == 3000
