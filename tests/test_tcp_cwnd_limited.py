"""cwnd grows only while the flow is cwnd-limited (RFC 5681 4.1 and RFC 7661 on
application-limited periods, RFC 9438 5.8; Linux's rule): a connection built in a state,
fed ACKs, and its cwnd after them. Request/response traffic, which never fills cwnd,
leaves it where it was; a bulk sender's grows as before."""

from __future__ import annotations

import dataclasses

import pytest
from tests.tcp_helpers import LOCAL_SEQ, PLAIN, REMOTE_SEQ, established, out, seg_in

from miragekit.tcp import Config, Connection
from miragekit.tcp.congestion import INITIAL_SSTHRESH, Cubic, NewReno, new_controller
from miragekit.wire.tcp import ACK

MSS = 1000
PLAIN_SS = dataclasses.replace(PLAIN, hystart=False)  # RFC 3465 slow start: exact sums


def _conn(cfg: Config = PLAIN_SS, *, avoidance: bool = False) -> Connection:
    """ESTABLISHED, MSS 1000, cwnd 10000; in congestion avoidance (ssthresh = cwnd) if
    asked, as after a loss."""
    c = established(cfg, mss=MSS)
    assert c.cwnd == 10 * MSS
    if avoidance:
        c._cc.ssthresh = c._cc.cwnd
    return c


class Peer:
    """The far end's ACKs: ``ack(n)`` acknowledges the next ``n`` bytes sent."""

    def __init__(self, c: Connection) -> None:
        self.c = c
        self.acked = 0

    def ack(self, now: float, n: int) -> None:
        self.acked += n
        self.c.handle_segment(now, seg_in(ACK, REMOTE_SEQ, LOCAL_SEQ + self.acked))


def request_response(
    c: Connection, rounds: int, size: int, *, fast: bool, peer: Peer | None = None, t: float = 1.0
) -> None:
    """``rounds`` replies of ``size`` bytes, each ACKed before the next is written (by
    ``segment_now`` if ``fast``, else ``segments_to_send``)."""
    peer = peer or Peer(c)
    for _ in range(rounds):
        c.send(bytes(size))
        if fast:
            seg = c.segment_now(t)
            assert seg is not None
            segs = [seg]
        else:
            segs = out(c, t)
        assert sum(len(s.payload) for s in segs) == size
        peer.ack(t + 0.01, size)
        t += 0.1


def bulk(c: Connection, acks: int, *, t: float = 1.0, peer: Peer | None = None) -> Peer:
    """A sender that always has data: the window filled, then ``acks`` ACKs of one
    segment each, the window filled again after every one."""
    peer = peer or Peer(c)
    c.send(bytes(c.send_buffer_free))
    out(c, t)
    for _ in range(acks):
        t += 0.001
        peer.ack(t, MSS)
        c.send(bytes(c.send_buffer_free))
        out(c, t)
    return peer


# ---------------------------------------------------------------- application-limited


@pytest.mark.parametrize("congestion", ["newreno", "cubic"])
@pytest.mark.parametrize("avoidance", [False, True], ids=["slow-start", "avoidance"])
@pytest.mark.parametrize("fast", [False, True], ids=["general", "segment_now"])
def test_request_response_leaves_cwnd_where_it_was(
    congestion: str, avoidance: bool, fast: bool
) -> None:
    """200 replies of 300 bytes, each ACKed (60 KB): cwnd was never full, so it stays
    at 10000 (without the rule slow start made it 70000, congestion avoidance 15000)."""
    c = _conn(dataclasses.replace(PLAIN_SS, congestion=congestion), avoidance=avoidance)
    ssthresh = c.ssthresh
    request_response(c, 200, 300, fast=fast)
    assert c.cwnd == 10 * MSS and c.ssthresh == ssthresh


def test_a_burst_after_request_response_goes_out_at_the_window_the_path_carried() -> None:
    """The issue's danger: after a long request/response period the application writes
    60 KB at once. cwnd is still the initial window, so 10 segments go, not 60."""
    c = _conn()
    request_response(c, 200, 300, fast=False)
    c.send(bytes(60_000))
    segs = out(c, 30.0)
    assert [len(s.payload) for s in segs] == [MSS] * 10


def test_a_receiver_limited_flow_is_not_cwnd_limited() -> None:
    """RFC 9438 5.8: a flow held back by the peer's window (4000 here) does not fill
    cwnd either: in congestion avoidance cwnd stays; in slow start it may reach twice
    the largest flight (8000), which 10000 already is."""
    for avoidance in (False, True):
        c = _conn(avoidance=avoidance)
        acked = 0
        c.send(bytes(40_000))
        c.handle_segment(0.5, seg_in(ACK, REMOTE_SEQ, LOCAL_SEQ, window=4000))
        for k in range(30):
            segs = out(c, 1.0 + k * 0.01)
            assert sum(len(s.payload) for s in segs) <= 4000
            acked += MSS
            c.handle_segment(
                1.005 + k * 0.01, seg_in(ACK, REMOTE_SEQ, LOCAL_SEQ + acked, window=4000)
            )
        assert c.cwnd == 10 * MSS


