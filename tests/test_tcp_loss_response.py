"""How fast a SACK sender goes while it recovers from loss (the lossy benchmark's rules):
a connection built in a state, fed segments and timers, and the exact segments out."""

from __future__ import annotations

import dataclasses

import pytest
from tests.tcp_helpers import LOCAL_SEQ, PLAIN, REMOTE_SEQ, established, out, seg_in, seg_out

from miragekit.tcp import Config, Connection
from miragekit.tcp.congestion import NewReno
from miragekit.wire.tcp import ACK, CWR, ECE, PSH, SYN

SACK_TLP = dataclasses.replace(PLAIN, sack=True, tail_loss_probe=True)


def _blocks(*ranges: tuple[int, int]) -> tuple[tuple[int, int], ...]:
    return tuple(((LOCAL_SEQ + a) & 0xFFFFFFFF, (LOCAL_SEQ + b) & 0xFFFFFFFF) for a, b in ranges)


def _data(rel: int, n: int = 1000, flags: int = ACK) -> object:
    return seg_out(flags, LOCAL_SEQ + rel, REMOTE_SEQ, bytes(n))


def _ack(c: Connection, now: float, rel: int, *ranges: tuple[int, int]) -> None:
    c.handle_segment(now, seg_in(ACK, REMOTE_SEQ, LOCAL_SEQ + rel, sack_blocks=_blocks(*ranges)))


def reordering_seen(cfg: Config = SACK_TLP) -> Connection:
    """ESTABLISHED, MSS 1000, SACK; segments 1000-4000 sent at 2.0, 2000-3000 SACKed,
    then all ACKed at 2.02 by their first transmission: reordering seen, so RACK waits
    its window before calling a hole lost, and DupThresh no longer counts. cwnd 13000:
    the ACK at 2.02 delivered two segments (slow start); the one SACKed at 2.01, before
    reordering was seen, grew nothing (a likely loss, as Linux), and is not counted
    again when the cumulative ACK covers it."""
    c = established(cfg, mss=1000, sack_permitted=True)
    c.send(bytes(1000))
    assert len(out(c, 1.0)) == 1
    _ack(c, 1.1, 1000)
    c.send(bytes(3000))
    assert len(out(c, 2.0)) == 3
    _ack(c, 2.01, 1000, (2000, 3000))
    _ack(c, 2.02, 4000)
    # cwnd 10000: these few segments never filled it, so their ACKs grew nothing
    assert c._reo.seen and c.cwnd == 10000
    return c


def test_sacked_data_frees_cwnd_before_recovery() -> None:
    """Outside recovery, cwnd limits the pipe (RFC 6675), not everything below SND.MAX:
    each segment SACKed while RACK waits out the reordering window lets one new one go
    (as Linux counts packets in flight), where limited transmit (RFC 3042) allows two;
    and, reordering seen, the window grows by it (slow start here: one more)."""
    c = reordering_seen()
    c.send(bytes(40000))
    assert out(c, 3.0) == [_data(4000 + 1000 * i) for i in range(10)]
    # Segment 4000 is missing; 5000-9000 arrive, early enough to be reordering.
    for i, t in enumerate((3.011, 3.012, 3.013, 3.014)):
        _ack(c, t, 4000, (5000, 6000 + 1000 * i))
        assert out(c, t) == [_data(14000 + 2000 * i), _data(15000 + 2000 * i)]
        assert c.cwnd == 11000 + 1000 * i
    assert not c._in_recovery and c.stats["fast_retransmits"] == 0
    # RACK's deadline (sent at 3.0, + RACK.rtt 0.02 + the window, min_rtt/4 = 0.005)
    # then finds the hole lost: recovery, and the retransmission.
    assert c.poll_at() == pytest.approx(3.025, abs=2e-6)
    c.handle_timer(c.poll_at() or 0.0)
    assert c._in_recovery and out(c, 3.021)[0] == _data(4000)


