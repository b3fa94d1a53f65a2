"""Retransmission, RTT, congestion control, SACK, window scaling, timestamps, MSS."""

from __future__ import annotations

import dataclasses

import pytest
from tests.tcp_helpers import (
    LOCAL_ISS,
    LOCAL_SEQ,
    PLAIN,
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

from miragekit.tcp import Config, Connection, ConnectionClosed, ConnectionTimedOut, State
from miragekit.tcp._rtt import RttEstimator
from miragekit.tcp._sack import Scoreboard
from miragekit.tcp.congestion import Cubic, NewReno, new_controller
from miragekit.wire.tcp import ACK, PSH, SYN


def cfg(**kw: object) -> Config:
    return dataclasses.replace(PLAIN, **kw)  # type: ignore[arg-type]


# ---------------------------------------------------------------- RTT and RTO


def test_rtt_estimator_rfc6298() -> None:
    r = RttEstimator(initial_rto=1.0, min_rto=0.2, max_rto=60.0)
    assert r.timeout() == 1.0
    r.sample(0.1)
    assert r.srtt == pytest.approx(0.1) and r.rttvar == pytest.approx(0.05)
    assert r.rto == pytest.approx(0.3)
    r.sample(0.3)
    assert r.rttvar == pytest.approx(0.75 * 0.05 + 0.25 * 0.2)
    assert r.srtt == pytest.approx(0.875 * 0.1 + 0.125 * 0.3)
    r.on_expiry()
    r.on_expiry()
    assert r.timeout() == pytest.approx(4 * r.rto)
    for _ in range(20):
        r.on_expiry()
    assert r.timeout() == 60.0
    r.reset_backoff()
    assert r.timeout() == pytest.approx(r.rto)
    with pytest.raises(ValueError, match="min_rto"):
        RttEstimator(min_rto=0)


def test_rto_retransmits_with_backoff_then_times_out() -> None:
    c = established(cfg(max_retransmits=3))
    c.send(b"data")
    seg = seg_out(ACK | PSH, LOCAL_SEQ, REMOTE_SEQ, b"data")
    assert out(c) == [seg]
    times = []
    while state(c) != State.CLOSED:
        t = due(c)
        times.append(t)
        c.handle_timer(t)
        assert out(c, t) in ([seg], [])
    assert times == pytest.approx([0.2, 0.6, 1.4, 3.0])
    assert events(c) == [ConnectionTimedOut(), ConnectionClosed()]
    assert c.stats["rto"] == 3


def test_rto_collapses_cwnd_and_go_back_n() -> None:
    c = established(mss=1000)
    c.send(bytes(5000))
    assert len(out(c)) == 5
    c.handle_timer(due(c))
    assert c.cwnd == 1000 and c.ssthresh == 2500
    # One segment from SND.UNA; the rest follows as ACKs return (slow start).
    assert out(c, 0.2) == [seg_out(ACK, LOCAL_SEQ, REMOTE_SEQ, bytes(1000))]
    c.handle_segment(0.3, seg_in(ACK, REMOTE_SEQ, LOCAL_SEQ + 1000))
    assert [s.seq for s in out(c, 0.3)] == [
        (LOCAL_SEQ + 1000) & 0xFFFFFFFF,
        (LOCAL_SEQ + 2000) & 0xFFFFFFFF,
    ]


def test_rtt_sample_from_timed_segment_sets_rto() -> None:
    c = established()
    c.send(b"x")
    out(c, 10.0)
    c.handle_segment(10.5, seg_in(ACK, REMOTE_SEQ, LOCAL_SEQ + 1))
    # Handshake sample 0 s, then 0.5 s: srtt = 0.0625, rttvar = 0.0625*... RFC 6298 2.3.
    r = RttEstimator(1.0, 0.2, 60.0)
    r.sample(0.0)
    r.sample(0.5)
    assert c.rto == pytest.approx(r.rto)


# ---------------------------------------------------------------- NewReno (RFC 6582)


def test_newreno_fast_retransmit_partial_and_full_ack() -> None:
    c = established(mss=1000)
    c.send(bytes(10000))
    assert [len(s.payload) for s in out(c)] == [1000] * 10
    una = LOCAL_SEQ + 1000
    c.handle_segment(0.1, seg_in(ACK, REMOTE_SEQ, una))
    assert out(c, 0.1) == []
    for i in range(2):
        c.handle_segment(0.1, seg_in(ACK, REMOTE_SEQ, una))
        assert out(c, 0.1) == [], i
    c.handle_segment(0.1, seg_in(ACK, REMOTE_SEQ, una))
    assert out(c, 0.1) == [seg_out(ACK, una, REMOTE_SEQ, bytes(1000))]
    assert c.stats["fast_retransmits"] == 1
    assert c.ssthresh == 4500 and c.cwnd == 4500
    # More duplicate ACKs inflate the window but there is no new data to send.
    c.handle_segment(0.1, seg_in(ACK, REMOTE_SEQ, una))
    assert out(c, 0.1) == []
    # A partial ACK: the next hole is retransmitted at once.
    c.handle_segment(0.2, seg_in(ACK, REMOTE_SEQ, LOCAL_SEQ + 5000))
    assert out(c, 0.2) == [seg_out(ACK, LOCAL_SEQ + 5000, REMOTE_SEQ, bytes(1000))]
    # The full ACK ends recovery with cwnd = ssthresh.
    c.handle_segment(0.3, seg_in(ACK, REMOTE_SEQ, LOCAL_SEQ + 10000))
    assert out(c, 0.3) == []
    assert c.cwnd == 4500
    assert c.poll_at() is None


def test_no_fast_retransmit_for_window_updates_or_data() -> None:
    c = established(mss=1000)
    c.send(bytes(3000))
    out(c)
    for w in (60000, 61000, 62000):  # the window changes: not duplicates
        c.handle_segment(0.1, seg_in(ACK, REMOTE_SEQ, LOCAL_SEQ, window=w))
    assert c.stats["fast_retransmits"] == 0
    assert out(c, 0.1) == []


# ---------------------------------------------------------------- SACK (RFC 2018, 6675)


def test_sack_negotiated_and_receiver_blocks_most_recent_first() -> None:
    c = established(cfg(sack=True), sack_permitted=True)
    assert c.stats["segs_out"] == 1
    c.handle_segment(0.0, seg_in(ACK, REMOTE_SEQ + 10, LOCAL_SEQ, b"b" * 10))
    c.handle_segment(0.0, seg_in(ACK, REMOTE_SEQ + 30, LOCAL_SEQ, b"d" * 10))
    sent = out(c)
    assert sent[-1] == seg_out(
        ACK,
        LOCAL_SEQ,
        REMOTE_SEQ,
        sack_blocks=(
            ((REMOTE_SEQ + 30) & 0xFFFFFFFF, (REMOTE_SEQ + 40) & 0xFFFFFFFF),
            ((REMOTE_SEQ + 10) & 0xFFFFFFFF, (REMOTE_SEQ + 20) & 0xFFFFFFFF),
        ),
    )
    c.handle_segment(0.0, seg_in(ACK, REMOTE_SEQ, LOCAL_SEQ, b"a" * 10))
    assert out(c) == [
        seg_out(
            ACK,
            LOCAL_SEQ,
            REMOTE_SEQ + 20,
            window=WINDOW - 20,
            sack_blocks=(((REMOTE_SEQ + 30) & 0xFFFFFFFF, (REMOTE_SEQ + 40) & 0xFFFFFFFF),),
        )
    ]
    assert c.receive() == b"a" * 10 + b"b" * 10


def test_sack_not_used_when_peer_does_not_offer_it() -> None:
    c = syn_received(cfg(sack=True))
    assert out(c)[0].sack_permitted is False


def test_sack_recovery_retransmits_only_holes() -> None:
    c = established(cfg(sack=True), mss=1000, sack_permitted=True)
    c.send(bytes(10000))
    assert len(out(c)) == 10
    una = LOCAL_SEQ + 1000

    def sack(*blocks: tuple[int, int]) -> tuple[tuple[int, int], ...]:
        return tuple(
            ((LOCAL_SEQ + a) & 0xFFFFFFFF, (LOCAL_SEQ + b) & 0xFFFFFFFF) for a, b in blocks
        )

    c.handle_segment(0.1, seg_in(ACK, REMOTE_SEQ, una))
    c.handle_segment(0.1, seg_in(ACK, REMOTE_SEQ, una, sack_blocks=sack((2000, 3000))))
    c.handle_segment(0.1, seg_in(ACK, REMOTE_SEQ, una, sack_blocks=sack((2000, 4000))))
    assert out(c, 0.1) == []
    c.handle_segment(0.1, seg_in(ACK, REMOTE_SEQ, una, sack_blocks=sack((2000, 5000))))
    assert out(c, 0.1) == [seg_out(ACK, una, REMOTE_SEQ, bytes(1000))]
    # ssthresh is half the 9000 in flight; PRR (RFC 6937): the pipe (5000, the tail)
    # is above it, so cwnd = pipe + ceil(1000 delivered * 4500 / RecoverFS), RecoverFS
    # the window before the reduction (11000), which is above the pipe.
    assert c.ssthresh == 4500 and c.cwnd == 5410
    # Segment 7 is lost too; pipe leaves room, so exactly that hole is resent.
    c.handle_segment(
        0.1, seg_in(ACK, REMOTE_SEQ, una, sack_blocks=sack((2000, 6000), (7000, 10000)))
    )
    assert out(c, 0.1) == [seg_out(ACK, LOCAL_SEQ + 6000, REMOTE_SEQ, bytes(1000))]
    assert c.stats["retransmits"] == 2
    c.handle_segment(0.2, seg_in(ACK, REMOTE_SEQ, LOCAL_SEQ + 10000))
    assert out(c, 0.2) == []
    assert c.poll_at() is None


def test_scoreboard_pipe_and_next_seg() -> None:
    sb = Scoreboard()
    assert sb.add(30, 40) and sb.add(50, 60) and sb.add(10, 20)
    assert not sb.add(12, 18)
    assert sb.add(20, 30)  # merges with both neighbours
    assert sb.blocks == [[10, 40], [50, 60]]
    assert sb.sacked_bytes() == 40
    # MSS 5: (3-1)*5 = 10 bytes SACKed above a hole makes it lost.
    assert sb.is_lost(0, 5) and sb.is_lost(45, 5) is False
    assert sb.next_seg(0, 5) == (0, 5)
    assert sb.pipe(0, 80, 5) == 10 + 20  # hole [40,50) + tail [60,80)
    sb.record_rxt(0, 5, 80, 1.0)
    assert sb.next_seg(0, 5) == (5, 10)
    assert sb.pipe(0, 80, 5) == 35
    sb.record_rxt(5, 10, 80, 1.5)
    assert sb.next_seg(0, 5) is None  # hole [40, 50) has only 10 bytes above: not lost
    # NextSeg rule 3 (RFC 6675): a hole not yet lost, never retransmitted.
    assert sb.next_seg(0, 5, rule3=True) == (40, 45)
    # Data sent after the retransmissions (beyond 80) is SACKed while [0, 10) is still
    # missing: each retransmission is lost once RACK's deadline (now - RACK.rtt - the
    # reordering window) has passed its send time; the other one is due at 1.5.
    sb.add(80, 90)
    assert sb.detect_lost_retransmits(1.2) == (1, 1.5)
    assert sb.next_seg(0, 5) == (0, 5)
    assert sb.detect_lost_retransmits(1.5) == (1, None)
    assert sb.next_seg(0, 5) == (0, 5)
    sb.advance(45)
    assert sb.blocks == [[50, 60], [80, 90]] and sb.rxt == []


def test_a_hole_longer_than_the_retransmission_list_is_resent_once() -> None:
    """A hole of 100 segments, all lost, resent in one go: the contiguous retransmissions
    are one range (the list is bounded at MAX_BLOCKS entries), so NextSeg does not choose
    the first ones again once they would have fallen off (which looped without end)."""
    sb = Scoreboard()
    assert sb.add(100 * 5, 120 * 5)
    for i in range(100):
        assert sb.next_seg(0, 5) == (i * 5, i * 5 + 5)
        sb.record_rxt(i * 5, i * 5 + 5, 120 * 5, 2.0)
    assert sb.next_seg(0, 5) is None
    assert sb.rxt == [(0, 500, 600, 2.0)]
    assert sb.pipe(0, 600, 5) == 500
    sb.record_rxt(500, 505, 600, 2.5)  # another time: another range
    assert len(sb.rxt) == 2


# ---------------------------------------------------------------- window scaling (RFC 7323)


def test_window_scaling_negotiated() -> None:
    big = cfg(window_scaling=True, recv_buffer=1 << 20)
    c = syn_received(big, wscale=7)
    synack = out(c)[0]
    assert synack.wscale == 5 and synack.window == 65535  # SYN windows are never scaled
    c.handle_segment(0.0, seg_in(ACK, REMOTE_SEQ, LOCAL_SEQ, window=100))
    assert c.send_window == 100 << 7
    c.handle_segment(0.0, seg_in(ACK, REMOTE_SEQ, LOCAL_SEQ, b"x" * 64))
    assert out(c) == [seg_out(ACK, LOCAL_SEQ, REMOTE_SEQ + 64, window=((1 << 20) - 64) >> 5)]


def test_window_scaling_off_when_peer_lacks_it() -> None:
    c = syn_received(cfg(window_scaling=True, recv_buffer=1 << 20))
    synack = out(c)[0]
    assert synack.wscale is None and synack.window == 65535
    c.handle_segment(0.0, seg_in(ACK, REMOTE_SEQ, LOCAL_SEQ, window=1000))
    c.handle_segment(0.0, seg_in(ACK, REMOTE_SEQ, LOCAL_SEQ, b"y"))
    assert out(c)[0].window == 65535


# ---------------------------------------------------------------- timestamps and PAWS


def test_timestamps_echo_rtt_and_paws() -> None:
    c = syn_received(cfg(timestamps=True), timestamp=(100, 0))
    assert out(c)[0].timestamp == (0, 100)
    c.handle_segment(0.0, seg_in(ACK, REMOTE_SEQ, LOCAL_SEQ, timestamp=(101, 0)))
    assert state(c) == State.ESTABLISHED
    assert c.mss == 1460 - 12
    c.handle_segment(1.0, seg_in(ACK, REMOTE_SEQ, LOCAL_SEQ, b"abc", timestamp=(200, 0)))
    assert out(c, 1.0) == [
        seg_out(ACK, LOCAL_SEQ, REMOTE_SEQ + 3, window=WINDOW - 3, timestamp=(1000, 200))
    ]
    # PAWS: an older TSval is a wrapped old duplicate: dropped and answered with an ACK.
    c.handle_segment(1.1, seg_in(ACK, REMOTE_SEQ + 3, LOCAL_SEQ, b"old", timestamp=(150, 0)))
    assert c.readable == 3
    assert out(c, 1.1) == [
        seg_out(ACK, LOCAL_SEQ, REMOTE_SEQ + 3, window=WINDOW - 3, timestamp=(1100, 200))
    ]
    # RTT from the echoed timestamp.
    c.send(b"q")
    out(c, 2.0)
    c.handle_segment(2.25, seg_in(ACK, REMOTE_SEQ + 3, LOCAL_SEQ + 1, timestamp=(300, 2000)))
    assert c._rtt.srtt is not None


def test_paws_across_tsval_wraparound() -> None:
    c = syn_received(cfg(timestamps=True), timestamp=(0xFFFFFFF0, 0))
    out(c)
    c.handle_segment(0.0, seg_in(ACK, REMOTE_SEQ, LOCAL_SEQ, timestamp=(0xFFFFFFF8, 0)))
    # TSval wrapped past zero: still newer, accepted.
    c.handle_segment(0.0, seg_in(ACK, REMOTE_SEQ, LOCAL_SEQ, b"ok", timestamp=(5, 0)))
    assert c.readable == 2


# ---------------------------------------------------------------- MSS


def test_mss_option_and_clamping() -> None:
    c = syn_received(cfg(mss=1200), mss=536)
    assert out(c)[0].mss == 1200
    c.handle_segment(0.0, seg_in(ACK, REMOTE_SEQ, LOCAL_SEQ))
    c.send(bytes(2000))
    assert [len(s.payload) for s in out(c)] == [536, 536, 536]  # then Nagle holds the runt
    c2 = syn_received(cfg(mss=1200), mss=9000)
    out(c2)
    c2.handle_segment(0.0, seg_in(ACK, REMOTE_SEQ, LOCAL_SEQ))
    c2.send(bytes(2400))
    assert [len(s.payload) for s in out(c2)] == [1200, 1200]


def test_default_mss_without_option() -> None:
    from miragekit.tcp import Connection

    c = Connection.accept(PLAIN, seg_in(SYN, 5), LOCAL_ISS, 0.0)
    out(c)
    c.handle_segment(0.0, seg_in(ACK, 6, LOCAL_SEQ))
    assert c.mss == 536


# ---------------------------------------------------------------- congestion controllers


def test_newreno_window_growth() -> None:
    cc = NewReno(1000)
    assert cc.cwnd == 10000
    cc.on_send(0.0, 0, cc.cwnd, True)  # a bulk sender: cwnd full
    cc.on_ack(0.0, 1000, 0.1)
    assert cc.cwnd == 11000  # slow start
    cc.on_loss(0.0, 20000)
    assert cc.ssthresh == 10000 and cc.cwnd == 10000
    for _ in range(10):
        cc.on_ack(0.0, 1000, 0.1)
    assert cc.cwnd == 11000  # one MSS per window in congestion avoidance
    cc.on_rto(0.0, 4000)
    assert cc.cwnd == 1000 and cc.ssthresh == 2000


def test_cubic_concave_then_convex_around_wmax() -> None:
    mss = 1000
    cc = Cubic(mss)
    cc.cwnd = 100 * mss
    cc.ssthresh = 50 * mss
    cc.on_send(0.0, 0, cc.cwnd, True)  # a bulk sender: cwnd full
    cc.on_loss(0.0, cc.cwnd)
    assert cc.cwnd == 70 * mss and cc.ssthresh == 70 * mss
    k = (30 / 0.4) ** (1 / 3)
    rtt = 0.1
    now = 0.0
    samples = {}
    while now < 2 * k:
        # One RTT worth of ACKs.
        acked = 0
        while acked < cc.cwnd:
            cc.on_ack(now, mss, rtt)
            acked += mss
        now += rtt
        samples[round(now, 1)] = cc.cwnd / mss
    at_k = samples[min(samples, key=lambda t: abs(t - k))]
    assert 95 <= at_k <= 106  # plateau near W_max at t = K
    assert samples[round(0.5, 1)] > 70 and samples[round(0.5, 1)] < at_k  # concave growth
    assert max(samples.values()) > 110  # convex probing beyond W_max
    cc.on_rto(now, cc.cwnd)
    assert cc.cwnd == mss


def test_cubic_fast_convergence() -> None:
    cc = Cubic(1000)
    cc.cwnd = 100_000
    cc.on_loss(0.0, 100_000)
    cc.on_loss(1.0, 70_000)  # second loss below the previous W_max
    assert cc._w_max == pytest.approx(70 * (1 + 0.7) / 2)


def test_cubic_reno_friendly_estimate_grows_as_reno_past_the_prior_window() -> None:
    """RFC 9438 4.3: W_est grows by alpha = 3(1-beta)/(1+beta) segments per window, and
    by 1 (as Reno) once it is back at the window of the last reduction."""
    mss = 1000
    cc = Cubic(mss)
    cc.cwnd = 10 * mss
    cc.on_send(0.0, 0, cc.cwnd, True)  # a bulk sender: cwnd full
    cc.on_loss(0.0, cc.cwnd)  # cwnd_prior 10, W_est starts at 7
    assert cc.cwnd == 7 * mss

    def window_of_acks(now: float) -> float:
        before = cc._w_est
        for _ in range(cc.cwnd // mss):
            cc.on_ack(now, mss, 0.01)
        return cc._w_est - before

    cc.on_ack(0.0, mss, 0.01)  # starts the epoch: W_est = cwnd (7), then + alpha/7
    assert window_of_acks(0.0) == pytest.approx(0.53, rel=0.1)
    cc._w_est = 10.0  # back at cwnd_prior: alpha 1
    cc.cwnd = 10 * mss
    assert window_of_acks(0.1) == pytest.approx(1.0, rel=0.1)


def test_controller_factory() -> None:
    assert isinstance(new_controller("cubic", 1000), Cubic)
    assert isinstance(new_controller("newreno", 1000), NewReno)
    with pytest.raises(ValueError, match="congestion"):
        new_controller("bbr", 1000)
    with pytest.raises(ValueError, match="congestion"):
        Config(congestion="vegas")


def test_the_default_controller_is_cubic_as_linux() -> None:
    """CUBIC by default (Linux's default): a fast retransmit takes cwnd to 0.7 of what
    it was (RFC 9438's beta), where NewReno would halve it."""
    assert Config().congestion == "cubic"
    c = established(cfg(congestion=Config().congestion), mss=1000)
    c.send(bytes(14000))
    assert len(out(c)) == 10
    una = LOCAL_SEQ + 1000
    c.handle_segment(0.1, seg_in(ACK, REMOTE_SEQ, una))  # slow start: cwnd 11000
    assert c.cwnd == 11000
    for _ in range(3):
        c.handle_segment(0.1, seg_in(ACK, REMOTE_SEQ, una))
        out(c, 0.1)
    assert c.ssthresh == c.cwnd and 7600 < c.cwnd <= 7700  # NewReno: 5500


def test_limited_transmit_sends_new_data_on_first_dupacks() -> None:
    c = established(mss=1000)
    c.send(bytes(14000))
    assert len(out(c)) == 10  # the initial window
    una = LOCAL_SEQ + 1000
    c.handle_segment(0.1, seg_in(ACK, REMOTE_SEQ, una))  # cwnd 11000: 2 more (1 acked + 1 growth)
    assert [s.seq for s in out(c, 0.1)] == [(LOCAL_SEQ + k * 1000) & 0xFFFFFFFF for k in (10, 11)]
    c.handle_segment(0.1, seg_in(ACK, REMOTE_SEQ, una))
    assert out(c, 0.1) == [seg_out(ACK, LOCAL_SEQ + 12000, REMOTE_SEQ, bytes(1000))]
    c.handle_segment(0.1, seg_in(ACK, REMOTE_SEQ, una))
    assert out(c, 0.1) == [seg_out(ACK | PSH, LOCAL_SEQ + 13000, REMOTE_SEQ, bytes(1000))]
    c.handle_segment(0.1, seg_in(ACK, REMOTE_SEQ, una))  # the third: fast retransmit
    assert out(c, 0.1) == [seg_out(ACK, una, REMOTE_SEQ, bytes(1000))]


def test_fragment_flood_is_bounded() -> None:
    from miragekit.tcp._reassembly import MAX_RANGES

    c = established(cfg(sack=True), sack_permitted=True)
    for k in range(1, 2000):
        c.handle_segment(0.0, seg_in(ACK, REMOTE_SEQ + 2 * k, LOCAL_SEQ, b"z"))
    assert len(c._ooo.ranges) == MAX_RANGES
    assert c._ooo.dropped == 1999 - MAX_RANGES
    # Filling the first hole delivers the first held byte; a retransmission covering
    # everything delivers the rest and empties the reassembly queue.
    c.handle_segment(0.0, seg_in(ACK, REMOTE_SEQ, LOCAL_SEQ, b"ab"))
    assert c.receive() == b"abz"
    c.handle_segment(0.0, seg_in(ACK, REMOTE_SEQ + 3, LOCAL_SEQ, b"y" * 200))
    assert c.readable == 200 and not c._ooo.ranges and c._ooo.held == 0


def test_scoreboard_bounded() -> None:
    from miragekit.tcp._sack import MAX_BLOCKS

    sb = Scoreboard()
    for k in range(500):
        sb.add(10 * k, 10 * k + 5)
    assert len(sb.blocks) == MAX_BLOCKS


def test_path_mtu_clamps_segments() -> None:
    c = established(mss=1460)
    c.set_path_mtu(1280)
    c.send(bytes(3000))
    assert [len(s.payload) for s in out(c)] == [1240, 1240]
    c.set_path_mtu(9000)  # never grows beyond what was negotiated
    assert c.mss == 1240
    c.set_path_mtu(100)
    assert c.mss == 536


def test_paws_ignores_a_timestamp_idle_for_24_days() -> None:
    c = syn_received(cfg(timestamps=True), timestamp=(1_000_000, 0))
    out(c)
    c.handle_segment(0.0, seg_in(ACK, REMOTE_SEQ, LOCAL_SEQ, timestamp=(1_000_001, 0)))
    later = 25 * 86400.0
    c.handle_segment(later, seg_in(ACK, REMOTE_SEQ, LOCAL_SEQ, b"hi", timestamp=(5, 0)))
    assert c.readable == 2


def test_prr_spreads_the_reduction_over_the_recovery_round_trip() -> None:
    """RFC 6937/9937: while the pipe is above ssthresh, data leaves in proportion to the
    data delivered (ssthresh/RecoverFS of it); RFC 6675 alone (cwnd = ssthresh) would
    stay silent until the pipe fell below ssthresh, then burst."""
    c = established(cfg(sack=True), mss=1000, sack_permitted=True)
    c.send(bytes(30000))
    assert len(out(c)) == 10

    def sack(a: int, b: int) -> tuple[tuple[int, int], ...]:
        return (((LOCAL_SEQ + a) & 0xFFFFFFFF, (LOCAL_SEQ + b) & 0xFFFFFFFF),)

    una = LOCAL_SEQ + 1000
    c.handle_segment(0.1, seg_in(ACK, REMOTE_SEQ, una))  # slow start: 2 more segments
    assert len(out(c, 0.1)) == 2
    # Two limited-transmit segments (RFC 3042), then the third SACK starts recovery with
    # 13000 in flight, 2000 of them beyond cwnd by limited transmit, which the reduction
    # leaves out (RFC 5681 3.2): ssthresh 5500. RecoverFS is the pipe (RFC 9937; the
    # 9000 above the SACKed 2000-5000, the hole below it being lost) or, when larger,
    # the window before the reduction (as Linux): 11000.
    for k, new in ((3000, 12000), (4000, 13000)):
        c.handle_segment(0.1, seg_in(ACK, REMOTE_SEQ, una, sack_blocks=sack(2000, k)))
        assert [s.seq for s in out(c, 0.1)] == [(LOCAL_SEQ + new) & 0xFFFFFFFF]
    c.handle_segment(0.1, seg_in(ACK, REMOTE_SEQ, una, sack_blocks=sack(2000, 5000)))
    assert out(c, 0.1) == [seg_out(ACK, una, REMOTE_SEQ, bytes(1000))]
    assert c.ssthresh == 5500
    sent = []
    for k in range(6000, 12000, 1000):
        c.handle_segment(0.1, seg_in(ACK, REMOTE_SEQ, una, sack_blocks=sack(2000, k)))
        sent.append([(s.seq - LOCAL_SEQ) & 0xFFFFFFFF for s in out(c, 0.1)])
    # The pipe stays above ssthresh: sndcnt = ceil(prr_delivered * 5500 / 11000) -
    # prr_out, with the SACK that started recovery the first 1000 delivered and the
    # fast retransmit the first 1000 of prr_out: one new segment per 2000 delivered.
    assert sent == [[], [], [14000], [], [15000], []]
    # The full ACK ends recovery at ssthresh.
    c.handle_segment(0.2, seg_in(ACK, REMOTE_SEQ, LOCAL_SEQ + 16000))
    assert c.cwnd == 5500


# ---------------------------------------------------------------- D-SACK (RFC 2883, 3708)


def _blocks(*ranges: tuple[int, int], base: int = LOCAL_SEQ) -> tuple[tuple[int, int], ...]:
    return tuple(((base + a) & 0xFFFFFFFF, (base + b) & 0xFFFFFFFF) for a, b in ranges)


def test_dsack_sent_for_a_duplicate_below_and_above_rcv_nxt() -> None:
    c = established(cfg(sack=True), sack_permitted=True)
    c.handle_segment(0.0, seg_in(ACK, REMOTE_SEQ, LOCAL_SEQ, b"a" * 10))
    out(c)
    # A duplicate of what was delivered: the ACK reports it as the first block (4.1.1).
    c.handle_segment(0.0, seg_in(ACK, REMOTE_SEQ, LOCAL_SEQ, b"a" * 10))
    assert out(c) == [
        seg_out(
            ACK, LOCAL_SEQ, REMOTE_SEQ + 10, window=WINDOW - 10,
            sack_blocks=_blocks((0, 10), base=REMOTE_SEQ),
        )
    ]  # fmt: skip
    # Out of order, then the same again: the duplicate, then the range holding it (4.1.2).
    c.handle_segment(0.0, seg_in(ACK, REMOTE_SEQ + 20, LOCAL_SEQ, b"c" * 10))
    out(c)
    c.handle_segment(0.0, seg_in(ACK, REMOTE_SEQ + 20, LOCAL_SEQ, b"c" * 5))
    assert out(c)[-1].sack_blocks == _blocks((20, 25), (20, 30), base=REMOTE_SEQ)
    # Reported once: the next ACK carries only the out-of-order range.
    c.handle_segment(0.0, seg_in(ACK, REMOTE_SEQ + 40, LOCAL_SEQ, b"e" * 10))
    assert out(c)[-1].sack_blocks == _blocks((40, 50), (20, 30), base=REMOTE_SEQ)
    assert c.stats["dsacks_out"] == 2


def _into_recovery(c: Connection) -> int:
    """Ten 1000-byte segments out, the first missing; the third SACK starts recovery."""
    c.send(bytes(10000))
    assert len(out(c)) == 10
    una = LOCAL_SEQ
    for k in (2000, 3000, 4000):
        c.handle_segment(0.1, seg_in(ACK, REMOTE_SEQ, una, sack_blocks=_blocks((1000, k))))
    assert out(c, 0.1) == [seg_out(ACK, una, REMOTE_SEQ, bytes(1000))]
    assert c.ssthresh == 5000
    return una


def test_dsack_of_the_only_retransmission_undoes_fast_recovery() -> None:
    c = established(cfg(sack=True), mss=1000, sack_permitted=True)
    _into_recovery(c)
    # The original was only delayed: it fills the hole (recovery ends at ssthresh) ...
    c.handle_segment(0.11, seg_in(ACK, REMOTE_SEQ, LOCAL_SEQ + 10000))
    assert c.cwnd == 5000 and c.stats["undos"] == 0
    # ... and the retransmission comes back as a duplicate: the response is undone.
    c.handle_segment(
        0.12, seg_in(ACK, REMOTE_SEQ, LOCAL_SEQ + 10000, sack_blocks=_blocks((0, 1000)))
    )
    assert c.stats["dsacks_in"] == 1 and c.stats["undos"] == 1
    assert c.cwnd == 10000 and c.ssthresh > 1 << 60  # as before recovery (slow start)


def test_dsack_inside_recovery_undoes_the_reduction_and_a_new_loss_reduces_again() -> None:
    c = established(cfg(sack=True), mss=1000, sack_permitted=True)
    _into_recovery(c)
    # The original arrives first, then the retransmission: D-SACK below the new ACK,
    # which also SACKs beyond a second hole (a real loss).
    c.handle_segment(
        0.11,
        seg_in(ACK, REMOTE_SEQ, LOCAL_SEQ + 4000, sack_blocks=_blocks((0, 1000), (5000, 8000))),
    )
    # The undo ends that recovery (as Linux's does); the second hole, three segments
    # SACKed above it, is a loss of its own: a new recovery, reduced from the restored
    # state by half the 6000 in flight (RFC 5681), and the hole resent.
    assert c.stats["undos"] == 1 and c.stats["fast_retransmits"] == 2
    assert c.ssthresh == 3000
    assert out(c, 0.11) == [seg_out(ACK, LOCAL_SEQ + 4000, REMOTE_SEQ, bytes(1000))]
    c.handle_segment(0.12, seg_in(ACK, REMOTE_SEQ, LOCAL_SEQ + 10000))
    assert c.cwnd == 3000 and c.poll_at() is None


def test_dsack_of_data_never_retransmitted_undoes_nothing() -> None:
    c = established(cfg(sack=True), mss=1000, sack_permitted=True)
    _into_recovery(c)
    # A network duplicate of segment 3: a D-SACK inside the second block, no undo.
    c.handle_segment(
        0.11,
        seg_in(ACK, REMOTE_SEQ, LOCAL_SEQ, sack_blocks=_blocks((2000, 3000), (1000, 5000))),
    )
    assert c.stats["dsacks_in"] == 1 and c.stats["undos"] == 0 and c.ssthresh == 5000
    # The newly SACKed 1000 bytes let one segment go (PRR); with no new data to send and
    # no hole left to repair, it is the rescue retransmission of the tail (RFC 6675
    # NextSeg rule 4), once per recovery.
    assert out(c, 0.11) == [seg_out(ACK | PSH, LOCAL_SEQ + 9000, REMOTE_SEQ, bytes(1000))]
    assert c.stats["rescue_retransmits"] == 1


def test_dsack_undoes_a_spurious_timeout() -> None:
    c = established(cfg(sack=True), mss=1000, sack_permitted=True)
    c.send(bytes(3000))
    assert len(out(c)) == 3
    c.handle_timer(due(c))
    assert out(c, 0.2) == [seg_out(ACK, LOCAL_SEQ, REMOTE_SEQ, bytes(1000))]
    assert c.cwnd == 1000
    # The ACK was only late; the retransmission arrives as a duplicate (RFC 4015 case).
    c.handle_segment(0.21, seg_in(ACK, REMOTE_SEQ, LOCAL_SEQ + 3000))
    c.handle_segment(
        0.22, seg_in(ACK, REMOTE_SEQ, LOCAL_SEQ + 3000, sack_blocks=_blocks((0, 1000)))
    )
    assert c.stats["undos"] == 1 and c.cwnd == 10000


# ---------------------------------------------------------------- RACK (RFC 8985)


def test_rack_timer_finds_a_loss_that_duplicate_acks_never_would() -> None:
    """One SACK of four segments is no DupThresh; RACK calls the hole lost once it was
    sent an RTT plus the reordering window before now."""
    c = established(cfg(sack=True), mss=1000, sack_permitted=True)
    c.send(bytes(1000))
    out(c, 0.0)
    c.handle_segment(0.1, seg_in(ACK, REMOTE_SEQ, LOCAL_SEQ + 1000))  # an RTT of 0.1
    c.send(bytes(4000))
    assert len(out(c, 1.0)) == 4
    # The SACK of segment 2 comes back early (0.05 after): the hole may be reordering.
    c.handle_segment(
        1.05, seg_in(ACK, REMOTE_SEQ, LOCAL_SEQ + 1000, sack_blocks=_blocks((2000, 3000)))
    )
    assert out(c, 1.05) == []
    # Sent at 1.0, + RACK.rtt 0.1, + the window: min_rtt/4 = 0.025 capped at SRTT
    # (0.0125 after a 0 and a 0.1 sample): well before the RTO.
    assert c.poll_at() == pytest.approx(1.1125)
    c.handle_timer(1.11)
    assert out(c, 1.11) == []
    c.handle_timer(1.1125)
    assert out(c, 1.1125) == [seg_out(ACK, LOCAL_SEQ + 1000, REMOTE_SEQ, bytes(1000))]
    assert c.stats["fast_retransmits"] == 1 and c.stats["rto"] == 0


def test_rack_min_rtt_from_the_ack_as_from_a_sample() -> None:
    """``ReorderWindow.on_ack`` with the ACK's RTT sample keeps the minimum as
    ``sample`` does (the connection's every ACK gives it there, one call instead of two);
    a negative sample is none."""
    from miragekit.tcp._rack import ReorderWindow

    a, b = ReorderWindow(), ReorderWindow()
    for rtt in (0.008, -1.0, 0.004, 0.006, 0.0, 0.003):
        if rtt >= 0.0:
            a.sample(rtt)
        a.on_ack(100)
        b.on_ack(100, rtt)
        assert b.min_rtt == a.min_rtt
    assert b.min_rtt == 0.0
    c = ReorderWindow()
    c.on_ack(100, -1.0)
    assert c.min_rtt is None


def test_rack_reordering_window_adapts() -> None:
    from miragekit.tcp._rack import ReorderWindow

    w = ReorderWindow()
    w.sample(0.008)
    w.sample(0.004)
    # No reordering seen: zero once DupThresh segments are SACKed or in recovery.
    assert w.window(0.01, False, 3) == 0.0 and w.window(0.01, True, 0) == 0.0
    assert w.window(0.01, False, 1) == pytest.approx(0.001)  # min_rtt / 4
    # A D-SACK with SND.UNA 100, SND.NXT 200: one step, and a round until 200 is ACKed.
    w.on_dsack(100, 200)
    assert w.seen and w.mult == 2 and w.window(0.01, True, 5) == pytest.approx(0.002)
    w.on_dsack(150, 300)  # the same round trip: no further step
    w.on_ack(199)
    w.on_dsack(199, 300)
    assert w.mult == 2 and w.window(0.01, False, 5) == pytest.approx(0.002)
    w.on_ack(200)  # the round is over: the next D-SACK steps again
    w.on_dsack(200, 400)
    assert w.mult == 3
    for k in range(20):
        w.on_dsack(400 + 100 * k, 500 + 100 * k)
    assert w.window(0.01, False, 5) == pytest.approx(0.01)  # never beyond SRTT
    for _ in range(15):
        w.on_recovery_end()
    assert w.mult > 1  # RACK.reo_wnd_persist: 16 recoveries without D-SACK ...
    w.on_recovery_end()
    assert w.window(0.01, False, 5) == pytest.approx(0.001)  # ... then back to one step