# ---------------------------------------------------------------- cwnd-limited: as before


def test_bulk_slow_start_grows_a_segment_per_segment_acked() -> None:
    c = _conn()
    bulk(c, 20)
    assert c.cwnd == 30 * MSS  # RFC 3465: 10000 + 20 * 1000, as without the rule


def test_bulk_congestion_avoidance_grows_a_segment_per_window() -> None:
    for congestion in ("newreno", "cubic"):
        c = _conn(dataclasses.replace(PLAIN_SS, congestion=congestion), avoidance=True)
        peer = bulk(c, 10)
        if congestion == "newreno":
            assert c.cwnd == 11 * MSS  # one MSS per window of bytes ACKed
            bulk(c, 11, t=2.0, peer=peer)
            assert c.cwnd == 12 * MSS
        else:
            assert c.cwnd > 10 * MSS  # CUBIC's own curve (test_tcp_recovery.py)


def test_slow_start_grows_while_the_flight_is_over_half_of_cwnd() -> None:
    """In slow start a flight of more than half of cwnd uses all that slow start gives
    (it doubles cwnd per round trip): cwnd grows until it is twice the largest flight
    of the window. 6 segments in flight, ACKed one by one: 10000 -> 12000; 5: none."""
    for n, grown in ((6, 12 * MSS), (5, 10 * MSS)):
        c = _conn()
        c.send(bytes(n * MSS))
        assert len(out(c, 1.0)) == n
        peer = Peer(c)
        for k in range(n):
            peer.ack(1.1 + k * 0.001, MSS)
        assert c.cwnd == grown, n


def test_a_full_window_keeps_counting_until_it_is_acknowledged() -> None:
    """Congestion avoidance asks whether cwnd was full in the last window: the ACKs of
    a window that filled it grow cwnd even though the application then has nothing
    more; the ACKs of the small writes after it do not."""
    c = _conn(avoidance=True)
    c.send(bytes(10 * MSS))
    assert len(out(c, 1.0)) == 10  # cwnd full, and nothing more to send
    peer = Peer(c)
    for k in range(10):
        peer.ack(1.1 + k * 0.001, MSS)
    assert c.cwnd == 11 * MSS  # one MSS for the full window's ACKs
    request_response(c, 100, 300, fast=False, peer=peer, t=2.0)
    assert c.cwnd == 11 * MSS


# ---------------------------------------------------------------- the controllers


@pytest.mark.parametrize("cls", [NewReno, Cubic])
def test_on_ack_alone_obeys_the_rule(cls: type[NewReno] | type[Cubic]) -> None:
    """The rule lives in the controller: a caller that only calls ``on_ack`` (a receive
    fast path) gets no growth for a flight that never filled cwnd."""
    cc = cls(MSS)
    cc.on_send(0.0, 0, 3 * MSS, False)
    for _ in range(20):
        cc.on_ack(0.1, MSS, 0.1)
    assert cc.cwnd == 10 * MSS
    cc.ssthresh = cc.cwnd
    for _ in range(50):
        cc.on_ack(0.2, MSS, 0.1)
    assert cc.cwnd == 10 * MSS
    cc.on_send(0.3, 3 * MSS, 13 * MSS, True)  # now full
    cc.on_ack(0.4, 10 * MSS, 0.1)
    assert cc.cwnd > 10 * MSS


def test_undo_leaves_the_usage_as_it_is() -> None:
    """Undoing a loss response restores the window, not what the sender has done since."""
    cc = NewReno(MSS)
    cc.on_send(0.0, 0, 10 * MSS, True)
    snap = cc.snapshot()
    cc.on_loss(0.1, 10 * MSS)
    cc.on_send(0.2, 10 * MSS, 11 * MSS, False)
    cc.restore(snap)
    assert cc.cwnd == 10 * MSS and cc.ssthresh == INITIAL_SSTHRESH
    assert (cc.used_full, cc.used_max, cc.used_end) == (False, MSS, 11 * MSS)


def _cubic_after_loss() -> Cubic:
    cc = Cubic(MSS)
    cc.cwnd = 100 * MSS
    cc.on_send(0.0, 0, cc.cwnd, True)
    cc.on_loss(0.0, cc.cwnd)  # W_max 100, cwnd 70
    return cc