def test_the_window_grows_by_data_delivered_not_by_the_cumulative_ack() -> None:
    """Congestion avoidance (NewReno, RFC 3465: one MSS per cwnd of bytes delivered).
    Reordering seen, each SACK outside recovery counts the segment it delivered, as
    Linux's window growth by acked_sacked (RFC 6937's DeliveredData): the window grows
    while RACK waits, not only on a cumulative ACK that a recovery may never bring.
    The cumulative ACK that then covers the SACKed data counts only what it newly
    delivered, so nothing is counted twice."""
    c = reordering_seen()
    c._cc.ssthresh = c._cc.cwnd  # congestion avoidance at 10 segments
    c.send(bytes(40000))
    assert out(c, 3.0) == [_data(4000 + 1000 * i) for i in range(10)]
    # 4000 is late; 5000-13000 arrive (nine), then 14000, sent on the first SACK.
    sent = []
    for i in range(10):
        _ack(c, 3.011, 4000, (5000, 6000 + 1000 * i))
        assert c.cwnd == (10000 if i < 9 else 11000)
        sent += out(c, 3.011)
    assert not c._in_recovery
    # One new segment per SACK, and a second on the last: the window grew.
    assert sent == [_data(14000 + 1000 * i) for i in range(11)]
    # The late segment: the ACK covers 11000 bytes, 10000 of them SACKed already.
    _ack(c, 3.015, 15000, (15000, 16000))
    cc = c._cc
    assert isinstance(cc, NewReno)
    assert c.cwnd == 11000 and cc._acc == 2000  # 4000 and 15000, not 11000 again


# ---------------------------------------------------------------- timeouts

SACK = dataclasses.replace(SACK_TLP, tail_loss_probe=False)


def test_a_timeout_in_fast_recovery_keeps_its_ssthresh_and_a_second_holds_it() -> None:
    """Fast recovery halved the window for this loss (ssthresh 5500, from cwnd); its
    retransmission is lost and the RTO fires inside the recovery. The timeout sets the
    loss window, one segment, and keeps that ssthresh (as Linux's timeout in recovery),
    where a reduction from SND.MAX - SND.UNA, which counts the SACKed data, had raised
    it to 7000; a second timeout of the same segment holds it too (RFC 5681 3.1)."""
    c = established(SACK, mss=1000, sack_permitted=True)
    c.send(bytes(1000))
    assert len(out(c, 1.0)) == 1
    _ack(c, 1.1, 1000)  # RTO 0.2
    # One segment never filled cwnd, so its ACK grew nothing; start as a flow that did.
    c._cc.cwnd = 11000
    c.send(bytes(14000))
    assert out(c, 2.0) == [_data(1000 + 1000 * i) for i in range(11)]
    _ack(c, 2.01, 1000, (2000, 3000))
    _ack(c, 2.01, 1000, (2000, 4000))
    assert out(c, 2.01) == [_data(12000), _data(13000)]  # SACKed data frees the pipe
    _ack(c, 2.01, 1000, (2000, 5000))
    assert out(c, 2.01) == [_data(1000)]
    assert c._in_recovery and c.ssthresh == 5500
    sent = []
    for k in range(6000, 11000, 1000):
        _ack(c, 2.02, 1000, (2000, k))
        sent += out(c, 2.02)
    # PRR's one new segment, then the rescue retransmission (NextSeg rule 4) of it.
    assert sent == [_data(14000, flags=ACK | PSH)] * 2
    assert c.snd_nxt - c.snd_una == 14000
    assert c.poll_at() == pytest.approx(2.2)  # from the first send: no ACK of new data
    c.handle_timer(2.2)
    assert out(c, 2.2) == [_data(1000)]
    assert c.stats["rto"] == 1 and c.cwnd == 1000 and c.ssthresh == 5500
    assert c.poll_at() == pytest.approx(2.6)  # backed off
    c.handle_timer(2.6)
    assert out(c, 2.6) == [_data(1000)]
    assert c.stats["rto"] == 2 and c.cwnd == 1000 and c.ssthresh == 5500


def test_a_retransmission_in_flight_when_recovery_ends_is_not_sent_again() -> None:
    """Recovery (point 14000) resends 1000 at 2.1, and sends 14000 and 15000 beyond it
    (PRR). At 2.2 RACK finds that retransmission lost and 14000 (sent in the recovery)
    lost too, and resends both. At 2.3 the ACK of 1000 ends the recovery while 14000's
    retransmission is still on its way. 14000 is a loss in a later window, so a new
    recovery reduces again (as Linux), but 14000 is not sent a third time: its
    retransmission stays recorded. Forgotten at the recovery's end, it went again at
    once, and that needless copy, the new episode's only retransmission, let the ACK
    of the first copy undo the reduction by timestamps."""
    c = established(SACK, mss=1000, sack_permitted=True)
    c.send(bytes(1000))
    assert len(out(c, 1.0)) == 1
    _ack(c, 1.1, 1000)  # RTT 0.1
    # One segment never filled cwnd, so its ACK grew nothing; start as a flow that did.
    c._cc.cwnd = 11000
    c.send(bytes(30000))
    assert out(c, 2.0) == [_data(1000 + 1000 * i) for i in range(11)]
    sent = []
    for k in range(3000, 12000, 1000):
        _ack(c, 2.1, 1000, (2000, k))
        sent += out(c, 2.1)
    assert sent == [_data(x) for x in (12000, 13000, 1000, 14000, 15000)]
    assert c._in_recovery and c._recover - LOCAL_SEQ == 14000 and c.ssthresh == 5500
    _ack(c, 2.2, 1000, (2000, 14000), (15000, 16000))
    assert out(c, 2.2) == [_data(x) for x in (1000, 14000, 16000, 17000, 18000)]
    assert c.stats["lost_retransmits"] == 1
    _ack(c, 2.3, 14000, (15000, 16000))
    assert out(c, 2.3) == []
    assert c._in_recovery and c.stats["fast_retransmits"] == 2 and c.ssthresh == 2500
    assert c.stats["retransmits"] == 3


