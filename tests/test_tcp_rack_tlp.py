"""RACK-TLP (RFC 8985 7) and NextSeg rules 3 and 4 (RFC 6675): a connection built in a
state, fed segments and timer expiries, and the exact segments out for each rule."""

from __future__ import annotations

import dataclasses

import pytest
from tests.tcp_helpers import (
    LOCAL_SEQ,
    PLAIN,
    REMOTE_SEQ,
    due,
    established,
    out,
    seg_in,
    seg_out,
)

from miragekit.tcp import Config, Connection
from miragekit.tcp._conn import QUICKACKS
from miragekit.wire.tcp import ACK, FIN, PSH

# SACK and TLP on, the rest as plain as the helpers' connection.
SACK_TLP = dataclasses.replace(PLAIN, sack=True, tail_loss_probe=True)


def _blocks(*ranges: tuple[int, int]) -> tuple[tuple[int, int], ...]:
    return tuple(((LOCAL_SEQ + a) & 0xFFFFFFFF, (LOCAL_SEQ + b) & 0xFFFFFFFF) for a, b in ranges)


def _data(c: Connection, rel: int, n: int, flags: int = ACK) -> object:
    return seg_out(flags, LOCAL_SEQ + rel, REMOTE_SEQ, bytes(n))


def sampled(cfg: Config = SACK_TLP) -> Connection:
    """ESTABLISHED, MSS 1000, SACK, 1000 bytes sent at 1.0 and ACKed at 1.1: SRTT
    0.0125 (after the handshake's sample of 0), RTO 0.2 (its floor)."""
    c = established(cfg, mss=1000, sack_permitted=True)
    c.send(bytes(1000))
    assert len(out(c, 1.0)) == 1
    c.handle_segment(1.1, seg_in(ACK, REMOTE_SEQ, LOCAL_SEQ + 1000))
    assert c.poll_at() is None
    return c


# ---------------------------------------------------------------- PTO (RFC 8985 7.2)


def test_pto_is_two_srtt_and_the_probe_resends_the_last_segment() -> None:
    c = sampled()
    c.send(bytes(3000))
    assert len(out(c, 2.0)) == 3
    assert c.poll_at() == pytest.approx(2.027)  # 2 * SRTT + 2 ms, before the RTO at 2.2
    c.handle_timer(2.027)
    # No new data: the highest-sequence segment again (7.3).
    assert out(c, 2.027) == [_data(c, 3000, 1000, ACK | PSH)]
    assert c.stats["tail_loss_probes"] == 1 and c.stats["rto"] == 0
    # The RTO is armed again, one RTO after the head was sent (2.0), as Linux's
    # tcp_rearm_rto; no second probe before an ACK.
    assert c.poll_at() == pytest.approx(2.2)
    c.handle_timer(due(c))
    assert c.stats["rto"] == 1 and c.stats["tail_loss_probes"] == 1


def test_the_rto_after_a_probe_runs_from_the_heads_send_not_from_the_probe() -> None:
    """RFC 8985 7.3 re-arms the RTO after the probe; as Linux (tcp_rearm_rto with
    tcp_rto_delta_us while the probe is pending) it fires one RTO after the segment at
    SND.UNA was last sent, so the probe does not put off the head's timeout by a PTO.
    The head here is the oldest segment of the flight, sent 20 ms before the rest."""
    c = sampled()
    c.send(bytes(1000))
    assert len(out(c, 2.0)) == 1
    c.send(bytes(2000))
    assert len(out(c, 2.02)) == 2
    t = due(c)
    assert t == pytest.approx(2.047)  # 2 * SRTT + 2 ms after the last send
    c.handle_timer(t)
    assert out(c, t) == [_data(c, 3000, 1000, ACK | PSH)]
    assert c.poll_at() == pytest.approx(2.2)  # not 2.247: 0.2 after the head's 2.0
    c.handle_timer(2.2)
    assert c.stats["rto"] == 1
    assert out(c, 2.2) == [_data(c, 1000, 1000)]


def test_the_rto_after_a_probe_is_a_tick_on_when_the_heads_rto_is_past() -> None:
    """The probe timeout is capped by the RTO: when it fires there, the probe (new data)
    goes at the head's RTO, and the RTO follows a timer tick (1 ms) later, as Linux's
    floor of one jiffy, unless the probe's ACK comes first."""
    c = sampled(dataclasses.replace(SACK_TLP, tlp_max_ack_delay=0.3))
    c.send(bytes(1000))
    out(c, 2.0)
    c.send(bytes(1000))  # beyond what went out: the probe's new data
    c._snd_wnd = 1000  # the peer's window kept it back
    assert out(c, 2.0) == []
    assert c.poll_at() == pytest.approx(2.2)
    c._snd_wnd = 64000
    c.handle_timer(2.2)
    assert out(c, 2.2) == [_data(c, 2000, 1000, ACK | PSH)]
    assert c.stats["rto"] == 0 and c.poll_at() == pytest.approx(2.201)