def _bulk_rounds(cc: Cubic, una: int, start: float, rounds: int, rtt: float = 0.1) -> int:
    """Rounds of a sender that fills cwnd: sent, then ACKed a segment at a time."""
    now = start
    for _ in range(rounds):
        sent = una + cc.cwnd
        cc.on_send(now, una, sent, True)
        while una < sent:
            n = min(MSS, sent - una)
            una += n
            cc.on_ack(now + rtt, n, rtt)
        now += rtt
    return una


@pytest.mark.parametrize("pause", ["slow stream", "idle"])
def test_cubic_time_leaves_out_application_limited_and_idle_periods(pause: str) -> None:
    """RFC 9438 5.8: t in W_cubic(t) must not count time the flow spent application
    limited or idle, or the window would jump after it (+50% a round trip, for as long
    as W_cubic(t) stays above). One flow runs 10 bulk rounds, 20 s of a slow stream (two
    segments always in flight) or 20 s with nothing in flight, then 10 bulk rounds; the
    other runs the 20 bulk rounds back to back: the same window."""
    steady = _cubic_after_loss()
    _bulk_rounds(steady, 0, 0.0, 20)
    paused = _cubic_after_loss()
    una = _bulk_rounds(paused, 0, 0.0, 10)
    cwnd = paused.cwnd
    now = 1.0
    if pause == "slow stream":
        sent = una + 2 * MSS
        paused.on_send(now, una, sent, False)
        for _ in range(200):  # a segment every 0.1 s, never idle
            una += MSS
            paused.on_ack(now + 0.05, MSS, 0.1)
            sent += MSS
            paused.on_send(now + 0.05, una, sent, False)
            now += 0.1
        assert paused.cwnd == cwnd
    else:
        now += 20.0
    _bulk_rounds(paused, una, now, 10)
    assert paused.cwnd == pytest.approx(steady.cwnd, rel=0.01)


# ---------------------------------------------------------------- HyStart++


@pytest.mark.parametrize("name", ["newreno", "cubic"])
def test_hystart_grows_only_when_cwnd_limited_but_still_ends_slow_start(name: str) -> None:
    """HyStart++ watches the RTT of every ACK (the path's queue is the path's), but its
    growth, in slow start or CSS, follows the same rule; CSS ending in application-limited
    rounds still ends slow start, at the window the flow has."""
    cc = new_controller(name, MSS, hystart=True)
    hs = cc.hystart
    assert hs is not None
    cc.on_send(0.0, 0, 2 * MSS, False)  # 2 of 10 segments in flight
    cc.on_ack(0.1, 2 * MSS, 0.1)
    assert cc.cwnd == 10 * MSS and cc.ssthresh == INITIAL_SSTHRESH
    hs.css_baseline = 0.1  # in CSS
    cc.on_ack(0.2, 2 * MSS, 0.1)
    assert cc.cwnd == 10 * MSS
    hs.done = True
    cc.on_ack(0.3, 2 * MSS, 0.1)
    assert cc.ssthresh == cc.cwnd == 10 * MSS  # congestion avoidance, nothing grown
    # A bulk flow in CSS grows by a quarter of what is ACKed.
    dd = new_controller(name, MSS, hystart=True)
    assert dd.hystart is not None
    dd.on_send(0.0, 0, 10 * MSS, True)
    dd.hystart.css_baseline = 0.1
    dd.on_ack(0.1, 4 * MSS, 0.1)
    assert dd.cwnd == 11 * MSS


def test_hystart_connection_request_response_stays_in_slow_start_at_its_window() -> None:
    c = _conn(PLAIN)  # HyStart++ on
    request_response(c, 100, 300, fast=False)
    assert c.cwnd == 10 * MSS and c.ssthresh == INITIAL_SSTHRESH


def test_undo_covers_every_field_but_the_usage() -> None:
    """``restore`` puts back each controller's own fields and its base's, none of the
    send-side ``used_*`` ones: the field list is each class's ``__slots__``, read without
    the class dictionaries (a compiled class has none to read: there, only the values)."""
    for cls in (NewReno, Cubic):
        slots = {name for c in cls.__mro__ for name in c.__dict__.get("__slots__", ())}
        if slots:  # the pure-Python classes
            assert set(cls.undo_fields) == {n for n in slots if not n.startswith("used_")}
        assert len(cls.undo_fields) == len(set(cls.undo_fields))
    cc = _cubic_after_loss()
    snap = cc.snapshot()
    before = {name: getattr(cc, name) for name in Cubic.undo_fields}
    cc.on_rto(1.0, cc.cwnd)
    cc.cwnd = MSS
    cc.restore(snap)
    assert {name: getattr(cc, name) for name in Cubic.undo_fields} == before