def test_a_timeout_reduces_from_cwnd_not_from_sacked_data_sent_beyond_it() -> None:
    """Outside recovery the pipe rule lets data go beyond cwnd while the peer SACKs;
    the timeout's FlightSize leaves it out, as fast retransmit's does (RFC 5681 3.2)."""
    c = reordering_seen(SACK)
    c._cc.cwnd = c._cc.ssthresh = 13000  # congestion avoidance at 13 segments
    c.send(bytes(20000))
    assert len(out(c, 3.0)) == 13
    for i in range(4):
        _ack(c, 3.011, 4000, (5000, 6000 + 1000 * i))
    assert len(out(c, 3.011)) == 4
    assert c.snd_nxt - c.snd_una == 17000 and c.cwnd == 13000
    c.handle_timer(c._rtx_at or 0.0)
    assert c.stats["rto"] == 1 and c.cwnd == 1000 and c.ssthresh == 6500


# ---------------------------------------------------------------- undo by timestamps

TS = dataclasses.replace(SACK_TLP, timestamps=True, tail_loss_probe=False)
M = 988  # MSS 1000 less the timestamp option


def _ts_ack(c: Connection, now: float, rel: int, tsecr: int, *ranges: tuple[int, int]) -> None:
    seg = seg_in(
        ACK, REMOTE_SEQ, LOCAL_SEQ + rel, sack_blocks=_blocks(*ranges), timestamp=(500, tsecr)
    )
    c.handle_segment(now, seg)


def _ts_recovery() -> Connection:
    """Ten segments out at 1.0 (TSval 1000), the first missing; the third SACK starts
    recovery and the hole is resent at 1.01 (TSval 1010)."""
    c = established(TS, mss=1000, sack_permitted=True, timestamp=(100, 0))
    c.send(bytes(10 * M))
    assert len(out(c, 1.0)) == 10
    for k in (2, 3, 4):
        _ts_ack(c, 1.01, 0, 1000, (M, k * M))
    resent = out(c, 1.01)
    assert [(s.seq - LOCAL_SEQ) & 0xFFFFFFFF for s in resent] == [0]
    assert resent[0].timestamp == (1010, 500)
    assert c._in_recovery and c.ssthresh == 5 * M
    return c


def test_an_ack_echoing_the_original_undoes_the_recovery_at_once() -> None:
    """RFC 3522 detection (Linux's undo by timestamps): the ACK of the hole echoes TSval
    1000, older than the retransmission's 1010, so the original filled it; the
    response is undone on that ACK, a round trip before the D-SACK would come."""
    c = _ts_recovery()
    _ts_ack(c, 1.02, 10 * M, 1000)
    assert c.stats["undos"] == 1 and c.stats["undos_by_timestamp"] == 1
    assert not c._in_recovery and c.ssthresh > 1 << 60
    # 10 restored, then slow start by the 7 segments this ACK delivered (the 3 SACKed
    # before recovery were delivered then, and grew nothing: no reordering seen).
    assert c.cwnd == 17 * M
    # The D-SACK of the retransmission that follows finds nothing left to undo.
    _ts_ack(c, 1.03, 10 * M, 1000, (0, M))
    assert c.stats["undos"] == 1 and c.stats["dsacks_in"] == 1


def test_an_ack_echoing_the_retransmission_undoes_nothing() -> None:
    c = _ts_recovery()
    _ts_ack(c, 1.02, 10 * M, 1010)  # the retransmission filled the hole
    assert c.stats["undos"] == 0 and c.ssthresh == 5 * M and c.cwnd == 5 * M