def test_pto_of_a_lone_segment_waits_for_a_delayed_ack_capped_by_the_rto() -> None:
    c = sampled(dataclasses.replace(SACK_TLP, tlp_max_ack_delay=0.05))
    c.send(bytes(500))
    assert len(out(c, 2.0)) == 1
    assert c.poll_at() == pytest.approx(2.0 + 0.025 + 0.05)  # + WCDelAckT
    d = sampled()  # WCDelAckT 200 ms: 2.227 is past the RTO (2.2), which caps it
    d.send(bytes(500))
    out(d, 2.0)
    assert d.poll_at() == pytest.approx(2.2)
    d.handle_timer(2.2)
    # The probe takes the RTO's place: no timeout, no window collapse. It sent the head
    # itself, so the RTO runs a full RTO from it (the head's last transmission, as Linux).
    assert out(d, 2.2) == [_data(d, 1000, 500, ACK | PSH)]
    assert d.stats["rto"] == 0 and d.cwnd == 10000
    assert d.poll_at() == pytest.approx(2.4)


def test_pto_on_a_short_path_is_two_srtt_plus_two_ms_not_a_10_ms_floor() -> None:
    """A 2 ms path (SRTT 0.25 ms after one sample here): the probe goes 2 * SRTT + 2 ms
    after the send, as Linux since 4.13, where a 10 ms floor (older kernels) would
    have waited five round trips of such a path before probing."""
    c = established(SACK_TLP, mss=1000, sack_permitted=True)
    c.send(bytes(1000))
    assert len(out(c, 1.0)) == 1
    c.handle_segment(1.002, seg_in(ACK, REMOTE_SEQ, LOCAL_SEQ + 1000))
    c.send(bytes(3000))
    assert len(out(c, 2.0)) == 3
    t = due(c)
    assert t == pytest.approx(2.0 + 2 * 0.00025 + 0.002)
    c.handle_timer(t)
    assert out(c, t) == [_data(c, 3000, 1000, ACK | PSH)]
    assert c.stats["tail_loss_probes"] == 1 and c.stats["rto"] == 0


def test_probe_sends_new_data_beyond_cwnd_when_the_window_allows() -> None:
    c = sampled()
    c.send(bytes(30000))
    sent = out(c, 2.0)
    # cwnd 10000: the one segment ACKed before never filled it, so it grew nothing
    assert len(sent) == 10
    c.handle_timer(due(c))
    assert out(c, 2.027) == [_data(c, 11000, 1000)]
    # Then the peer's window is full: the last segment sent is the probe instead.
    d = sampled()
    d.send(bytes(30000))
    d.handle_segment(1.2, seg_in(ACK, REMOTE_SEQ, LOCAL_SEQ + 1000, window=5000))
    assert len(out(d, 2.0)) == 5
    d.handle_timer(due(d))
    assert out(d, 2.027) == [_data(d, 5000, 1000)]


def test_no_probe_without_sack_or_when_disabled_or_in_recovery() -> None:
    for cfg in (dataclasses.replace(SACK_TLP, sack=False), PLAIN):
        c = established(cfg, mss=1000)
        c.send(bytes(3000))
        out(c)
        assert c.poll_at() == pytest.approx(0.2)  # the RTO only
    c = sampled()
    c.send(bytes(5000))
    out(c, 2.0)
    # SACKed data outstanding: RACK's timer watches the hole, not the PTO.
    c.handle_segment(
        2.01, seg_in(ACK, REMOTE_SEQ, LOCAL_SEQ + 1000, sack_blocks=_blocks((2000, 3000)))
    )
    c.handle_segment(
        2.02, seg_in(ACK, REMOTE_SEQ, LOCAL_SEQ + 2000, sack_blocks=_blocks((3000, 4000)))
    )
    assert c._tlp_at is None


# ---------------------------------------------------------------- TLP episodes (RFC 8985 7.4)


def _probed(c: Connection) -> None:
    """Three segments out at 2.0; the probe resends the third at 2.027."""
    c.send(bytes(3000))
    out(c, 2.0)
    c.handle_timer(2.027)
    assert out(c, 2.027) == [_data(c, 3000, 1000, ACK | PSH)]