def test_no_undo_by_timestamp_when_sacked_data_lay_between_retransmissions() -> None:
    """Holes at 0 and 4 both resent: the second may have arrived by its retransmission
    while the first was still missing, which sets no echo; an old echo on the ACK of
    both proves nothing, so only D-SACKs may undo then."""
    c = established(TS, mss=1000, sack_permitted=True, timestamp=(100, 0))
    c.send(bytes(20 * M))
    assert len(out(c, 1.0)) == 10
    for k in (6, 7, 8):
        _ts_ack(c, 1.01, 0, 1000, (5 * M, k * M), (M, 4 * M))
    # Both holes resent, and (PRR) one new segment.
    assert [(s.seq - LOCAL_SEQ) & 0xFFFFFFFF for s in out(c, 1.01)] == [0, 4 * M, 10 * M]
    _ts_ack(c, 1.02, 10 * M, 1000)
    assert c.stats["undos"] == 0 and c.ssthresh == 5 * M


# ---------------------------------------------------------------- a probe in recovery


def _sampled() -> Connection:
    """ESTABLISHED, MSS 1000, SACK and TLP; 1000 bytes sent at 1.0 and ACKed at 1.1:
    SRTT 0.0125 (after the handshake's sample of 0), RTO 0.2 (its floor)."""
    c = established(SACK_TLP, mss=1000, sack_permitted=True)
    c.send(bytes(1000))
    assert len(out(c, 1.0)) == 1
    _ack(c, 1.1, 1000)
    return c


def test_a_lost_retransmission_with_nothing_after_it_costs_a_probe_not_an_rto() -> None:
    """Recovery resends the hole at 2.01 and has nothing more to send; that
    retransmission is lost. RACK has no later delivery to judge it by, so before the
    RTO (2.21) the probe timeout (2 * SRTT after the last send) resends the highest
    segment not yet delivered: here the hole again."""
    c = _sampled()
    c.send(bytes(4000))
    assert len(out(c, 2.0)) == 4
    for k in (3000, 4000):
        _ack(c, 2.01, 1000, (2000, k))
    assert out(c, 2.01) == []  # the application has nothing more to send
    _ack(c, 2.01, 1000, (2000, 5000))
    assert out(c, 2.01) == [_data(1000)] and c._in_recovery
    assert c.poll_at() == pytest.approx(2.037)
    c.handle_timer(2.037)
    assert out(c, 2.037) == [_data(1000)]
    assert c.stats["tail_loss_probes"] == 1 and c.stats["rto"] == 0
    # One probe: then the RTO, armed again from the probe, if nothing comes back.
    assert c.poll_at() == pytest.approx(2.237)
    _ack(c, 2.05, 5000)
    assert not c._in_recovery and c.stats["rto"] == 0


def test_a_probe_in_recovery_sends_new_data_whose_sack_shows_the_retransmission_lost() -> None:
    """Nine segments out at 2.0, then more data queued; three SACKs start recovery,
    the hole is resent at 2.01, and PRR holds the new data back (the pipe, 6000, is
    above ssthresh, 4500). Nothing more arrives: the probe at 2.037 is new data beyond
    cwnd, and its SACK is the later delivery that lets RACK call the retransmission
    lost (once RACK.rtt, 0.1 here, has passed since it left) and send it again, where
    before only the RTO would have."""
    c = _sampled()
    c.send(bytes(9000))
    assert len(out(c, 2.0)) == 9
    c.send(bytes(5000))
    for k in (3000, 4000, 5000):
        _ack(c, 2.01, 1000, (2000, k))
    assert out(c, 2.01) == [_data(1000)] and c.ssthresh == 4500
    assert c.poll_at() == pytest.approx(2.037)
    c.handle_timer(2.037)
    assert out(c, 2.037) == [_data(10000)]
    _ack(c, 2.05, 1000, (2000, 5000), (10000, 11000))
    # RACK: the first sends (2.0) are lost at 2.1, the retransmission (2.01) at 2.11.
    assert c.poll_at() == pytest.approx(2.1, abs=2e-6)
    c.handle_timer(2.1 + 2e-6)
    assert out(c, 2.1 + 2e-6) == [_data(5000 + 1000 * i) for i in range(5)]
    assert c.poll_at() == pytest.approx(2.11, abs=2e-6)
    c.handle_timer(2.11 + 2e-6)
    assert out(c, 2.11 + 2e-6)[0] == _data(1000)
    assert c.stats["lost_retransmits"] == 1 and c.stats["rto"] == 0


def test_prr_never_sends_faster_than_delivery_when_recovery_starts_with_an_empty_pipe() -> None:
    """Recovery starts with everything above the hole SACKed: the pipe is empty. A
    RecoverFS of 0 (the pipe alone) would make PRR's proportional part send
    ssthresh/RecoverFS times what is delivered, without bound, once a probe takes the
    pipe above ssthresh; the window before the reduction (10000) keeps it below one."""
    c = _sampled()
    c.send(bytes(4000))
    assert len(out(c, 2.0)) == 4
    _ack(c, 2.01, 1000, (2000, 5000))
    assert out(c, 2.01) == [_data(1000)]
    assert c._in_recovery and c.ssthresh == 2000 and c._recover_fs == 10000
    c.send(bytes(20000))
    assert out(c, 2.011) == [_data(5000)]  # PRR-SSRB: the pipe back up to ssthresh
    c.handle_timer(c.poll_at() or 0.0)  # nothing comes back: the probe, new data
    assert out(c, 2.036) == [_data(6000)]
    # A duplicate of the last ACK (the network's) delivers nothing; with the pipe
    # (3000) above ssthresh, ceil(3000 delivered * 2000 / 10000) - 2000 sent leaves no
    # room, where a RecoverFS of 1 would have let all the queued data go at once.
    _ack(c, 2.04, 1000, (2000, 5000))
    assert out(c, 2.04) == [] and c.cwnd == 3000


def test_an_ece_reduces_from_cwnd_not_from_sacked_data_sent_beyond_it() -> None:
    """ECN's response is a loss's (RFC 3168 6.1.2): from FlightSize, which leaves out
    the data sent beyond cwnd while the peer SACKed (the pipe rule outside recovery)."""
    syn = seg_in(SYN | ECE | CWR, REMOTE_SEQ - 1, 0, mss=1000, sack_permitted=True)
    c = Connection.accept(SACK_TLP, syn, LOCAL_SEQ - 1, 0.0)
    assert [s.flags for s in out(c)] == [SYN | ACK | ECE]
    c.handle_segment(0.0, seg_in(ACK, REMOTE_SEQ, LOCAL_SEQ))
    c.send(bytes(1000))
    assert len(out(c, 1.0)) == 1
    _ack(c, 1.1, 1000)  # an RTT of 0.1; cwnd 10000 (one segment never filled it)
    c.send(bytes(20000))
    assert len(out(c, 2.0)) == 10
    # Segment 1000 is missing, the next two arrive: not yet lost (two segments are no
    # DupThresh, and RACK waits an RTT), and the two SACKed segments let two new ones
    # go: 12000 in flight.
    _ack(c, 2.01, 1000, (2000, 3000))
    _ack(c, 2.01, 1000, (2000, 4000))
    sent = out(c, 2.01)
    assert [((s.seq - LOCAL_SEQ) & 0xFFFFFFFF, len(s.payload)) for s in sent] == [
        (11000, 1000),
        (12000, 1000),
    ]
    # An ECE on the ACK of segment 1000: slow start (cwnd full) makes cwnd 11000, and
    # the reduction is half of that, not half of the 12000 below SND.MAX.
    c.handle_segment(
        2.02, seg_in(ACK | ECE, REMOTE_SEQ, LOCAL_SEQ + 2000, sack_blocks=_blocks((2000, 4000)))
    )
    assert c.stats["ecn_reductions"] == 1 and c.ssthresh == 5500


def test_an_ack_that_sacks_past_a_loss_and_acks_a_held_segment_is_no_reordering() -> None:
    """A delayed ACK held segment 1000; 2000 is lost; 3000 arrives out of order and the
    receiver's ACK acknowledges 1000 and SACKs 3000 at once. That ACK filled no hole
    (nothing was SACKed before it), so it shows no reordering (RFC 8985 6.2 step 2): on
    a path without reordering DupThresh keeps counting, and the third SACKed segment
    resends 2000 at once rather than an RTT plus a reordering window later."""
    c = _sampled()
    c.send(bytes(6000))
    assert len(out(c, 2.0)) == 6
    _ack(c, 2.1, 2000, (3000, 4000))
    assert not c._reo.seen
    _ack(c, 2.1, 2000, (3000, 5000))
    _ack(c, 2.1, 2000, (3000, 6000))
    assert out(c, 2.1) == [_data(2000)] and c._in_recovery


def test_a_hole_filled_by_its_first_transmission_is_reordering() -> None:
    """The same hole, then its original arrives (a cumulative ACK over it, nothing
    retransmitted): reordering seen, and from then on RACK's clock alone finds losses."""
    c = _sampled()
    c.send(bytes(6000))
    assert len(out(c, 2.0)) == 6
    _ack(c, 2.1, 2000, (3000, 4000))
    _ack(c, 2.101, 4000)
    assert c._reo.seen and not c._in_recovery