def test_probe_that_repaired_a_loss_reduces_cwnd() -> None:
    c = sampled()
    _probed(c)
    # The third segment was lost: the probe filled it; the ACK reaches TLP.end_seq ...
    c.handle_segment(2.04, seg_in(ACK, REMOTE_SEQ, LOCAL_SEQ + 4000))
    assert c.stats["tlp_recoveries"] == 0  # ... a D-SACK may yet show it was not lost
    # New data, ACKed beyond the probe with no D-SACK: the probe repaired a loss.
    c.send(bytes(1000))
    out(c, 2.05)
    c.handle_segment(2.06, seg_in(ACK, REMOTE_SEQ, LOCAL_SEQ + 5000))
    assert c.stats["tlp_recoveries"] == 1
    # NewReno's response to a loss, from cwnd (10000: these few segments never filled
    # it, so slow start grew nothing on their ACKs).
    assert c.ssthresh == 5000 and c.cwnd == 5000


def test_probe_reported_as_a_duplicate_reduces_nothing() -> None:
    c = sampled()
    _probed(c)
    # The original arrived: the probe comes back as a D-SACK.
    c.handle_segment(
        2.04, seg_in(ACK, REMOTE_SEQ, LOCAL_SEQ + 4000, sack_blocks=_blocks((3000, 4000)))
    )
    c.send(bytes(1000))
    out(c, 2.05)
    c.handle_segment(2.06, seg_in(ACK, REMOTE_SEQ, LOCAL_SEQ + 5000))
    assert c.stats["tlp_recoveries"] == 0 and c.ssthresh > 1 << 60 and c.cwnd == 10000


def test_probe_answered_by_a_plain_duplicate_ack_reduces_nothing() -> None:
    c = sampled()
    _probed(c)
    c.handle_segment(2.04, seg_in(ACK, REMOTE_SEQ, LOCAL_SEQ + 4000))
    c.handle_segment(2.041, seg_in(ACK, REMOTE_SEQ, LOCAL_SEQ + 4000))  # no SACK option
    c.send(bytes(1000))
    out(c, 2.05)
    c.handle_segment(2.06, seg_in(ACK, REMOTE_SEQ, LOCAL_SEQ + 5000))
    assert c.stats["tlp_recoveries"] == 0 and c.ssthresh > 1 << 60


def test_probe_of_new_data_ends_its_episode_on_its_ack() -> None:
    c = sampled()
    c.send(bytes(30000))
    out(c, 2.0)
    c.handle_timer(2.027)
    assert out(c, 2.027) == [_data(c, 11000, 1000)]
    c.handle_segment(2.03, seg_in(ACK, REMOTE_SEQ, LOCAL_SEQ + 12000))
    assert c._tlp_end is None and c.stats["tlp_recoveries"] == 0
    # The episode is over: the PTO is armed again for what the ACK let out.
    assert len(out(c, 2.03)) > 0 and c._tlp_at is not None


def test_one_probe_per_episode_and_an_rtt_sample_between_probes() -> None:
    c = sampled()
    _probed(c)
    # An ACK of the first segment only (no timestamps, so no RTT sample: the timed
    # segment was the probe's range, Karn): the episode is open, no PTO is armed.
    c.handle_segment(2.04, seg_in(ACK, REMOTE_SEQ, LOCAL_SEQ + 2000))
    assert c._tlp_at is None and c.poll_at() == pytest.approx(2.24)


def test_timeout_ends_a_tlp_episode() -> None:
    c = sampled()
    _probed(c)
    c.handle_timer(due(c))
    assert c.stats["rto"] == 1 and c._tlp_end is None


def test_fin_probe() -> None:
    c = sampled()
    c.send(bytes(2000))
    c.close()
    assert len(out(c, 2.0)) == 2
    c.handle_timer(due(c))
    assert out(c, 2.027) == [_data(c, 2000, 1000, ACK | PSH | FIN)]


# ---------------------------------------------------------------- NextSeg (RFC 6675)


def test_nextseg_rule3_retransmits_a_hole_not_yet_lost_when_no_new_data_can_go() -> None:
    c = sampled()
    c.send(bytes(8000))
    assert len(out(c, 2.0)) == 8
    # Segment 1 (of 1-8) is lost: three SACKs start recovery; its retransmission goes.
    for k in (3000, 4000, 5000):
        c.handle_segment(
            2.001, seg_in(ACK, REMOTE_SEQ, LOCAL_SEQ + 1000, sack_blocks=_blocks((2000, k)))
        )
    assert out(c, 2.001) == [_data(c, 1000, 1000)]
    # Then segment 6 is missing below one SACKed segment: not lost by DupThresh, nor yet
    # by RACK (sent at 2.0, RACK.rtt 0.1 not elapsed). Rule 1 finds nothing and there is
    # no new data: rule 3 resends it while the window allows.
    c.handle_segment(
        2.002,
        seg_in(ACK, REMOTE_SEQ, LOCAL_SEQ + 1000, sack_blocks=_blocks((7000, 8000), (2000, 6000))),
    )
    assert out(c, 2.002) == [_data(c, 6000, 1000)]
    assert c.stats["rescue_retransmits"] == 0


def test_nextseg_rule4_rescue_once_per_recovery() -> None:
    c = sampled()
    c.send(bytes(8000))
    out(c, 2.0)
    for k in (3000, 4000, 5000):
        c.handle_segment(
            2.001, seg_in(ACK, REMOTE_SEQ, LOCAL_SEQ + 1000, sack_blocks=_blocks((2000, k)))
        )
    assert out(c, 2.001) == [_data(c, 1000, 1000)]
    # The tail (7000-9000) is unSACKed, no hole is left to repair, nothing new to send:
    # one rescue retransmission of the highest outstanding segment.
    c.handle_segment(
        2.002, seg_in(ACK, REMOTE_SEQ, LOCAL_SEQ + 1000, sack_blocks=_blocks((2000, 7000)))
    )
    assert out(c, 2.002) == [_data(c, 8000, 1000, ACK | PSH)]
    assert c.stats["rescue_retransmits"] == 1
    # Once per recovery: later ACKs in the same recovery send no second rescue.
    c.handle_segment(2.003, seg_in(ACK, REMOTE_SEQ, LOCAL_SEQ + 7000))
    assert out(c, 2.003) == [] and c.stats["rescue_retransmits"] == 1
    # Without the rescue the tail would wait for the RTO; it ends recovery at once.
    c.handle_segment(2.004, seg_in(ACK, REMOTE_SEQ, LOCAL_SEQ + 9000))
    assert c.poll_at() is None and c.stats["rto"] == 0


# ---------------------------------------------------------------- the receiver's side


def test_receiver_acks_every_segment_for_a_while_after_a_hole_is_filled() -> None:
    c = established(dataclasses.replace(PLAIN, sack=True, delayed_ack=True), sack_permitted=True)

    def data(k: int) -> None:
        c.handle_segment(0.0, seg_in(ACK, REMOTE_SEQ + 600 * k, LOCAL_SEQ, bytes(600)))

    data(0)
    assert out(c) == []  # in order, one segment: the ACK is delayed
    data(2)
    assert len(out(c)) == 1  # out of order: a duplicate ACK at once
    data(1)
    assert [s.ack for s in out(c)] == [(REMOTE_SEQ + 1800) & 0xFFFFFFFF]  # the hole filled
    # The sender is recovering: the next QUICKACKS segments are each ACKed at once ...
    for k in range(3, 3 + QUICKACKS):
        data(k)
        assert [s.ack for s in out(c)] == [(REMOTE_SEQ + 600 * (k + 1)) & 0xFFFFFFFF]
    # ... then delayed ACKs again (one per two segments).
    data(3 + QUICKACKS)
    assert out(c) == []
    data(4 + QUICKACKS)
    assert len(out(c)) == 1


def test_a_batch_of_out_of_order_segments_gets_an_ack_each() -> None:
    """The driver hands a burst over before it asks for output; while a hole is open
    (and in quick-ACK mode) each segment still gets its own ACK, as a sender counting
    duplicate ACKs and reading SACK blocks expects, instead of one for the batch."""
    c = established(dataclasses.replace(PLAIN, sack=True, delayed_ack=True), sack_permitted=True)
    for k in (1, 2, 3):  # segment 0 is missing
        c.handle_segment(0.0, seg_in(ACK, REMOTE_SEQ + 600 * k, LOCAL_SEQ, bytes(600)))
    acks = out(c)
    assert [s.ack for s in acks] == [REMOTE_SEQ & 0xFFFFFFFF] * 3
    assert [s.sack_blocks for s in acks] == [
        (((REMOTE_SEQ + 600) & 0xFFFFFFFF, (REMOTE_SEQ + 600 * (k + 1)) & 0xFFFFFFFF),)
        for k in (1, 2, 3)
    ]
    # In order, with nothing held and no loss seen: a batch is ACKed once (delayed ACKs).
    d = established(dataclasses.replace(PLAIN, delayed_ack=True))
    for k in range(4):
        d.handle_segment(0.0, seg_in(ACK, REMOTE_SEQ + 600 * k, LOCAL_SEQ, bytes(600)))
    assert len(out(d)) == 1
